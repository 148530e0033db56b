"""Scenario files: the shipped ones load, and bad files fail with one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drive_drail.scenario import (
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
    scenario_from_dict,
)

GOOD = {
    "name": "tiny_stop",
    "simulator": "highway",
    "env_id": "drive-drail-highway/stop-v0",
    "task": "stop",
    "expert": "idm_stop",
    "policy_frequency_hz": 5,
    "simulation_frequency_hz": 15,
    "episode_seconds": 10,
    "train_seeds": {"start": 0, "count": 20},
    "eval_seeds": [100, 101, 102],
    "env_config": {"lanes_count": 2},
    "splits": {"dense": {"vehicles_count": 8}},
    "success": {"stopped_before_m": 15, "max_final_speed_mps": 0.5, "hold_seconds": 2},
    "demos": {"episodes": 5},
}


def write(tmp_path: Path, data: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def load_error(tmp_path: Path, data: dict) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    return message


def test_shipped_scenarios_load_with_disjoint_seeds():
    names = list_scenarios()
    assert {"lane_change", "merge", "stop"} <= set(names)
    for name in ("lane_change", "merge", "stop"):
        s = load_scenario(name)
        assert isinstance(s, Scenario) and s.name == name and s.task == name
        assert s.simulator == "highway"
        assert not set(s.train_seeds) & set(s.eval_seeds)
        assert s.simulation_frequency_hz % s.policy_frequency_hz == 0
        assert s.demos.episodes <= len(s.train_seeds)
        for split in s.splits:
            assert s.seeds_for(split) == s.eval_seeds
            assert s.env_config_for(split) == {**s.env_config, **s.splits[split]}


def test_valid_file_parses_types_and_seed_ranges(tmp_path):
    s = load_scenario(write(tmp_path, GOOD))
    assert s.train_seeds == tuple(range(20)) and s.eval_seeds == (100, 101, 102)
    assert s.frames_per_action == 3 and s.max_policy_steps == 50
    assert s.success.hold_seconds == 2.0 and s.demos.episodes == 5 and s.demos.seed == 0
    assert s.env_config_for("dense") == {"lanes_count": 2, "vehicles_count": 8}
    assert s.env_config_for("train") == {"lanes_count": 2}
    assert s.seeds_for("train") == s.train_seeds and s.seeds_for("eval") == s.eval_seeds
    assert s.source == str(tmp_path / "s.yaml")


def test_misspelled_key_names_key_and_suggests(tmp_path):
    data = {**GOOD}
    data["sucess"] = data.pop("success")
    message = load_error(tmp_path, data)
    assert "'sucess'" in message and "did you mean 'success'" in message


def test_misspelled_nested_key(tmp_path):
    data = {**GOOD, "success": {"stopped_before_m": 15, "max_final_speed_mps": 0.5, "hold_secnds": 2}}
    message = load_error(tmp_path, data)
    assert "'success.hold_secnds'" in message and "did you mean 'hold_seconds'" in message


@pytest.mark.parametrize(
    "key, value, expect",
    [
        ("policy_frequency_hz", "5", "expected an integer"),
        ("policy_frequency_hz", True, "expected an integer"),
        ("episode_seconds", "long", "expected a number"),
        ("env_config", [1, 2], "expected a mapping"),
        ("task", "lane-change", "did you mean 'lane_change'"),
        ("simulator", "carla", "must be one of"),
        ("simulation_frequency_hz", 12, "integer multiple"),
        ("train_seeds", [1, 2, 1], "listed twice"),
        ("eval_seeds", [], "non-empty"),
    ],
)
def test_wrong_types_and_values_name_the_key(tmp_path, key, value, expect):
    message = load_error(tmp_path, {**GOOD, key: value})
    assert f"'{key}'" in message and expect in message


def test_eval_seeds_overlapping_train_seeds_is_an_error(tmp_path):
    message = load_error(tmp_path, {**GOOD, "eval_seeds": [5, 100]})
    assert "'eval_seeds'" in message and "overlap" in message


def test_missing_required_and_task_specific_keys(tmp_path):
    data = {k: v for k, v in GOOD.items() if k != "expert"}
    assert "'expert'" in load_error(tmp_path, data)
    message = load_error(tmp_path, {**GOOD, "success": {"stopped_before_m": 15, "max_final_speed_mps": 0.5}})
    assert "'success.hold_seconds'" in message and "required for task 'stop'" in message
    message = load_error(tmp_path, {**GOOD, "success": {**GOOD["success"], "route_length_m": 100}})
    assert "'success.route_length_m'" in message and "lane_change" in message


def test_reserved_split_name_and_unknown_split(tmp_path):
    message = load_error(tmp_path, {**GOOD, "splits": {"eval": {"vehicles_count": 2}}})
    assert "'splits.eval'" in message and "reserved" in message
    s = scenario_from_dict(GOOD, source="x.yaml")
    with pytest.raises(ScenarioError, match="'dens'.*did you mean 'dense'"):
        s.seeds_for("dens")


def test_demos_needing_more_train_seeds_than_exist(tmp_path):
    message = load_error(tmp_path, {**GOOD, "demos": {"episodes": 21}})
    assert "'demos.episodes'" in message


@pytest.mark.parametrize("training, expect", [
    ({"bc_coef": -0.1}, "'training.bc_coef'"),
    ({"bc_coef": "high"}, "'training.bc_coef'"),
    ({"bc_coeff": 0.1}, "did you mean 'bc_coef'"),
])
def test_training_settings_are_checked_key_by_key(tmp_path, training, expect):
    assert expect in load_error(tmp_path, {**GOOD, "training": training})
    assert scenario_from_dict({**GOOD, "training": {"bc_coef": 0.5}}).training.bc_coef == 0.5


def test_unknown_name_and_bad_yaml(tmp_path, monkeypatch):
    with pytest.raises(ScenarioError, match="no such scenario 'lane_chang'.*did you mean 'lane_change'"):
        load_scenario("lane_chang")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsimulator: [highway\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: invalid YAML at line \d"):
        load_scenario(bad)
    # A scenario folder named by the environment variable takes precedence.
    write(tmp_path, GOOD, "tiny_stop.yaml")
    monkeypatch.setenv("DRIVE_DRAIL_SCENARIO_DIR", str(tmp_path))
    assert "tiny_stop" in list_scenarios()
    assert load_scenario("tiny_stop").name == "tiny_stop"
