"""Differential tests: the batched simulator against highway-env on the same machine.

1. Identical scenes (highway-env's reset for a seed, imported with every vehicle's full
   state, timers included) driven by the same ego actions: every vehicle's position after
   5 s agrees within 0.5 m for >= 95% of vehicles, and the collision events (which objects
   are crashed after each policy step) over 10 s are the same in >= 95% of scenes.
2. The IDM expert (the ego driven by highway-env's own IDM/MOBIL ``IDMVehicle``) from each
   simulator's own random starts: crash rate and mean speed agree within their 95%
   confidence intervals (two-sample test at the 5% level). This also checks that the
   batched spawners draw from highway-env's distributions.

CI runs a few scenes per scenario; the full 100-scene versions are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from highway_env.vehicle.behavior import IDMVehicle

from drive_drail.scenario import load_scenario
from drive_drail.sim.batched.env import BatchedHighwayEnv, make_ego_idm
from drive_drail.sim.batched.scene_exchange import import_scene, scene_objects
from drive_drail.sim.highway import HighwayAdapter

SCENARIOS = ["lane_change", "merge", "stop"]
POSITION_TOL_M = 0.5


def ego_actions(rng: np.random.Generator, steps: int) -> np.ndarray:
    """A random but drivable ego action sequence ``[steps, 2]`` in [-1, 1]: a held throttle bias
    (some scenes rear-end their leader) and a slowly wandering steering."""
    bias = rng.uniform(-0.5, 1.0)
    accel = np.clip(bias + rng.normal(0, 0.3, steps), -1, 1)
    steer = np.clip(np.cumsum(rng.normal(0, 0.01, steps)), -0.08, 0.08)
    return np.stack([accel, steer], axis=1)


KERNELS = ["numba", "torch"]
"""Both ways of stepping frames: the compiled CPU kernel and the whole-array torch path."""


def run_identical_scenes(name: str, seeds: list[int], seconds: float = 10.0, compare_at_s: float = 5.0) -> dict[str, dict]:
    """Import highway-env's scene of each seed, drive highway-env and the batched simulator (each of
    :data:`KERNELS`) with the same ego actions.

    Returns, per kernel, per-vehicle position errors at ``compare_at_s`` and per-scene collision agreement.
    """
    scenario = load_scenario(name)
    steps = int(round(seconds * scenario.policy_frequency_hz))
    at = int(round(compare_at_s * scenario.policy_frequency_hz))
    envs = {kernel: BatchedHighwayEnv(scenario, len(seeds), autoreset=False, kernel=kernel) for kernel in KERNELS}
    for env in envs.values():
        env.reset()
    adapter = HighwayAdapter(scenario)
    rng = np.random.default_rng(1234)
    actions = np.stack([ego_actions(rng, steps) for _ in seeds], axis=1)  # [steps, K, 2]

    hw_pos, hw_crash = [], []
    for k, seed in enumerate(seeds):
        adapter.reset(seed=seed)
        for env in envs.values():
            import_scene(env, k, adapter)
        vehicles, objects = scene_objects(adapter.hw_env)
        crashes = []
        for t in range(steps):
            adapter.step(actions[t, k])  # termination ignored: both keep simulating
            crashes.append([o.crashed for o in vehicles])
            if t + 1 == at:
                hw_pos.append(np.array([v.position for v in vehicles]))
        hw_crash.append(np.array(crashes))

    results = {}
    for kernel, env in envs.items():
        b_pos, b_crash = None, []
        for t in range(steps):
            env.step(actions[t])
            b_crash.append(env.state.crashed.numpy().copy())
            if t + 1 == at:
                b_pos = np.stack([env.state.x_m.numpy(), env.state.y_m.numpy()], axis=2).copy()
        b_crash = np.stack(b_crash, axis=1)  # [K, steps, M]

        errors, same_events, any_crash = [], [], 0
        for k in range(len(seeds)):
            n = len(hw_pos[k])
            errors.append(np.linalg.norm(b_pos[k, :n] - hw_pos[k], axis=1))
            same_events.append(bool(np.array_equal(b_crash[k, :, :n], hw_crash[k])))
            any_crash += bool(hw_crash[k].any())
        errors = np.concatenate(errors)
        results[kernel] = {
            "vehicles": len(errors),
            "within_tol": float(np.mean(errors <= POSITION_TOL_M)),
            "max_error_m": float(errors.max()),
            "same_collisions": float(np.mean(same_events)),
            "scenes_with_crash": any_crash,
        }
    return results


@pytest.mark.parametrize("name", SCENARIOS)
def test_identical_scenes_agree_fast(name):
    for kernel, r in run_identical_scenes(name, seeds=[0, 1, 2], seconds=10.0).items():
        assert r["within_tol"] == 1.0, (kernel, r)
        assert r["same_collisions"] == 1.0, (kernel, r)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_identical_scenes_agree_100(name):
    for kernel, r in run_identical_scenes(name, seeds=list(range(100)), seconds=10.0).items():
        print(f"\n{name} ({kernel}): {r}")
        assert r["within_tol"] >= 0.95, (kernel, r)
        assert r["same_collisions"] >= 0.95, (kernel, r)
        assert r["scenes_with_crash"] > 0  # the collision comparison is exercised


# --------------------------------------------------------------------------------------
# IDM-expert outcome distributions from each simulator's own starts
# --------------------------------------------------------------------------------------


def highway_idm_outcomes(name: str, seeds: list[int], seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(crashed [E], mean speed [E]) of the ego as highway-env's IDMVehicle, in highway-env."""
    scenario = load_scenario(name)
    adapter = HighwayAdapter(scenario)
    frames = int(round(seconds * scenario.simulation_frequency_hz))
    crashed, speed = [], []
    for seed in seeds:
        adapter.reset(seed=seed)
        hw, ego = adapter.hw_env, adapter.ego
        idm = IDMVehicle(hw.road, ego.position, ego.heading, ego.speed, target_speed=ego.lane.speed_limit, enable_lane_change=scenario.task != "stop")
        hw.road.vehicles[hw.road.vehicles.index(ego)] = idm
        hw.vehicle = idm
        speeds = []
        for _ in range(frames):
            hw.road.act()
            hw.road.step(1 / scenario.simulation_frequency_hz)
            speeds.append(idm.speed)
        crashed.append(idm.crashed)
        speed.append(np.mean(speeds))
    return np.array(crashed), np.array(speed)


def batched_idm_outcomes(name: str, seeds: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """The same, in the batched simulator from its own spawner's scenes."""
    scenario = load_scenario(name)
    env = BatchedHighwayEnv(scenario, len(seeds), autoreset=False)
    env.reset(seeds)
    make_ego_idm(env.state, env.lanes, torch.arange(len(seeds)), lane_change=scenario.task != "stop")
    frames = int(round(seconds * scenario.simulation_frequency_hz))
    speeds = []
    for _ in range(frames):
        env.simulate(1)
        speeds.append(env.state.speed_mps[:, 0].numpy().copy())
    return env.state.crashed[:, 0].numpy(), np.mean(speeds, axis=0)


def agree_95(a: np.ndarray, b: np.ndarray) -> bool:
    """Two-sample test at 5%: |mean_a - mean_b| within 1.96 standard errors of the difference."""
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) <= 1.96 * se + 1e-12


def compare_idm_outcomes(name: str, n_highway: int, n_batched: int, seconds: float = 10.0) -> dict:
    hw_crash, hw_speed = highway_idm_outcomes(name, list(range(n_highway)), seconds)
    b_crash, b_speed = batched_idm_outcomes(name, np.arange(n_batched), seconds)
    return {
        "highway_crash_rate": float(hw_crash.mean()), "batched_crash_rate": float(b_crash.mean()),
        "highway_mean_speed": float(hw_speed.mean()), "batched_mean_speed": float(b_speed.mean()),
        "crash_rate_agrees": bool(agree_95(hw_crash.astype(float), b_crash.astype(float))) if (hw_crash.any() or b_crash.any()) else True,
        "mean_speed_agrees": bool(agree_95(hw_speed, b_speed)),
    }  # fmt: skip


def throttle_actions(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Straight driving with a random held throttle ``[steps, 2]``: some scenes end rear-ending a leader."""
    accel = np.clip(rng.uniform(-0.6, 1.0) + rng.normal(0, 0.2, steps), -1, 1)
    return np.stack([accel, np.zeros(steps)], axis=1)


def random_policy_outcomes(name: str, seeds: list[int], seconds: float, batched: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ego crashed [E], ego mean speed [E]) under :func:`throttle_actions` (seeded by the episode
    index) from highway-env's own starts or the batched spawner's. The IDM expert rarely
    crashes, so this is the comparison of crash rates far from zero; it depends on the spawned
    gaps and speeds, i.e. on the spawners drawing from the same distribution."""
    scenario = load_scenario(name)
    steps = int(round(seconds * scenario.policy_frequency_hz))
    actions = np.stack([throttle_actions(np.random.default_rng(i), steps) for i in range(len(seeds))], axis=1)  # [steps, E, 2]
    if batched:
        env = BatchedHighwayEnv(scenario, len(seeds), autoreset=False)
        env.reset(np.asarray(seeds))
        speeds = []
        for t in range(steps):
            env.step(actions[t])
            speeds.append(env.state.speed_mps[:, 0].numpy().copy())
        return env.state.crashed[:, 0].numpy(), np.mean(speeds, axis=0)
    adapter = HighwayAdapter(scenario)
    crashed, speed = [], []
    for k, seed in enumerate(seeds):
        adapter.reset(seed=seed)
        speeds = []
        for t in range(steps):
            adapter.step(actions[t, k])
            speeds.append(adapter.ego.speed)
        crashed.append(adapter.ego.crashed)
        speed.append(np.mean(speeds))
    return np.array(crashed), np.array(speed)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_idm_expert_outcome_distributions_agree(name):
    r = compare_idm_outcomes(name, n_highway=100, n_batched=1000)
    hw_crash, hw_speed = random_policy_outcomes(name, list(range(100)), 10.0, batched=False)
    b_crash, b_speed = random_policy_outcomes(name, list(range(1000)), 10.0, batched=True)
    r.update({
        "random_policy_highway_crash_rate": float(hw_crash.mean()), "random_policy_batched_crash_rate": float(b_crash.mean()),
        "random_policy_highway_mean_speed": float(hw_speed.mean()), "random_policy_batched_mean_speed": float(b_speed.mean()),
    })  # fmt: skip
    print(f"\n{name}: {r}")
    assert r["crash_rate_agrees"] and r["mean_speed_agrees"], r
    assert agree_95(hw_crash.astype(float), b_crash.astype(float)) and agree_95(hw_speed, b_speed), r


@pytest.mark.parametrize("kernel", KERNELS)
def test_idm_expert_on_identical_scenes_matches_exactly(kernel):
    """Fast check of the expert path itself: same imported scene, ego as IDMVehicle in both."""
    scenario = load_scenario("lane_change")
    env = BatchedHighwayEnv(scenario, 2, autoreset=False, kernel=kernel)
    env.reset()
    adapter = HighwayAdapter(scenario)
    finals = []
    for k, seed in enumerate([3, 4]):
        adapter.reset(seed=seed)
        hw, ego = adapter.hw_env, adapter.ego
        idm = IDMVehicle(hw.road, ego.position, ego.heading, ego.speed, target_speed=ego.lane.speed_limit)
        hw.road.vehicles[hw.road.vehicles.index(ego)] = idm
        hw.vehicle = idm
        import_scene(env, k, hw)
        for _ in range(60):
            hw.road.act()
            hw.road.step(env.sim_dt_s)
        finals.append(np.array([v.position for v in scene_objects(hw)[0]]))
    env.simulate(60)
    for k, pos in enumerate(finals):
        n = len(pos)
        ours = np.stack([env.state.x_m[k, :n].numpy(), env.state.y_m[k, :n].numpy()], axis=1)
        np.testing.assert_allclose(ours, pos, atol=1e-6)
