"""Recording expert episodes: a valid sim log at the simulation rate that reproduces the adapter's scenes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drive_drail import spec
from drive_drail.experts.highway import make_expert
from drive_drail.logs.simlog import SimLogReader, read_simlog_meta
from drive_drail.record import EGO_TRACK_ID, record_episodes
from drive_drail.scenario import ScenarioError, load_scenario
from drive_drail.sim import make_env
from log_factories import make_highd

EPISODE_S = 9.0  # long enough to stop and hold


@pytest.fixture(scope="module")
def stop_scenario():
    s = load_scenario("stop")
    return dataclasses.replace(
        s,
        episode_seconds=EPISODE_S,
        env_config={**s.env_config, "vehicles_count": 3, "obstacle_distance_m": [40, 50], "ego_speed_mps": [10, 12]},
    )


@pytest.fixture(scope="module")
def recorded(stop_scenario, tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "stop.parquet"
    out = record_episodes(stop_scenario, n_episodes=2, seed=3, out_path=path, progress=False)
    assert out == path
    return path


def scene_from_log(frame: pd.DataFrame, ego_track: int) -> spec.Scene:
    """Rebuild the spec scene of one frame straight from the log rows."""

    def vehicle(r) -> spec.Vehicle:
        return spec.Vehicle(r.x_m, r.y_m, r.vx_mps, r.vy_mps, r.heading_rad, r.length_m, r.width_m, int(r.lane_index))

    ego = frame[frame.track_id == ego_track].iloc[0]
    others = [vehicle(r) for r in frame[frame.track_id != ego_track].itertuples()]
    lane = spec.LaneContext(int(ego.lane_count), float(ego.lane_offset_m), float(ego.lane_heading_rad))
    return spec.Scene(ego=vehicle(ego), others=others, lane=lane)


def test_log_is_valid_at_the_simulation_rate_with_every_vehicle(recorded, stop_scenario):
    log = SimLogReader().read(Path(recorded))
    df = log.tracks
    assert SimLogReader().sniff(Path(recorded))
    assert log.frame_rate_hz == stop_scenario.simulation_frequency_hz == 15
    assert set(df.scene_id) == {0, 1}
    frames = int(EPISODE_S * stop_scenario.simulation_frequency_hz) + 1  # reset state + every sim step
    env = make_env(stop_scenario)
    for scene_id, seed in enumerate(stop_scenario.train_seeds[3:5]):
        env.reset(seed=seed)
        n_objects = len(env.road.vehicles) + len(env.road.objects)
        scene = df[df.scene_id == scene_id]
        assert scene.track_id.nunique() == n_objects  # ego, traffic and the stalled vehicle
        assert len(scene) == n_objects * frames
        for _, track in scene.groupby("track_id"):
            assert track.frame.tolist() == list(range(frames))
        np.testing.assert_allclose(scene.t_s, scene.frame / 15.0)
        # The stalled vehicle is logged as a vehicle at rest that is no expert.
        static = scene[(scene.vx_mps == 0) & ~scene.expert]
        assert static.track_id.nunique() == 1 and static.x_m.nunique() == 1

    meta = read_simlog_meta(recorded)
    assert meta["simulator"] == "highway" and meta["env_id"] == "drive-drail-highway/stop-v0"
    assert meta["seeds"] == list(stop_scenario.train_seeds[3:5])
    assert meta["policy_frequency_hz"] == 5 and meta["simulation_frequency_hz"] == 15
    assert meta["highway_env_version"].count(".") >= 1 and meta["scenario"] == "stop"
    assert meta["ego_track_id"] == EGO_TRACK_ID and len(meta["episodes"]) == 2


def test_log_scene_equals_adapter_scene_and_actions_are_recoverable(recorded, stop_scenario):
    """Replay episode 1 through the adapter: the log holds the exact states of its scenes."""
    df = SimLogReader().read(Path(recorded)).tracks
    episode = df[df.scene_id == 1]
    fpa = stop_scenario.frames_per_action
    env = make_env(stop_scenario)
    expert = make_expert(stop_scenario.expert)
    obs, _ = env.reset(seed=stop_scenario.train_seeds[4])
    expert.reset(env)
    applied = []
    for step in range(stop_scenario.max_policy_steps):
        if step in (0, 4, stop_scenario.max_policy_steps - 1):
            frame = episode[episode.frame == step * fpa]
            from_log = spec.observe(scene_from_log(frame, EGO_TRACK_ID))
            np.testing.assert_allclose(from_log, obs, atol=1e-6)
            ego_row = frame[frame.track_id == EGO_TRACK_ID].iloc[0]
            ego = env.scene().ego
            assert (ego_row.x_m, ego_row.y_m, ego_row.heading_rad) == (ego.x_m, ego.y_m, ego.heading_rad)  # float64, bit-exact
        obs, _, _, _, info = env.step(expert.act(env))
        applied.append(info["action_physical"][0])

    # Speeds at the simulation rate recover each held acceleration exactly.
    ego = episode[episode.track_id == EGO_TRACK_ID].sort_values("frame")
    speed = np.hypot(ego.vx_mps.to_numpy(), ego.vy_mps.to_numpy())
    accel = np.diff(speed) * stop_scenario.simulation_frequency_hz
    moving = speed[1:] > 0.01  # |velocity| loses the sign at rest
    expected = np.repeat(applied, fpa)
    np.testing.assert_allclose(accel[moving], expected[moving], atol=1e-9)


def test_traffic_is_expert_and_failed_egos_are_not(recorded, stop_scenario, tmp_path):
    df = SimLogReader().read(Path(recorded)).tracks
    meta = read_simlog_meta(recorded)
    for ep in meta["episodes"]:
        assert ep["success"] and not ep["crashed"] and ep["frames"] == EPISODE_S * 15 + 1
        scene = df[df.scene_id == ep["scene_id"]]
        assert scene[scene.track_id == EGO_TRACK_ID].expert.all()
        traffic = scene[(scene.track_id != EGO_TRACK_ID) & (scene.vx_mps.abs() > 0)]
        assert len(traffic) and traffic.expert.all()
    # Too short to stop and hold: the ego failed, so its track is no demonstration.
    short = dataclasses.replace(stop_scenario, episode_seconds=2.0)
    path = record_episodes(short, n_episodes=1, seed=0, out_path=tmp_path / "short.parquet", progress=False)
    df = SimLogReader().read(path).tracks
    assert not read_simlog_meta(path)["episodes"][0]["success"]
    assert not df[df.track_id == EGO_TRACK_ID].expert.any()


def test_too_many_episodes_for_the_train_seeds(stop_scenario, tmp_path):
    short = dataclasses.replace(stop_scenario, train_seeds=(0, 1))
    with pytest.raises(ScenarioError, match="train_seeds"):
        record_episodes(short, n_episodes=2, seed=1, out_path=tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()


def test_egos_choose_the_task_driver_by_default_and_traffic_on_request(recorded):
    from drive_drail.logs.registry import read_log
    from drive_drail.pairs.convert import ConvertConfig, convert

    log = read_log(str(recorded), "auto")
    assert log.ego_track_id == EGO_TRACK_ID
    by_egos = {egos: convert(log, ConvertConfig(action_hz=5.0, egos=egos)) for egos in ("auto", "ego", "moving", "expert", "all")}
    assert set(by_egos["auto"].track_id) == set(by_egos["ego"].track_id) == {EGO_TRACK_ID}
    assert by_egos["auto"].equals(by_egos["ego"])
    traffic = set(by_egos["expert"].track_id) - {EGO_TRACK_ID}
    assert traffic and set(by_egos["moving"].track_id) <= set(by_egos["expert"].track_id)
    assert len(by_egos["ego"]) < len(by_egos["moving"]) <= len(by_egos["expert"]) < len(by_egos["all"])
    # the stalled car is no expert, and as an 'all' ego it never moves: 'moving' would drop it
    tracks = log.tracks
    parked = set(tracks[tracks.groupby(["scene_id", "track_id"]).vx_mps.transform(lambda v: v.abs().max()) <= 1.0].track_id)
    assert parked and parked <= set(by_egos["all"].track_id) and not parked & set(by_egos["moving"].track_id)


def test_ego_only_conversion_of_a_log_without_a_task_driver_is_refused(tmp_path):
    src = make_highd(tmp_path / "highd").tracks  # highD names no task driver: every driver is a peer
    out = tmp_path / "pairs.parquet"
    refused = subprocess.run([sys.executable, "-m", "drive_drail.cli", "convert", str(src), "-o", str(out), "--egos", "ego",
                              "--action-hz", "5"], capture_output=True, text=True)
    assert refused.returncode == 2 and not out.exists()
    assert len(refused.stderr.strip().splitlines()) == 1 and str(src) in refused.stderr and "--egos" in refused.stderr
    auto = subprocess.run([sys.executable, "-m", "drive_drail.cli", "convert", str(src), "-o", str(out), "--action-hz", "5"],
                          capture_output=True, text=True)
    assert auto.returncode == 0 and out.exists(), auto.stderr  # auto falls back to the moving drivers
