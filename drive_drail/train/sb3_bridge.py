"""Every touch of stable-baselines3 beyond its public API, in one place.

The loop collects its own rollouts (:mod:`~drive_drail.train.rollout`: batched simulators and
rollout workers) and runs its own PPO update (:mod:`~drive_drail.train.ppo`), but keeps SB3's
``ActorCriticPolicy`` and ``RolloutBuffer`` (GAE, minibatches, save and load). SB3's public
``learn()`` would collect rollouts itself, so the loop drives those pieces directly, through the
private attributes below (stable-baselines3 2.x; ``tests/test_train.py`` exercises each of them).
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import obs_as_tensor


def start_learning(model: PPO, total_timesteps: int, resume: bool) -> None:
    """SB3's set-up of ``learn()`` without its loop: the logger and the first reset of the envs."""
    model._setup_learn(total_timesteps, reset_num_timesteps=not resume)


def load_rollout(model: PPO, obs: np.ndarray, actions: np.ndarray, episode_starts: np.ndarray,
                 last_obs: np.ndarray, last_episode_starts: np.ndarray) -> None:
    """Put a collected rollout (``[n_steps, n_envs, ...]``) into ``model.rollout_buffer`` with rewards 0
    (the discriminator relabels them), and advance the model as SB3's ``collect_rollouts`` does:
    the last observation and episode starts, and ``num_timesteps``."""
    buf = model.rollout_buffer
    buf.reset()
    buf.observations[:] = obs.reshape(buf.observations.shape)
    buf.actions[:] = actions.reshape(buf.actions.shape)
    buf.episode_starts[:] = episode_starts
    model._last_obs, model._last_episode_starts = last_obs, last_episode_starts
    model.num_timesteps += buf.buffer_size * buf.n_envs


def mark_full(model: PPO, values: np.ndarray, log_probs: np.ndarray) -> None:
    """Store ``V(s_t)`` and ``log pi(a_t | s_t)`` (``[n_steps, n_envs]``) and mark the buffer full, as its
    ``add()`` would have after ``n_steps`` calls."""
    buf = model.rollout_buffer
    buf.values[:] = values
    buf.log_probs[:] = log_probs
    buf.pos, buf.full = buf.buffer_size, True


def compute_returns(model: PPO, reward: np.ndarray) -> None:
    """Set the relabelled rewards ``[n_steps, n_envs]`` and compute GAE returns and advantages,
    bootstrapped from the value of the observation after the rollout."""
    buf = model.rollout_buffer
    buf.rewards[:] = reward
    with torch.no_grad():
        last_values = model.policy.predict_values(obs_as_tensor(model._last_obs, model.device))
    buf.compute_returns_and_advantage(last_values=last_values, dones=model._last_episode_starts)
