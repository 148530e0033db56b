"""Training environments: the scenario's adapter, fixed obs normalisation, declared seeds."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from drive_drail import spec


class FixedObsNormalizer(gym.ObservationWrapper):
    """``(obs - mean) / std`` with statistics fixed from the expert data.

    The statistics never update from agent data, so the discriminator and the policy see
    the same features the expert pairs were standardised with (METHOD.md pitfalls).
    """

    def __init__(self, env: gym.Env, mean: np.ndarray, std: np.ndarray):
        super().__init__(env)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=self.mean.shape, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return spec.standardise(observation, self.mean, self.std)


class DeclaredSeeds(gym.Wrapper):
    """Reset episode ``n`` of worker ``w`` (of ``W``) with ``seeds[(offset + n * W + w) % len(seeds)]``.

    Makes a run repeatable and keeps training on the scenario's train seeds (never its
    held-out evaluation seeds).
    """

    def __init__(self, env: gym.Env, seeds: list[int], worker: int, n_workers: int, offset: int = 0):
        super().__init__(env)
        self.seeds, self.worker, self.n_workers, self.offset = list(seeds), worker, n_workers, offset
        self.episode = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        k = (self.offset + self.episode * self.n_workers + self.worker) % len(self.seeds)
        self.episode += 1
        return self.env.reset(seed=int(self.seeds[k]), options=options)


def env_factory(
    scenario_name: str, worker: int, n_workers: int, mean: np.ndarray, std: np.ndarray, seed_offset: int
) -> Callable[[], gym.Env]:
    """A picklable constructor for one worker (SubprocVecEnv calls it in the child)."""

    def make() -> gym.Env:
        from drive_drail.scenario import load_scenario
        from drive_drail.sim import make_env

        scenario = load_scenario(scenario_name)
        env = make_env(scenario, seed=scenario.train_seeds[0], split="train")
        env = DeclaredSeeds(env, list(scenario.train_seeds), worker, n_workers, seed_offset)
        return FixedObsNormalizer(env, mean, std)

    return make


def make_vec_env(scenario_name: str, n_envs: int, mean: np.ndarray, std: np.ndarray, seed_offset: int, sim: str = "adapter"):
    """The trainer's ``VecEnv`` of ``n_envs`` environments, able to play whole rollout segments on its own
    (``collect_segments``, see ``drive_drail.train.rollout``).

    ``sim="adapter"``: the scenario's simulator, one subprocess per environment when ``n_envs > 1``
    (:class:`~drive_drail.train.workers.RolloutWorkers`), in this process otherwise;
    ``sim="batched"``: the vectorised highway simulator, all scenes in this process.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from drive_drail.train.rollout import SegmentRunner
    from drive_drail.train.workers import RolloutWorkers

    if sim == "batched":
        from drive_drail.sim.batched.vec_env import make_batched_vec_env

        return SegmentRunner(make_batched_vec_env(scenario_name, n_envs, mean, std, seed=seed_offset))

    fns = [env_factory(scenario_name, w, n_envs, mean, std, seed_offset) for w in range(n_envs)]
    if n_envs == 1:
        return SegmentRunner(DummyVecEnv(fns))
    return RolloutWorkers(fns)
