import numpy as np
import pandas as pd
import pytest

from drive_drail import spec
from drive_drail.logs.base import LogError, TrackLog, finalize_tracks
from drive_drail.pairs import bicycle, kinematics
from drive_drail.pairs.convert import ConvertConfig, convert
from drive_drail.pairs.storage import read_pairs, write_pairs

from pair_factories import LANE_WIDTH_M, lane_change_actions, sim_log, simulate_track, track_rows


def test_inverse_dynamics_recovers_sim_actions_exactly():
    log, truth = sim_log()
    pairs = convert(log)
    ego = pairs[pairs.track_id == 0].sort_values("frame")
    n = len(ego)
    np.testing.assert_allclose(ego.accel_mps2, truth["accel0"][:n], atol=1e-4)
    np.testing.assert_allclose(ego.steer_rad, truth["steer0"][:n], atol=1e-5)


def test_round_trip_reproduces_sim_trajectory_after_1s():
    log, truth = sim_log()
    k, dt = truth["k"], 1.0 / log.frame_rate_hz
    pairs = convert(log)
    ego = pairs[pairs.track_id == 0].sort_values("frame")
    s = truth["states0"]
    horizon = 5  # 5 action periods at 5 Hz = 1 s
    for start in range(0, len(ego) - horizon, 7):
        f0 = start * k
        out = bicycle.rollout(*s[f0], ego.accel_mps2.to_numpy(np.float64)[start : start + horizon],
                              ego.steer_rad.to_numpy(np.float64)[start : start + horizon], 5.0, dt, k)
        err = np.hypot(*(out[-1, :2] - s[f0 + horizon * k, :2]))
        assert err < 0.2


def test_round_trip_on_smoothed_noisy_ngsim_style_track():
    """10 Hz, positions with 0.15 m noise, no headings: smooth, estimate, invert, integrate."""
    rng = np.random.default_rng(1)
    dt, n = 0.1, 150
    steer = lane_change_actions(n, dt, 40, +1, 0.01)
    accel = 0.8 * np.sin(np.arange(n) * dt * 0.5)
    truth = simulate_track(accel, steer, 1, dt, y0=-LANE_WIDTH_M, speed0=15.0, length_m=4.5)
    df = track_rows(truth, 7, dt, length_m=4.5)
    df[["x_m", "y_m"]] += rng.normal(0, 0.15, (len(df), 2))
    df["heading_rad"] = np.nan
    log = TrackLog(finalize_tracks(df), "ngsim-like", "ngsim", 10.0, heading_known=False, smooth_positions=True)
    pairs = convert(log, ConvertConfig(action_hz=10.0))
    kin = kinematics.estimate_from_positions(log.tracks, kinematics.track_layout(log.tracks), dt, 1.0)
    a, d = pairs.accel_mps2.to_numpy(np.float64), pairs.steer_rad.to_numpy(np.float64)
    errors = []
    for f0 in range(0, n - 10, 5):
        out = bicycle.rollout(kin.x_m[f0], kin.y_m[f0], kin.heading_rad[f0], kin.speed_mps[f0], a[f0 : f0 + 10], d[f0 : f0 + 10], 4.5, dt, 1)
        errors.append(np.hypot(out[-1, 0] - kin.x_m[f0 + 10], out[-1, 1] - kin.y_m[f0 + 10]))
    assert max(errors) < 0.2
    # and the smoothed track stays close to the true one
    assert np.sqrt(np.mean((kin.y_m - truth[:, 1]) ** 2)) < 0.15


def test_maneuver_and_meta_action_labels():
    log, _ = sim_log()
    pairs = convert(log)
    lc = pairs[pairs.track_id == 0].set_index("t_s")
    cross_t = lc.index[np.flatnonzero(np.diff(lc.lane_index.to_numpy()) != 0)[0] + 1]
    assert lc.lane_index.iloc[0] == 1 and lc.lane_index.iloc[-1] == 0
    assert lc.loc[cross_t, "is_lane_change"]
    assert not lc.loc[lc.index < cross_t - 3.5, "is_lane_change"].any()
    assert not lc.loc[lc.index > cross_t + 2.5, "is_lane_change"].any()
    before = lc.loc[(lc.index < cross_t) & (lc.index >= cross_t - 1.0)]
    assert (before.meta_action == spec.MetaAction.LANE_LEFT).any()
    assert not (lc.meta_action == spec.MetaAction.LANE_RIGHT).any()
    # vehicle 1 never changes lane or stops
    keep = pairs[pairs.track_id == 1]
    assert (keep.maneuver == "keep_lane").all()
    assert set(keep.meta_action) <= {spec.MetaAction.IDLE, spec.MetaAction.FASTER, spec.MetaAction.SLOWER}
    # vehicle 2 brakes at -4 m/s^2 from 20 m/s: stopped at t = 5 s; approach from t = -1 s ... all labelled
    stop = pairs[pairs.track_id == 2].set_index("t_s")
    assert stop.loc[stop.index >= 5.0, "is_stop"].all()
    assert not stop.loc[stop.index < 5.0 - 6.0 - 1e-9, "is_stop"].any()
    assert (stop.loc[stop.index < 4.8, "meta_action"] == spec.MetaAction.SLOWER).all()


def test_a_lane_index_change_without_a_boundary_crossing_is_a_hand_off_not_a_lane_change():
    """Maps cut lanes into pieces whose neighbour lists differ: the index can change while the car
    drives straight down its lane (Waymo: 65 of 69 index changes). Only a crossing is a lane change."""
    from drive_drail.pairs import maneuvers

    n = 40
    index = np.where(np.arange(n) < 20, 1, 0)
    df = pd.DataFrame({"scene_id": 0, "track_id": 0, "frame": np.arange(n)})
    tracks = kinematics.track_layout(df)
    speed, no_ramp = np.full(n, 20.0), np.zeros(n, bool)
    hand_off = np.full(n, 0.2)  # the same offset from the centre before and after the index change
    labels = maneuvers.label_rows(index, hand_off, no_ramp, speed, np.zeros(n), tracks, 0.1)
    assert not labels.is_lane_change.any() and not labels.lane_decision.any()
    # A crossing to the left: from the old lane's left edge (+1.9 m) to the new lane's right edge (-1.8 m).
    crossing = np.concatenate([np.linspace(0.0, 1.9, 20), np.linspace(-1.8, 0.0, n - 20)])
    labels = maneuvers.label_rows(index, crossing, no_ramp, speed, np.full(n, 0.5), tracks, 0.1)
    assert labels.is_lane_change[20] and labels.is_lane_change[:20].any()
    assert (labels.lane_decision[10:20] == -1).all()  # the second before the crossing decides LANE_LEFT


def test_merge_label_from_on_ramp():
    dt, n = 0.2, 60
    steer = lane_change_actions(n, dt, 10, +1, 0.04)
    s = simulate_track(np.zeros(n), steer, 1, dt, y0=-2 * LANE_WIDTH_M, speed0=20.0)
    df = track_rows(s, 0, dt)
    df["on_ramp"] = df["lane_index"] == 2  # the rightmost lane is the acceleration lane
    pairs = convert(TrackLog(finalize_tracks(df), "m", "simlog", 5.0, True))
    assert pairs.is_merge.any() and not pairs.is_lane_change.any()
    assert set(pairs.loc[pairs.is_merge, "maneuver"]) == {"merge"}


def test_observations_split_into_chunks_over_threads_equal_one_call(monkeypatch):
    """The converter observes its egos in chunks on a thread pool; chunk edges and threads change nothing."""
    from drive_drail.pairs import convert as convert_module

    log, _ = sim_log()
    whole = convert(log)
    observe, calls = spec.observe_batch, []
    monkeypatch.setattr(convert_module, "SCENE_CHUNK", 7)
    monkeypatch.setattr(convert_module.spec, "observe_batch", lambda b: calls.append(len(b.ego)) or observe(b))
    chunked = convert(log)
    assert len(calls) > 10 and max(calls) == 7 and sum(calls) >= len(whole)
    pd.testing.assert_frame_equal(chunked, whole)


def test_parquet_output_metadata_and_plain_pandas(tmp_path):
    log, _ = sim_log()
    pairs = convert(log)
    path = tmp_path / "pairs.parquet"
    write_pairs(path, pairs, {"source_file": "x", "format": "simlog", "frame_rate_hz": 15.0, "action_hz": 5.0})
    plain = pd.read_parquet(path)
    assert list(plain.columns) == list(pairs.columns)
    back, meta = read_pairs(path)
    assert meta["schema_version"] and meta["spec_version"] == spec.SPEC_VERSION
    assert meta["frame_rate_hz"] == 15.0 and meta["units"]["accel_mps2"] == "m/s^2"
    assert len(back) == len(pairs) and not list(tmp_path.glob(".*tmp"))


def test_frame_rate_not_multiple_of_action_rate_is_a_clear_error():
    log, _ = sim_log()
    with pytest.raises(LogError, match="not a whole multiple"):
        convert(log, ConvertConfig(action_hz=4.0))


def test_smoothing_keeps_linear_motion_and_track_boundaries():
    df = pd.concat([track_rows(simulate_track(np.zeros(10), np.zeros(10), 1, 0.1, x0=x0), i, 0.1) for i, x0 in enumerate([0.0, 500.0])])
    df = finalize_tracks(df)
    tracks = kinematics.track_layout(df)
    sm = kinematics.smooth(df.x_m.to_numpy(), tracks, 3)
    np.testing.assert_allclose(sm, df.x_m.to_numpy(), atol=1e-9)


def test_an_action_beyond_the_spec_range_is_dropped_and_counted_not_clipped_and_the_limit_itself_is_kept():
    dt, k = 1.0 / 15.0, 3
    accel = np.array([1.0] * 8 + [7.0] * 3 + [spec.ACCEL_RANGE_MPS2[0]] * 4 + [0.0] * 8)  # 7 m/s^2: beyond +5
    states = simulate_track(accel, np.zeros(len(accel)), k, dt, speed0=20.0)
    log = TrackLog(finalize_tracks(track_rows(states, 0, dt)), "hard", "simlog", 15.0, True)
    pairs = convert(log, ConvertConfig(egos="all"))
    reason = "accel beyond the spec's [-5, 5] m/s^2"
    assert pairs.attrs["dropped_pairs"] == {reason: 3}
    assert len(pairs) == len(accel) - 3
    assert (pairs["accel_mps2"] == np.float32(spec.ACCEL_RANGE_MPS2[0])).sum() == 4  # braking at the limit stays
