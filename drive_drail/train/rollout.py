"""Rollout collection for the adversarial loop: PPO's on-policy data, with the per-step work cut to the bone.

SB3's ``collect_rollouts`` runs the whole actor-critic on every step (actor, critic,
distribution, log-probability, plus a value pass per time-limit truncation). The
adversarial loop relabels every reward afterwards anyway, so here a step runs only the
actor's mean and adds Gaussian noise,

    a_t = mu_theta(s_t) + sigma_theta * eps_t,   eps_t ~ N(0, I),

and V(s_t) and log pi_theta(a_t | s_t) for the whole rollout are evaluated afterwards in
one batched pass. theta does not change during the rollout, so these are the numbers SB3
computes step by step (up to float rounding). With one simulator worker this takes the
policy's share of a step from ~0.3-1 ms to ~0.05 ms: the simulator then sets the pace.
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from drive_drail.sim.base import INFO_CRASHED, INFO_SPEED_MPS, INFO_SUCCESS


class EpisodeLedger:
    """What the relabelling step needs from a rollout: where episodes ended, and how.

    ``truncated``: (step, env, final obs) of time-limit ends (bootstrapped with V);
    ``terminated``: (step, env) of failures (paid the absorbing state's return);
    ``episodes``: per finished episode, length, crashed, success and mean speed [m/s].
    """

    def __init__(self, n_envs: int) -> None:
        self.truncated: list[tuple[int, int, np.ndarray]] = []
        self.terminated: list[tuple[int, int]] = []
        self.episodes: list[dict] = []
        self._length = np.zeros(n_envs)
        self._speed_sum_mps = np.zeros(n_envs)

    def start_rollout(self) -> None:
        self.truncated, self.terminated, self.episodes = [], [], []

    def record(self, step: int, dones: np.ndarray, infos: list[dict]) -> None:
        self._length += 1
        self._speed_sum_mps += [info.get(INFO_SPEED_MPS, 0.0) for info in infos]
        for env_idx in np.flatnonzero(dones):
            info = infos[env_idx]
            if info.get("TimeLimit.truncated", False):
                self.truncated.append((step, int(env_idx), info["terminal_observation"]))
            elif not info.get(INFO_SUCCESS, False):  # a goal reached ends without a price
                self.terminated.append((step, int(env_idx)))
            length = self._length[env_idx]
            self.episodes.append(
                {
                    "length": float(length),
                    "crashed": float(bool(info.get(INFO_CRASHED, False))),
                    "success": float(bool(info.get(INFO_SUCCESS, False))),
                    "mean_speed_mps": float(self._speed_sum_mps[env_idx] / max(length, 1)),
                }
            )
            self._length[env_idx], self._speed_sum_mps[env_idx] = 0, 0.0


@torch.inference_mode()
def _sample_actions(model: PPO, obs: np.ndarray) -> np.ndarray:
    """``mu(s) + sigma * eps`` for ``obs [n_envs, obs_dim]`` -> ``[n_envs, act_dim]`` (unclipped, as SB3 stores it)."""
    policy = model.policy
    latent = policy.mlp_extractor.forward_actor(policy.extract_features(torch.as_tensor(obs), policy.pi_features_extractor))
    mean = policy.action_net(latent)
    return (mean + policy.log_std.exp() * torch.randn_like(mean)).numpy()


def collect_rollout(model: PPO, env: VecEnv, n_steps: int, ledger: EpisodeLedger) -> None:
    """Fill ``model.rollout_buffer`` with ``n_steps x n_envs`` transitions of the current policy.

    Leaves rewards at 0, as ``buf.reset()`` made them (the discriminator relabels them); advances ``model._last_obs``,
    ``model._last_episode_starts`` and ``model.num_timesteps`` as SB3's ``collect_rollouts`` does.
    """
    buf = model.rollout_buffer
    assert buf.buffer_size == n_steps, "the rollout buffer was built for another rollout length"
    policy = model.policy
    policy.set_training_mode(False)
    buf.reset()
    ledger.start_rollout()
    low, high = model.action_space.low, model.action_space.high
    for step in range(n_steps):
        actions = _sample_actions(model, model._last_obs)
        new_obs, _, dones, infos = env.step(np.clip(actions, low, high))
        model.num_timesteps += env.num_envs
        ledger.record(step, dones, infos)
        buf.observations[step] = model._last_obs
        buf.actions[step] = actions
        buf.episode_starts[step] = model._last_episode_starts
        model._last_obs, model._last_episode_starts = new_obs, dones

    # V(s_t) and log pi(a_t | s_t) of the whole rollout in one pass (theta is unchanged).
    n = n_steps * env.num_envs
    with torch.no_grad():
        values, log_probs, _ = policy.evaluate_actions(
            obs_as_tensor(buf.observations.reshape(n, -1), model.device), torch.as_tensor(buf.actions.reshape(n, -1))
        )
    buf.values[:] = values.reshape(n_steps, env.num_envs).cpu().numpy()
    buf.log_probs[:] = log_probs.reshape(n_steps, env.num_envs).cpu().numpy()
    buf.pos, buf.full = n_steps, True
