"""The batched simulator's two ways of stepping frames agree: the compiled CPU kernel
(``sim/batched/kernel.py``) and the whole-array torch path (``env.simulate_frame``).

Both are also held to highway-env itself (test_batched_differential); here they are held to each
other on many more scenes, every scenario and split, with the ego both a policy and an IDM driver:
every discrete decision (lane, target lane, crash, pending impact) equal at every step, every
continuous state within rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drive_drail.scenario import load_scenario
from drive_drail.sim.batched import kernel
from drive_drail.sim.batched.env import BatchedHighwayEnv, make_ego_idm

pytestmark = pytest.mark.skipif(not kernel.AVAILABLE, reason="numba is not installed")

DISCRETE = ("lane", "target_lane", "crashed", "has_impact", "valid")
CONTINUOUS = ("x_m", "y_m", "heading_rad", "speed_mps", "steer_rad", "accel_mps2", "timer_s", "impact_x_m", "impact_y_m")
CASES = [("lane_change", "train"), ("lane_change", "dense"), ("lane_change", "four_lanes"), ("merge", "train"),
         ("merge", "dense"), ("stop", "train")]


def twin_envs(name: str, split: str, scenes: int) -> dict[str, BatchedHighwayEnv]:
    envs = {k: BatchedHighwayEnv(load_scenario(name), scenes, split=split, autoreset=False, kernel=k) for k in ("numba", "torch")}
    for env in envs.values():
        env.reset()
    return envs


def assert_same_state(envs: dict[str, BatchedHighwayEnv], where: str) -> None:
    a, b = envs["numba"].state, envs["torch"].state
    for f in DISCRETE:
        diff = torch.nonzero(getattr(a, f) != getattr(b, f))
        assert len(diff) == 0, f"{where}: {f} differs at (scene, slot) {diff[:5].tolist()}"
    for f in CONTINUOUS:
        err = float((getattr(a, f) - getattr(b, f)).abs().max())
        assert err <= 1e-6, f"{where}: {f} differs by {err}"


@pytest.mark.parametrize("name,split", CASES)
def test_kernel_and_torch_path_step_the_same_scenes_alike(name, split):
    envs = twin_envs(name, split, scenes=48)
    rng = np.random.default_rng(7)
    bias = rng.uniform(-0.6, 1.0, size=(48, 1))
    lane_changes = 0
    for t in range(60):  # 12 s at 5 Hz
        action = np.clip(np.concatenate([bias + rng.normal(0, 0.3, (48, 1)), rng.normal(0, 0.05, (48, 1))], axis=1), -1, 1)
        results = {k: env.step(action) for k, env in envs.items()}
        assert_same_state(envs, f"{name}/{split} step {t}")
        assert np.array_equal(results["numba"].terminated, results["torch"].terminated)
        np.testing.assert_allclose(results["numba"].obs, results["torch"].obs, atol=1e-5)
        st = envs["numba"].state
        lane_changes += int((st.target_lane[:, : st.n_vehicles] != st.lane[:, : st.n_vehicles]).sum())
    st = envs["numba"].state
    assert st.crashed[:, 0].any(), "no ego crash: the collision pass was not exercised"
    assert lane_changes > 0, "no lane change: MOBIL and the abort rule were not exercised"


def test_kernel_and_torch_path_agree_with_the_ego_as_an_idm_driver_that_changes_lanes():
    envs = twin_envs("lane_change", "dense", scenes=32)
    for env in envs.values():
        make_ego_idm(env.state, env.lanes, torch.arange(32), lane_change=True)
    start_lane = envs["numba"].state.lane[:, 0].clone()
    for t in range(10):
        for env in envs.values():
            env.simulate(10)
        assert_same_state(envs, f"frame {10 * (t + 1)}")
    assert (envs["numba"].state.lane[:, 0] != start_lane).any(), "no IDM ego changed lanes"


def test_auto_picks_the_kernel_on_a_cpu_and_a_float32_state_falls_back_to_torch():
    scenario = load_scenario("stop")
    assert BatchedHighwayEnv(scenario, 4).kernel == "numba"
    assert BatchedHighwayEnv(scenario, 4, dtype=torch.float32).kernel == "torch"
    with pytest.raises(ValueError, match="float64 state on the CPU"):
        BatchedHighwayEnv(scenario, 4, dtype=torch.float32, kernel="numba")
    with pytest.raises(ValueError, match="kernel must be one of"):
        BatchedHighwayEnv(scenario, 4, kernel="cython")


def test_the_kernel_leaves_torch_its_thread_count():
    """numba's OpenMP pool, started by the first kernel call, resets the OpenMP thread count torch
    shares; a process held to 1 thread must stay at 1 (sweep trials share 2 cores one thread each).
    A fresh process, so that the pool really starts inside the check."""
    import subprocess
    import sys

    script = (
        "import torch; torch.set_num_threads(1)\n"
        "import numpy as np\n"
        "from drive_drail.scenario import load_scenario\n"
        "from drive_drail.sim.batched.env import BatchedHighwayEnv\n"
        "env = BatchedHighwayEnv(load_scenario('lane_change'), 8, kernel='numba'); env.reset()\n"
        "env.step(np.zeros((8, 2))); env.step(np.zeros((8, 2)))\n"
        "import numba; print(torch.get_num_threads(), numba.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split()[-2:] == ["1", "1"]


def test_a_step_runs_its_frames_on_torch_threads_and_gives_the_count_back(monkeypatch):
    """The env's own tensor ops run on one thread inside a step (they stalled at OpenMP barriers beside a
    busy process); the kernel's frames still get torch's count, and torch has it again afterwards."""
    import numba

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        env = BatchedHighwayEnv(load_scenario("lane_change"), 8, kernel="numba")
        seen = []
        simulate = kernel.simulate_frames

        def spy(*args):
            seen.append(torch.get_num_threads())  # the env's ops around the frames
            simulate(*args)
            seen.append(numba.get_num_threads())  # the frames

        monkeypatch.setattr(kernel, "simulate_frames", spy)
        env.reset()
        env.step(np.zeros((8, 2)))
        assert seen == [1, min(2, numba.config.NUMBA_NUM_THREADS)]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
