"""Parallel evaluation: the same table for any worker count and for the Ray backend."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from drive_drail.evaluate.parallel import map_tasks
from drive_drail.evaluate.runner import evaluate
from drive_drail.models.policy import ActorConfig, DeterministicActor
from drive_drail.scenario import load_scenario


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two short scenarios and a small torch actor."""
    torch.manual_seed(3)
    actor = tmp_path_factory.mktemp("actor") / "actor.pt"
    DeterministicActor(ActorConfig(hidden_sizes=(16,))).save(actor)
    scenarios = [
        dataclasses.replace(load_scenario("stop"), episode_seconds=2.0),
        dataclasses.replace(load_scenario("merge"), episode_seconds=2.0),
    ]
    return ["expert", "random", f"net={actor}"], scenarios


def test_map_tasks_keeps_order_across_workers():
    # a stdlib function: spawned workers need not import this test module
    tasks = [7, 1, 5, 3, 0, 6, 2]
    assert map_tasks(math.factorial, tasks, workers=1) == [math.factorial(x) for x in tasks]
    assert map_tasks(math.factorial, tasks, workers=2) == [math.factorial(x) for x in tasks]
    with pytest.raises(ValueError, match="backend"):
        map_tasks(math.factorial, tasks, backend="dask")


@pytest.mark.slow
def test_one_and_two_workers_give_identical_tables(setup):
    policies, scenarios = setup
    one = evaluate(policies, scenarios, episodes=2, split=["eval", "dense"], workers=1)
    two = evaluate(policies, scenarios, episodes=2, split=["eval", "dense"], workers=2)
    assert len(one) == 3 * 2 * 2 * 2
    # the random baseline really is random across seeds (a constant table would pass trivially)
    assert one[one.policy == "random"].mean_abs_jerk_mps3.nunique() > 1
    pd.testing.assert_frame_equal(one, two, check_exact=True)


@pytest.mark.slow
def test_ray_backend_returns_the_process_pool_metrics(setup):
    try:
        import ray
    except ImportError:
        pytest.fail("the Ray backend is tested in CI: install it with `pip install ray==2.60.0`")
    policies, scenarios = setup
    pool = evaluate(policies, scenarios[:1], episodes=2, split="eval", workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = evaluate(policies, scenarios[:1], episodes=2, split="eval", backend="ray")
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(pool, on_ray, check_exact=True)


def test_a_script_without_a_main_guard_gets_a_clear_error_not_a_broken_pool(tmp_path):
    """forkserver workers import the calling script: without `if __name__ == "__main__":` they die at start."""
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text("from drive_drail.evaluate.runner import evaluate\n"
                      "evaluate(['constant'], 'stop', episodes=2, split='eval', workers=2)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("drive_drail.evaluate.parallel.WorkerPoolError")]
    assert f"worker processes import your script {script}" in line
    assert '`if __name__ == "__main__":`' in line and "workers=1" in line


def test_a_worker_killed_under_a_guarded_script_is_named_as_killed(tmp_path):
    """With the guard in place, a dead worker was ended from outside: the error must not blame the script."""
    import subprocess
    import sys

    script = tmp_path / "guarded.py"
    script.write_text("import os, signal\n"
                      "from drive_drail.evaluate.parallel import map_tasks\n\n"
                      "def die(task):\n"
                      "    os.kill(os.getpid(), signal.SIGKILL)\n\n"
                      "if __name__ == '__main__':\n"
                      "    map_tasks(die, [1, 2], workers=2)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("drive_drail.evaluate.parallel.WorkerPoolError")]
    assert "killed" in line and "__main__" not in line


def test_the_evaluate_bar_counts_episodes_not_seeds(tmp_path):
    import sys

    from terminal import stderr_on_a_terminal

    rc, text = stderr_on_a_terminal([sys.executable, "-m", "drive_drail.cli", "evaluate", "--policy", "constant", "--policy", "random",
                                     "--scenario", "stop", "--episodes", "3", "--workers", "1", "-o", str(tmp_path / "r")], timeout_s=300)
    assert rc == 0 and "6/6" in text and "3/3" not in text, text  # 2 policies x 3 seeds
