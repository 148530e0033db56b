"""Closed-loop replay of ScenarioNet scenarios in MetaDrive: a policy drives the sdc, the rest replays.

The test writes its own ScenarioNet folder with numpy (tests/log_factories.py: a straight
3-lane road, the sdc at 15 m/s in the middle lane, neighbours with a lane change).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("metadrive")

from drive_drail import spec  # noqa: E402
from drive_drail.logs.base import LogError  # noqa: E402
from drive_drail.logs.scenarionet import ScenarioNetReader  # noqa: E402
from drive_drail.pairs.convert import ConvertConfig, convert  # noqa: E402
from drive_drail.evaluate.policies import ConstantPolicy, LoggedActionsPolicy  # noqa: E402
from drive_drail.sim.scenario_replay import metrics_table, replay_evaluate  # noqa: E402
from log_factories import SN_LANE_WIDTH_M, SnVehicle, make_scenarionet, sn_default_vehicles  # noqa: E402

OFFSET_I = spec.OBS_NAMES.index("ego_lane_offset")
HEADING_I = spec.OBS_NAMES.index("ego_heading_to_lane")
LANE_I = spec.OBS_NAMES.index("ego_lane_index")


def lane_keeper(obs: np.ndarray) -> np.ndarray:
    """Hold speed, steer back to the lane centre (a proportional controller in spec units)."""
    offset_m, heading_rad = obs[OFFSET_I] * 2.0, obs[HEADING_I] * 0.5
    steer_rad = np.clip(-0.15 * offset_m - 0.8 * heading_rad, -0.3, 0.3)
    return spec.action_to_unit(np.array([0.0, steer_rad]))


def test_policy_drives_the_logged_route(tmp_path):
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=2)
    seen = []

    def policy(obs):
        seen.append(obs.copy())
        return lane_keeper(obs)

    results = replay_evaluate(policy, folder)
    table = metrics_table(results)
    assert list(table["scenario_id"]) == ["sc0", "sc1"]
    for r in results:
        assert r.success and not r.crashed and not r.offroad
        assert r.route_completion > 0.9
        assert r.ade_m < 1.5  # the logged sdc keeps its lane at 15 m/s, so does the lane keeper
        assert r.mean_speed_mps == pytest.approx(15.0, abs=1.0)
    # The observations carry the log's lane context and the replayed neighbours.
    first = seen[0]
    assert first[LANE_I] * 4.0 == pytest.approx(1.0)  # middle of three lanes
    assert first[spec.OBS_NAMES.index("n0_present")] == 1.0


def test_replay_observation_matches_the_converted_log_at_the_start(tmp_path):
    """The first replay observation equals the converter's observation of the logged sdc (same lane map, same spec)."""
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1)
    log = ScenarioNetReader().read(folder)
    pairs = convert(log, ConvertConfig(action_hz=10.0))
    sdc = log.extra["sdc_track_ids"][0][0]
    logged = pairs[(pairs["scene_id"] == 0) & (pairs["track_id"] == sdc) & (pairs["frame"] == 0)][list(spec.OBS_NAMES)].to_numpy()[0]
    seen = []
    replay_evaluate(lambda o: seen.append(o) or np.zeros(2), folder, max_steps=1)
    # MetaDrive spawns only the vehicles valid at step 0 and takes sizes from its own models,
    # so positions, speeds, headings and lanes agree but not absent tracks (103 appears at step 5).
    ego = slice(0, len(spec.EGO_FEATURES))
    np.testing.assert_allclose(seen[0][ego], logged[ego], atol=2e-2)


def test_braking_policy_falls_behind_the_log(tmp_path):
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1)
    (result,) = replay_evaluate(lambda o: spec.action_to_unit(np.array([-5.0, 0.0])), folder, max_steps=20)
    assert result.steps == 20 and not result.success
    assert result.route_completion < 0.4
    assert result.fde_m > 5.0  # 2 s of -5 m/s^2 leaves ~10 m behind the logged sdc


def test_logged_actions_drive_the_logged_lane_change_and_brake(tmp_path):
    """The log policy (the converter's recovered actions, open loop through MetaDrive's action map)
    retraces a logged lane change: the fidelity of inverse dynamics plus action map."""
    ego = SnVehicle("ego", "lane_mid", 10.0, 15.0, to_lane="lane_left")
    others = [v for v in sn_default_vehicles() if v.id not in ("ego", "101")]
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1, vehicles=[ego, *others])
    seen = []

    class Watch(LoggedActionsPolicy):
        def act(self, obs):
            seen.append(obs.copy())
            return super().act(obs)

    (logged,) = replay_evaluate(Watch(), folder)
    (straight,) = replay_evaluate(ConstantPolicy().act, folder)
    assert logged.applicable and not logged.crashed and not logged.offroad
    assert logged.fde_m < 1.5 and logged.ade_m < 1.0  # the logged sdc ends one lane (3.5 m) left
    assert straight.fde_m > SN_LANE_WIDTH_M - 1.0  # holding the lane misses the log by about a lane
    assert seen[-1][LANE_I] * 4.0 == pytest.approx(0.0)  # in the left lane at the end


def test_a_parked_sdc_scene_is_not_applicable(tmp_path):
    parked = SnVehicle("ego", "lane_mid", 10.0, 0.0)
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1, vehicles=[parked, *sn_default_vehicles()[1:]])
    (result,) = replay_evaluate(ConstantPolicy().act, folder, max_steps=5)
    assert not result.applicable
    (moving,) = replay_evaluate(ConstantPolicy().act, make_scenarionet(tmp_path / "sn2", n_scenarios=1), max_steps=5)
    assert moving.applicable


def test_unsafe_pickles_are_refused_before_metadrive_loads_them(tmp_path):
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1)
    victim = next(p for p in folder.glob("*.pkl") if p.name.startswith("sd_"))

    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    with open(victim, "wb") as f:
        pickle.dump({"id": "x", "metadata": Exploit()}, f)
    with pytest.raises(LogError, match=victim.name):
        replay_evaluate(lane_keeper, folder)


def test_metadrive_never_unpickles_a_file_and_one_scenario_file_replays(tmp_path, monkeypatch):
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1)
    scenario = next(p for p in folder.glob("*.pkl") if p.name.startswith("sd_"))
    from_folder = replay_evaluate(lane_keeper, folder, max_steps=20)

    def refuse(*args, **kwargs):
        raise AssertionError("plain pickle was called on a scenario file")

    monkeypatch.setattr(pickle, "load", refuse)  # MetaDrive's reader: pickle.load(open(file))
    monkeypatch.setattr(pickle, "loads", refuse)
    for p in folder.glob("dataset_*.pkl"):
        p.unlink()  # the single file alone, without the dataset index files
    from_file = replay_evaluate(lane_keeper, scenario, max_steps=20)
    assert from_file[0].steps == from_folder[0].steps == 20
    assert from_file[0].ade_m == pytest.approx(from_folder[0].ade_m, abs=1e-6)
    assert from_file[0].route_completion > 0.0
