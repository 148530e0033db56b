"""Vector-env interfaces of the batched simulator: gymnasium's ``VectorEnv`` and an SB3 ``VecEnv``.

Both wrap one :class:`BatchedHighwayEnv` and auto-reset finished scenes in the same step:

- :class:`BatchedVectorEnv` (gymnasium 1.x, ``autoreset_mode = SAME_STEP``): infos are a
  dict of ``[B]`` arrays with ``_key`` masks; a finished scene's last observation and info
  are in ``infos["final_obs"]`` / ``infos["final_info"]`` (masked by ``_final_obs``), as
  ``SyncVectorEnv`` reports them in that mode;
- :class:`BatchedSB3VecEnv` (stable-baselines3): ``step_wait`` returns ``(obs, rewards,
  dones, infos)`` with one info dict per scene; on done, ``infos[i]["terminal_observation"]``
  holds the last observation, ``infos[i]["TimeLimit.truncated"] = truncated and not
  terminated``, and ``obs[i]`` is already the next episode's first, as ``DummyVecEnv`` does.

:func:`make_batched_vec_env` is the trainer's entry point: observations standardised with
the fixed expert statistics (``drive_drail.train.envs.FixedObsNormalizer``) and episode
seeds from the scenario's train seeds in ``DeclaredSeeds``' order.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv

from drive_drail import spec
from drive_drail.scenario import Scenario, load_scenario
from drive_drail.sim.batched.env import BatchedHighwayEnv

SINGLE_OBSERVATION_SPACE = gym.spaces.Box(-np.inf, np.inf, (spec.OBS_DIM,), np.float32)
SINGLE_ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (spec.ACTION_DIM,), np.float32)


class BatchedVectorEnv(gym.vector.VectorEnv):
    """gymnasium ``VectorEnv`` over a :class:`BatchedHighwayEnv` (same-step auto-reset).

    ``reset(seed=s)`` plays episode seeds ``s, s + 1, ..., s + B - 1`` (a list gives one per
    scene); ``reset()`` the next declared seeds. ``options={"reset_mask": mask}`` resets only
    the masked scenes (their next declared seeds).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env: BatchedHighwayEnv):
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = SINGLE_OBSERVATION_SPACE
        self.single_action_space = SINGLE_ACTION_SPACE
        self.observation_space = batch_space(SINGLE_OBSERVATION_SPACE, self.num_envs)
        self.action_space = batch_space(SINGLE_ACTION_SPACE, self.num_envs)
        self.render_mode = None

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        env = self.env
        mask = None if not options or "reset_mask" not in options else np.asarray(options["reset_mask"], dtype=bool)
        if mask is not None:
            scenes = np.flatnonzero(mask)
            env.reset_scenes(scenes, env.next_seeds(scenes))
            obs, info = env.observe(), env.info(np.zeros(self.num_envs, dtype=bool))
        elif seed is None:
            obs, info = env.reset()
        else:
            seeds = np.arange(self.num_envs) + int(seed) if np.isscalar(seed) else np.asarray(seed, dtype=np.int64)
            obs, info = env.reset(seeds)
        return obs, _with_masks(info, np.ones(self.num_envs, dtype=bool))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        r = self.env.step(actions)
        infos = _with_masks(r.info, np.ones(self.num_envs, dtype=bool))
        done = r.done
        if done.any():
            final_obs = np.full(self.num_envs, None, dtype=object)
            rows = np.flatnonzero(done)
            final_obs[rows] = list(r.final_obs)
            final_info = {}
            for key, value in r.final_info.items():
                full = np.zeros((self.num_envs, *value.shape[1:]), dtype=value.dtype)
                full[rows] = value
                final_info[key], final_info[f"_{key}"] = full, done.copy()
            infos.update({"final_obs": final_obs, "_final_obs": done.copy(), "final_info": final_info, "_final_info": done.copy()})
        return r.obs, r.reward, r.terminated, r.truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        pass


def _with_masks(info: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key], out[f"_{key}"] = value, mask.copy()
    return out


class BatchedSB3VecEnv(VecEnv):
    """stable-baselines3 ``VecEnv`` over a :class:`BatchedHighwayEnv`, with fixed observation standardisation.

    Observations are standardised by ``spec.standardise``, as ``FixedObsNormalizer`` does (identity when
    no statistics are given). Episode seeds always follow the env's declared order, like ``DeclaredSeeds``
    (``seed()`` is accepted and ignored).
    """

    def __init__(self, env: BatchedHighwayEnv, obs_mean: np.ndarray | None = None, obs_std: np.ndarray | None = None):
        self.env = env
        self.obs_mean = np.zeros(spec.OBS_DIM, np.float32) if obs_mean is None else np.asarray(obs_mean, dtype=np.float32)
        self.obs_std = np.ones(spec.OBS_DIM, np.float32) if obs_std is None else np.asarray(obs_std, dtype=np.float32)
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, SINGLE_OBSERVATION_SPACE, SINGLE_ACTION_SPACE)

    def normalise(self, obs: np.ndarray) -> np.ndarray:
        return spec.standardise(obs, self.obs_mean, self.obs_std)

    def reset(self) -> np.ndarray:
        obs, info = self.env.reset()
        self.reset_infos = _per_env(info)
        self._reset_seeds()
        self._reset_options()
        return self.normalise(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        r = self.env.step(self._actions)
        done = r.done
        # r.info of a finished scene is its episode's final info (computed before the auto-reset).
        infos = _per_env({**r.info, "TimeLimit.truncated": r.truncated & ~r.terminated})
        if done.any():
            final = self.normalise(r.final_obs)
            for row, i in enumerate(np.flatnonzero(done).tolist()):
                infos[i]["terminal_observation"] = final[row]
        return self.normalise(r.obs), r.reward.copy(), done.copy(), infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = None if attr_name == "render_mode" else getattr(self.env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def _per_env(info: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One dict of Python scalars per scene (rows of ``[B, ...]`` arrays stay arrays)."""
    keys = list(info)
    columns = [v.tolist() if v.ndim == 1 else list(v) for v in info.values()]
    return [dict(zip(keys, row)) for row in zip(*columns)]


def make_batched_vec_env(
    scenario: Scenario | str,
    n_envs: int,
    obs_mean: np.ndarray,
    obs_std: np.ndarray,
    seed: int,
    device: str = "cpu",
) -> BatchedSB3VecEnv:
    """The trainer's SB3 ``VecEnv`` on the batched simulator (train split).

    ``n_envs`` scenes; observations ``(obs - obs_mean) / obs_std``; scene w plays
    ``train_seeds[(seed + n * n_envs + w) % len]`` in its n-th episode (``DeclaredSeeds``
    with ``seed`` as the offset).
    """
    sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
    env = BatchedHighwayEnv(sc, n_envs, split="train", seed_offset=seed, device=device)
    return BatchedSB3VecEnv(env, obs_mean, obs_std)
