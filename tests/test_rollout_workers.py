"""Rollout segments played inside the simulator workers: the actor copy, the worker pool, the merge."""

import numpy as np
import pytest
import torch

from drive_drail import spec
from drive_drail.errors import UserError
from drive_drail.train.adversarial import build_ppo
from drive_drail.train.config import PolicyConfig, PPOConfig, TrainConfig
from drive_drail.train.envs import env_factory
from drive_drail.train.rollout import ActorSnapshot, Segment, SegmentRunner
from drive_drail.train.workers import RolloutWorkers

ZEROS, ONES = np.zeros(spec.OBS_DIM), np.ones(spec.OBS_DIM)


def stop_factories(n):
    return [env_factory("stop", w, n, ZEROS, ONES, seed_offset=0) for w in range(n)]


@pytest.fixture(scope="module")
def actor():
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv(stop_factories(1))
    model = build_ppo(TrainConfig(scenario="stop", n_envs=1, ppo=PPOConfig(n_steps=16, batch_size=16),
                                 policy=PolicyConfig(init_action_std=(0.3, 0.05))), env, seed=0)
    env.close()
    return model.policy


def test_actor_snapshot_is_the_policy_mean_and_std(actor):
    snapshot = ActorSnapshot.from_policy(actor)
    obs = np.random.default_rng(0).normal(size=(64, spec.OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        mean = actor.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
    np.testing.assert_allclose(snapshot.mean(obs), mean, atol=1e-5)
    np.testing.assert_allclose(snapshot.std, [0.3, 0.05], rtol=1e-6)
    draws = snapshot.sample(np.repeat(obs[:1], 4000, 0), np.random.default_rng(1)) - mean[0]
    np.testing.assert_allclose(draws.std(axis=0), [0.3, 0.05], rtol=0.05)


def test_worker_segments_equal_in_process_ones_and_repeat(actor):
    """A worker in a subprocess plays what the same env and noise play in this process."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    snapshot = ActorSnapshot.from_policy(actor)
    fns = stop_factories(2)
    workers = RolloutWorkers(fns)
    try:
        workers.reset()
        first = Segment.concat(workers.collect_segments(snapshot, 40, key=(0, 7)))
    finally:
        workers.close()
    for w in range(2):
        local = SegmentRunner(DummyVecEnv([fns[w]]), worker=w)
        local.reset()
        alone = local.collect(snapshot, 40, key=(0, 7))
        local.close()
        np.testing.assert_array_equal(first.obs[:, w], alone.obs[:, 0])
        np.testing.assert_array_equal(first.actions[:, w], alone.actions[:, 0])
        np.testing.assert_array_equal(first.episode_starts[:, w], alone.episode_starts[:, 0])
    assert first.obs.shape == (40, 2, spec.OBS_DIM) and not np.array_equal(first.actions[:, 0], first.actions[:, 1])


def test_segments_continue_episodes_across_rollouts_and_merge_env_indices(actor):
    """Episodes run on across segments; merged ends carry the env index of the whole pool."""
    workers = RolloutWorkers(stop_factories(2))
    try:
        workers.reset()
        snapshot = ActorSnapshot.from_policy(actor)
        a = workers.collect_segments(snapshot, 30, key=(0, 0))
        b = workers.collect_segments(snapshot, 30, key=(0, 1))
        obs, _, _, _ = workers.step(np.zeros((2, spec.ACTION_DIM), np.float32))  # still a plain VecEnv
        assert workers.get_attr("n_workers") == [2, 2] and workers.env_is_wrapped(type(None)) == [False, False]
        workers.set_attr("tag", "b", indices=1)
        assert workers.get_attr("tag", indices=[1]) == ["b"]
        assert workers.env_method("get_wrapper_attr", "worker") == [0, 1]
    finally:
        workers.close()
    assert obs.shape == (2, spec.OBS_DIM)
    for w in range(2):  # segment b starts where a ended
        np.testing.assert_array_equal(b[w].obs[0, 0], a[w].last_obs[0])
        assert b[w].episode_starts[0, 0] == a[w].last_episode_starts[0]
    merged = Segment.concat(b)
    assert merged.terminated  # the random-ish policy crashes within 30 steps: the checks below bite
    ends = sorted([(t, e) for t, e in merged.terminated] + [(t, e) for t, e, _ in merged.truncated])
    per_worker = sorted([(t, w) for w in range(2) for t, _ in b[w].terminated] + [(t, w) for w in range(2) for t, _, _ in b[w].truncated])
    assert ends == per_worker and len(merged.episodes) == len(b[0].episodes) + len(b[1].episodes)
    # an episode ending at step t is followed by an episode start at step t + 1
    for t, e in merged.terminated:
        if t + 1 < 30:
            assert merged.episode_starts[t + 1, e] == 1.0


def test_a_worker_that_cannot_build_its_env_reports_the_users_error():
    def broken():
        raise UserError("scenarios/nowhere.yaml: no such scenario")

    with pytest.raises(UserError, match="nowhere.yaml"):
        RolloutWorkers([broken, broken])


LEARNER = """
import sys, time
import numpy as np
from drive_drail import spec
from drive_drail.train.envs import env_factory
from drive_drail.train.workers import RolloutWorkers
z, o = np.zeros(spec.OBS_DIM), np.ones(spec.OBS_DIM)
from drive_drail.train.rollout import ActorSnapshot
workers = RolloutWorkers([env_factory("stop", w, 2, z, o, seed_offset=0) for w in range(2)])
idle = ActorSnapshot([np.zeros((spec.OBS_DIM, 2), np.float32)], [np.zeros(2, np.float32)], np.full(2, 0.1, np.float32))
workers._send(range(2), "collect", idle, 100_000, (0, 0))  # minutes of work: the workers are busy, not waiting on the pipe
print(" ".join(str(p.pid) for p in workers.processes), flush=True)
time.sleep(600)
"""


def test_busy_workers_exit_when_their_learner_is_killed():
    import os
    import signal
    import subprocess
    import sys
    import time

    learner = subprocess.Popen([sys.executable, "-c", LEARNER], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in learner.stdout.readline().split()]
    assert len(pids) == 2

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
            return f.read().split(")")[-1].split()[0] != "Z"

    assert all(alive(p) for p in pids)
    learner.send_signal(signal.SIGKILL)
    learner.wait()
    deadline = time.time() + 30
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
