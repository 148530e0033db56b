"""ScenarioNet reader: valid steps only, lane context from the map, safe unpickling."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drive_drail import spec
from drive_drail.logs.base import TRACK_COLUMNS, LogError
from drive_drail.logs.registry import read_log
from drive_drail.logs.safe_pickle import safe_load, safe_loads
from drive_drail.logs.scenarionet import LaneMap, ScenarioNetReader, nearest_segment, nearest_segment_brute
from log_factories import (
    SN_LANE_WIDTH_M,
    SnVehicle,
    make_scenario,
    make_scenarionet,
    scenario_file_name,
    write_scenarionet,
)

LANE_OF = {"lane_left": 0, "lane_mid": 1, "lane_right": 2}


def _by_original(log, scene_id: int, original: str) -> pd.DataFrame:
    ids = [tid for tid, orig in log.extra["track_ids"][scene_id].items() if orig == original]
    t = log.tracks
    return t[(t.scene_id == scene_id) & t.track_id.isin(ids)].reset_index(drop=True)


@pytest.fixture
def folder(tmp_path):
    return make_scenarionet(tmp_path / "sn", n_scenarios=2)


def test_record_format_vehicles_and_valid_steps(folder):
    log = read_log(folder)
    t = log.tracks
    assert log.format == "scenarionet" and log.heading_known and log.frame_rate_hz == pytest.approx(10.0)
    assert list(t.columns) == list(TRACK_COLUMNS)
    assert set(t.scene_id) == {0, 1} and log.extra["scenario_ids"] == {0: "sc0", 1: "sc1"}
    originals = set(log.extra["track_ids"][0].values())
    assert originals == {"ego", "101", "102", "103", "104"}  # the pedestrian is not a vehicle track
    assert t.expert.all() and not t.on_ramp.any()
    sd = make_scenario("sc0")
    np.testing.assert_allclose(t.t_s, sd["metadata"]["ts"][t.frame])
    # vehicle 103 is valid on steps 5..59 only
    v103 = _by_original(log, 0, "103")
    assert v103.frame.iloc[0] == 5 and v103.frame.iloc[-1] == 59 and len(v103) == 55


def test_positions_velocities_headings_are_kept_from_the_map_frame(folder):
    log = read_log(folder)
    sd = make_scenario("sc0")
    st = sd["tracks"]["101"]["state"]
    t = _by_original(log, 0, "101")
    np.testing.assert_allclose(t.x_m, st["position"][:, 0], rtol=1e-6)
    np.testing.assert_allclose(t.y_m, st["position"][:, 1], rtol=1e-6)
    np.testing.assert_allclose(t.vx_mps, st["velocity"][:, 0], rtol=1e-6)
    np.testing.assert_allclose(t.heading_rad, st["heading"], rtol=1e-6)
    np.testing.assert_allclose(t.length_m, 4.6, rtol=1e-6)


def test_invalid_gap_splits_a_track_and_the_sdc_is_mapped(folder):
    log = read_log(folder)
    pieces = _by_original(log, 0, "104")
    assert pieces.track_id.nunique() == 2
    first, second = (g.frame.to_numpy() for _, g in pieces.groupby("track_id"))
    assert first[-1] == 19 and second[0] == 25
    assert np.all(np.diff(first) == 1) and np.all(np.diff(second) == 1)
    (sdc,) = log.extra["sdc_track_ids"][0]
    assert log.extra["track_ids"][0][sdc] == "ego"


@pytest.mark.parametrize("yaw_rad,origin", [(0.0, (0.0, 0.0)), (0.7, (120.0, -45.0)), (-2.5, (-3.0, 8.0))])
@pytest.mark.parametrize("neighbor_style", ["waymo", "ids", "nuplan", "none"])
def test_lane_context_on_a_straight_three_lane_map(tmp_path, yaw_rad, origin, neighbor_style):
    sd = make_scenario("sc0", yaw_rad=yaw_rad, origin_m=origin, neighbor_style=neighbor_style)
    log = read_log(write_scenarionet(tmp_path, [sd]))
    for original, lane, offset in (("ego", "lane_mid", 0.4), ("101", "lane_left", 0.0), ("103", "lane_right", -0.3)):
        t = _by_original(log, 0, original)
        assert set(t.lane_index) == {LANE_OF[lane]}, original
        np.testing.assert_allclose(t.lane_offset_m, offset, atol=1e-4)
        np.testing.assert_allclose(np.cos(t.lane_heading_rad - yaw_rad), 1.0, atol=1e-9)
    assert set(log.tracks.lane_count) == {3}


def test_a_map_without_neighbour_keys_gets_them_from_its_geometry_and_a_lane_change_is_labelled(tmp_path):
    """nuScenes and Argoverse 2 lanes carry no neighbour lists: the lane index comes from the geometry."""
    from drive_drail.logs.scenarionet import build_lane_map
    from drive_drail.pairs.convert import ConvertConfig, convert

    sd = make_scenario("sc0", yaw_rad=0.4, neighbor_style="none")
    lane_map = build_lane_map(sd["map_features"], tmp_path)
    assert lane_map.links_from_geometry
    assert dict(zip(lane_map.lane_ids, lane_map.lane_index.tolist())) == {"lane_left": 0, "lane_mid": 1, "lane_right": 2}
    log = read_log(write_scenarionet(tmp_path / "sn", [sd]))
    pairs = convert(log, ConvertConfig(action_hz=10.0, egos="all"))
    by_track = {orig: pairs[pairs["track_id"].isin([t for t, o in log.extra["track_ids"][0].items() if o == orig])] for orig in ("101", "102")}
    assert by_track["102"]["is_lane_change"].any()  # right lane -> middle lane
    assert not by_track["101"]["is_lane_change"].any()
    assert not build_lane_map(make_scenario("sc1")["map_features"], tmp_path).links_from_geometry


def test_lane_change_on_the_map(folder):
    t = _by_original(read_log(folder), 0, "102")  # right lane -> middle lane (to the left)
    lanes = t.lane_index.to_numpy()
    assert lanes[0] == 2 and lanes[-1] == 1 and np.flatnonzero(np.diff(lanes)).size == 1
    k = int(np.flatnonzero(np.diff(lanes))[0])
    assert t.lane_offset_m[k] > 0.5 * SN_LANE_WIDTH_M - 0.5 and t.lane_offset_m[k + 1] < -(0.5 * SN_LANE_WIDTH_M - 0.5)


def test_without_map_features_lane_context_is_unknown(tmp_path):
    log = read_log(write_scenarionet(tmp_path, [make_scenario("nomap", with_map=False)]))
    t = log.tracks
    assert (t.lane_index == -1).all() and (t.lane_count == 1).all() and (t.lane_offset_m == 0).all()
    np.testing.assert_allclose(t.lane_heading_rad, t.heading_rad)


def test_lane_pointing_against_the_vehicle_is_not_chosen(tmp_path):
    # Two-way road: +x lane at y = +1.75, -x lane at y = -1.75; a car driving -x at y = +0.5
    # is nearer the +x lane but belongs to the -x lane.
    sd = make_scenario("twoway", vehicles=[SnVehicle("car", "lane_mid", 50.0, 10.0)], with_map=False)
    st = sd["tracks"]["car"]["state"]
    st["position"][:, 1] = 0.5
    st["heading"][:] = np.pi
    st["velocity"][:, 0] *= -1
    xs = np.arange(0.0, 200.0, 10.0)
    sd["map_features"] = {
        "east": {"type": "LANE_SURFACE_STREET", "polyline": np.stack([xs, np.full_like(xs, 1.75)], 1)},
        "west": {"type": "LANE_SURFACE_STREET", "polyline": np.stack([xs[::-1], np.full_like(xs, -1.75)], 1)},
    }
    t = read_log(write_scenarionet(tmp_path, [sd])).tracks
    np.testing.assert_allclose(np.cos(t.lane_heading_rad), -1.0, atol=1e-9)
    np.testing.assert_allclose(t.lane_offset_m, -2.25, atol=1e-6)  # 2.25 m right of the -x lane when facing -x


def test_single_file_folder_without_summary_and_subfolders(tmp_path):
    folder = write_scenarionet(tmp_path / "a", [make_scenario("s1"), make_scenario("s0")], subfolder="part_0")
    log = read_log(folder)
    assert log.extra["scenario_ids"] == {0: "s1", 1: "s0"}  # dataset_summary order
    one = read_log(folder / "part_0" / scenario_file_name("s0"))
    assert set(one.tracks.scene_id) == {0} and one.extra["scenario_ids"] == {0: "s0"}
    plain = tmp_path / "b"
    plain.mkdir()
    for name in ("s1", "s0"):
        with open(plain / scenario_file_name(name), "wb") as f:
            pickle.dump(make_scenario(name), f)
    assert read_log(plain).extra["scenario_ids"] == {0: "s0", 1: "s1"}  # name order without a summary


# ------------------------------------------------------------------------------------------
# Safe unpickling: a pickle that would run code is refused before anything runs
# ------------------------------------------------------------------------------------------


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('x')",))


def _os_system_pickle(marker) -> bytes:
    # Protocol 0, written by hand so the global is literally os.system.
    return f"cos\nsystem\n(V touch {marker}\ntR.".encode()


@pytest.mark.parametrize(
    "make,forbidden",
    [
        (lambda m: _os_system_pickle(m), "os.system"),
        (lambda m: pickle.dumps(_RunsShell(m)), "subprocess.call"),
        (lambda m: pickle.dumps(_Evals(m)), "builtins.eval"),
        # hidden deep inside an otherwise valid scenario
        (
            lambda m: pickle.dumps(
                {**make_scenario("x"), "metadata": {"ts": np.arange(60) * 0.1, "evil": _RunsShell(m)}}
            ),
            "subprocess.call",
        ),
    ],
)
def test_malicious_pickle_is_rejected_and_never_runs(tmp_path, make, forbidden):
    marker = tmp_path / "pwned"
    path = tmp_path / "scenario.pkl"
    path.write_bytes(make(marker))
    with pytest.raises(LogError) as err:
        read_log(path)
    msg = str(err.value)
    assert f"forbidden global {forbidden}" in msg and str(path) in msg and "\n" not in msg
    assert not marker.exists()
    # the same bytes through plain pickle would have run the code: the test pickle is real
    if forbidden == "os.system":
        return
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_safe_pickle_round_trips_scenario_contents(tmp_path, protocol):
    obj = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.int64(7),
        "c": [1, "x", None, (2.5, True)],
        "d": b"raw",
        "e": {1, 2},
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert (
        back["a"].dtype == np.float32
        and back["b"] == 7
        and back["c"] == obj["c"]
        and back["d"] == b"raw"
        and back["e"] == {1, 2}
    )
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    assert safe_load(p)["b"] == 7


def test_sniff(folder, tmp_path):
    r = ScenarioNetReader()
    assert r.sniff(folder) and r.sniff(folder / scenario_file_name("sc0"))
    (tmp_path / "x.csv").write_text("a\n1\n")
    assert not r.sniff(tmp_path / "x.csv")
    assert not os.path.exists(tmp_path / "pwned")


@pytest.mark.parametrize("seed", [0, 1])
def test_grid_lane_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    starts, ends, lane = [], [], []
    for i in range(30):  # 30 lanes of 60 m, 1 m apart, in random places and directions
        origin, theta = rng.uniform(-150, 150, 2), rng.uniform(-np.pi, np.pi)
        s = np.arange(0.0, 60.0, 1.0)
        p = origin + np.stack([np.cos(theta) * s, np.sin(theta) * s], 1)
        starts.append(p[:-1]), ends.append(p[1:]), lane.append(np.full(s.size - 1, i))
    lane_map = LaneMap(
        np.concatenate(starts), np.concatenate(ends), np.concatenate(lane),
        np.zeros(30, np.int64), np.ones(30, np.int64), np.zeros(30, bool), [str(i) for i in range(30)],
    )  # fmt: skip
    xy = rng.uniform(-220, 220, (3000, 2))  # near lanes, between them, and far off the map
    heading = rng.uniform(-np.pi, np.pi, 3000)
    np.testing.assert_array_equal(nearest_segment(lane_map, xy, heading), nearest_segment_brute(lane_map, xy, heading))


def test_float32_timestamps_that_jitter_read_as_the_nominal_rate_and_convert(tmp_path):
    """Waymo's ScenarioNet files store ts as float32: a median step gives 10.0011 Hz, which no action rate divides."""
    from drive_drail.pairs.convert import ConvertConfig, convert_file

    sd = make_scenario("jitter", length=91)
    sd["metadata"]["ts"] = (np.arange(91) * 0.1 + 3.7).astype(np.float32)  # an offset start, as in Waymo's 9.1 s scenes
    steps = np.diff(sd["metadata"]["ts"].astype(np.float64))
    k = (1.0 / np.median(steps)) / 5.0
    assert abs(k - round(k)) > 1e-6  # the jitter is real: a median step's rate is no whole multiple of 5 Hz
    folder = write_scenarionet(tmp_path / "sn", [sd])
    log = ScenarioNetReader().read(folder)
    assert log.frame_rate_hz == 10.0
    pairs, meta = convert_file(str(folder), str(tmp_path / "pairs.parquet"), "scenarionet", ConvertConfig(action_hz=5.0))
    assert len(pairs) > 0 and meta["action_hz"] == 5.0


def test_a_zeroed_velocity_at_a_tracks_last_step_is_dropped_not_read_as_a_stop(tmp_path):
    """nuScenes via ScenarioNet: forward-difference velocities are 0 at each track's last valid step."""
    sd = make_scenario("ends", length=40)
    moving = [k for k, t in sd["tracks"].items() if t["type"] == "VEHICLE" and np.hypot(*t["state"]["velocity"][0, :2]) > 1.0]
    assert len(moving) >= 3
    ends = moving[0]
    sd["tracks"][ends]["state"]["velocity"][-1] = 0.0  # the converter's placeholder
    parked = moving[1]
    sd["tracks"][parked]["state"]["velocity"][:] = 0.0  # a car that never moves keeps every step
    log = ScenarioNetReader().read(write_scenarionet(tmp_path / "sn", [sd]))
    tracks = log.tracks
    assert _by_original(log, 0, ends)["frame"].max() == 38
    assert len(_by_original(log, 0, parked)) == 40
    assert _by_original(log, 0, moving[2])["frame"].max() == 39  # a track whose last velocity is real keeps its step
    assert np.hypot(tracks.vx_mps, tracks.vy_mps)[tracks.track_id.isin(
        [tid for tid, orig in log.extra["track_ids"][0].items() if orig == ends])].min() > 1.0


def test_a_box_wider_than_long_is_read_swapped_back_and_steering_is_recovered_as_for_the_true_box(tmp_path):
    """ScenarioNet's nuScenes sdc is written 1.73 m long and 4.08 m wide; the length is the inverse
    dynamics' wheelbase, so the swap would shrink every recovered steering angle by 2.4x."""
    from drive_drail.pairs.convert import ConvertConfig, convert

    vehicles = [SnVehicle("ego", "lane_mid", 10.0, 15.0, to_lane="lane_left"), SnVehicle("101", "lane_right", 30.0, 14.0)]
    true = make_scenario("true", vehicles=vehicles)
    swapped = make_scenario("swapped", vehicles=vehicles)
    state = swapped["tracks"]["ego"]["state"]
    state["length"], state["width"] = state["width"].copy(), state["length"].copy()
    assert float(state["length"][0, 0]) < float(state["width"][0, 0])
    logs = [ScenarioNetReader().read(write_scenarionet(tmp_path / name, [sd])) for name, sd in (("t", true), ("s", swapped))]
    assert logs[1].extra["swapped_size_tracks"] == {0: ["ego"]} and logs[0].extra["swapped_size_tracks"] == {0: []}
    ego = _by_original(logs[1], 0, "ego")
    assert (ego["length_m"] > ego["width_m"]).all()
    assert float(state["length"][0, 0]) < float(state["width"][0, 0])  # the loaded dict itself is left as it was
    pairs = [convert(log, ConvertConfig(action_hz=10.0, egos="all")) for log in logs]
    sdc = [p[p["track_id"].isin(log.extra["sdc_track_ids"][0])] for p, log in zip(pairs, logs)]
    assert sdc[0]["steer_rad"].abs().max() > 0.01  # the lane change steers
    np.testing.assert_allclose(sdc[1]["steer_rad"].to_numpy(), sdc[0]["steer_rad"].to_numpy(), atol=1e-6)


def test_a_pose_glitch_is_dropped_from_the_pairs_and_counted_in_the_summary(tmp_path):
    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.pairs.storage import read_pairs, summary

    clean = write_scenarionet(tmp_path / "clean", [make_scenario("g")])
    base, _ = convert_file(str(clean), str(tmp_path / "clean.parquet"), "scenarionet", ConvertConfig(action_hz=5.0))
    sd = make_scenario("g")
    sd["tracks"]["ego"]["state"]["velocity"][20] *= 3.0  # one frame at 45 m/s: +-150 m/s^2 around it
    folder = write_scenarionet(tmp_path / "glitch", [sd])
    pairs, meta = convert_file(str(folder), str(tmp_path / "pairs.parquet"), "scenarionet", ConvertConfig(action_hz=5.0))
    dropped = meta["dropped_pairs"]
    assert list(dropped) == ["|accel| > 15 m/s^2"] and 1 <= dropped["|accel| > 15 m/s^2"] <= 2
    assert len(pairs) == len(base) - dropped["|accel| > 15 m/s^2"]
    assert pairs["accel_mps2"].abs().max() <= 15.0
    _, stored = read_pairs(tmp_path / "pairs.parquet")
    assert "dropped      " in summary(pairs, stored) and "with |accel| > 15 m/s^2 (implausible recovered actions)" in summary(pairs, stored)
    assert base.attrs["dropped_pairs"] == {}


NUSCENES_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenarionet_nuscenes_mini"


@pytest.mark.skipif(not NUSCENES_MINI.is_dir(), reason=f"the real nuScenes fixtures are not at {NUSCENES_MINI}")
@pytest.mark.parametrize("folder_name", ["nuscenes_1", "nuscenes_3"])
def test_real_nuscenes_scenes_convert_without_placeholder_stops_or_glitches(tmp_path, folder_name):
    """Eight real nuScenes scenes as ScenarioNet ships them (read in place, never copied into the repository)."""
    from drive_drail.pairs.convert import IMPLAUSIBLE_ACCEL_MPS2, ConvertConfig, convert_file

    folder = NUSCENES_MINI / folder_name
    log = ScenarioNetReader().read(folder)
    assert log.frame_rate_hz == 10.0
    t = log.tracks.sort_values(["scene_id", "track_id", "frame"])
    last = t.groupby(["scene_id", "track_id"]).tail(1)
    before = t.groupby(["scene_id", "track_id"]).nth(-2)
    moving_before = before.set_index(["scene_id", "track_id"])[["vx_mps", "vy_mps"]].pow(2).sum(axis=1).pow(0.5) > 0.5
    ends_at_zero = last.set_index(["scene_id", "track_id"])[["vx_mps", "vy_mps"]].abs().sum(axis=1) == 0.0
    assert not (ends_at_zero & moving_before.reindex(ends_at_zero.index, fill_value=False)).any()
    sdc = pd.concat([t[(t["scene_id"] == scene) & t["track_id"].isin(ids)] for scene, ids in log.extra["sdc_track_ids"].items()])
    assert all(tracks == ["ego"] for tracks in log.extra["swapped_size_tracks"].values())  # the Renault Zoe, 4.08 x 1.73 m
    assert np.allclose(sdc["length_m"], 4.08, atol=0.01) and np.allclose(sdc["width_m"], 1.73, atol=0.01)
    assert (log.tracks["lane_count"] >= 2).mean() > 0.2  # no neighbour keys: lanes side by side from the geometry
    pairs, meta = convert_file(str(folder), str(tmp_path / "pairs.parquet"), "scenarionet", ConvertConfig(action_hz=5.0))
    assert len(pairs) > 500 and pairs["accel_mps2"].abs().max() <= IMPLAUSIBLE_ACCEL_MPS2
    glitches = {k: v for k, v in meta["dropped_pairs"].items() if "beyond the spec" not in k}
    assert sum(glitches.values()) < 0.1 * len(pairs)
    # every kept pair lies within the spec's action ranges: none is left for training to clip
    assert pairs["accel_mps2"].between(*spec.ACCEL_RANGE_MPS2).all() and pairs["steer_rad"].abs().max() <= spec.STEER_RANGE_RAD[1]


@pytest.mark.skipif(not NUSCENES_MINI.is_dir(), reason=f"the real nuScenes fixtures are not at {NUSCENES_MINI}")
def test_real_urban_junctions_give_no_merge_labels():
    """The eight nuScenes scenes (Boston and Singapore streets, no on-ramps) hold junction turns that end
    on a lane and lanes whose continuation starts a few metres on: none is read as a ramp a vehicle
    merges from. (On MetaDrive's exported on-ramp the same rules do find the merge: test_logs_metadrive_export.)"""
    from drive_drail.pairs.convert import ConvertConfig, convert

    for folder in sorted(p for p in NUSCENES_MINI.iterdir() if p.is_dir()):
        pairs = convert(ScenarioNetReader().read(folder), ConvertConfig(egos="all"))
        assert pairs["is_merge"].sum() == 0, folder.name
