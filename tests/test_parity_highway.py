"""Parity: observations converted from a recorded highway-env log equal the adapter's own.

The expert episode is recorded (every vehicle, every simulation step), converted by the
same converter that reads highD/NGSIM/ScenarioNet, and compared with the observations the
adapter returned while the same expert drove the same seed. Also: the actions the
converter recovers by inverse dynamics are the actions the expert applied.
"""

import numpy as np
import pytest

from drive_drail import spec
from drive_drail.logs.registry import read_log
from drive_drail.pairs.convert import ConvertConfig, convert
from drive_drail.record import EGO_TRACK_ID, _make_expert, record_episodes
from drive_drail.scenario import load_scenario
from drive_drail.sim import make_env


def drive(scenario, seed, max_steps):
    """Observations and applied unit actions of the expert, from the adapter, per policy step."""
    env = make_env(scenario, split="train")
    expert = _make_expert(scenario)
    obs, _ = env.reset(seed=seed)
    expert.reset(env)
    observations, actions = [], []
    try:
        for _ in range(max_steps):
            action = np.asarray(expert.act(env), dtype=np.float64)
            observations.append(obs)
            actions.append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    finally:
        env.close()
    return np.array(observations), np.array(actions)


@pytest.mark.parametrize("name", ["lane_change", "merge", "stop"])
def test_log_converted_observation_equals_adapter_observation(tmp_path, name):
    scenario = load_scenario(name)
    path = record_episodes(scenario, n_episodes=1, seed=0, out_path=tmp_path / "log.parquet", progress=False)
    log = read_log(path)
    log.tracks["expert"] = True  # compare every step, whatever the episode's outcome
    pairs = convert(log, ConvertConfig(action_hz=scenario.policy_frequency_hz))
    ego = pairs[pairs.track_id == EGO_TRACK_ID].sort_values("frame")
    k = scenario.simulation_frequency_hz // scenario.policy_frequency_hz
    assert (ego.frame.to_numpy() == np.arange(len(ego)) * k).all()

    adapter_obs, applied = drive(scenario, scenario.train_seeds[0], max_steps=len(ego))
    n = min(len(ego), len(adapter_obs))
    assert n >= 10
    log_obs = ego[list(spec.OBS_NAMES)].to_numpy(np.float64)[:n]
    np.testing.assert_allclose(log_obs, adapter_obs[:n], atol=1e-4)

    # Inverse dynamics recovers the applied physical actions (acceleration exactly; steering
    # wherever the car moves, since a standing car's steering leaves no trace).
    recovered = ego[list(spec.ACTION_NAMES)].to_numpy(np.float64)[:n]
    physical = spec.action_to_physical(applied[:n])
    np.testing.assert_allclose(recovered[:, 0], physical[:, 0], atol=1e-3)
    moving = ego.speed_mps.to_numpy()[:n] > 1.0
    np.testing.assert_allclose(recovered[moving, 1], physical[moving, 1], atol=1e-3)
