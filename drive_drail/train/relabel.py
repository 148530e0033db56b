"""Relabelling a rollout with the discriminator's reward (Algorithm 1, step 3), and what keeps it learnable.

Terminations are handled on purpose (METHOD.md pitfalls):

* a failure (crash, off-road) terminates into an ABSORBING state (DAC, Kostrikov et al. 2019).
  The discriminator sees absorbing pairs (flag column 1) among the agent data, never among the
  expert data, weighted ``gamma / (1 - gamma)`` each, their share of the agent's discounted
  occupancy (:func:`discriminator_batch`). The terminal step earns
  ``r(s, a) + gamma / (1 - gamma) * r(absorbing)``, the return of looping in that state forever
  (:func:`pay_absorbing`). So ending an episode is priced by the discriminator, not by the sign of
  the reward, and never cheaper than driving on: ``r(absorbing)`` is paid at most at the rollout's
  ``floor_quantile`` of step rewards. A termination at the goal (merge) ends the return there,
  without the absorbing term: expert episodes end that way too.
* rewards are divided by the running std of the discounted return (:func:`normalise`), so the
  critic's targets keep one scale while the discriminator sharpens;
* time-limit truncation is not termination: the truncated step is bootstrapped with
  ``gamma * V(s_final)`` (:func:`bootstrap_truncations`), after the normalisation, because V
  already lives on the normalised scale.

Arrays are ``[n_steps, n_envs]`` (SB3's rollout-buffer layout); a rollout's terminated and truncated
steps are ``(step, env)`` index pairs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from drive_drail import spec

ABSORBING_REWARD_SAMPLES = 1024
"""Draws averaged for the absorbing state's reward (a diffusion reward is a one-sample estimate)."""


def with_flag(obs: np.ndarray, flag: float) -> np.ndarray:
    """``[N, D]`` -> ``[N, D + 1]``: the absorbing-state flag column (0 = a real state, 1 = absorbing)."""
    return np.concatenate([obs, np.full((len(obs), 1), flag, dtype=np.float32)], axis=1)


ABSORBING_OBS = with_flag(np.zeros((1, spec.OBS_DIM), np.float32), 1.0)
"""``[1, OBS_DIM + 1]`` the absorbing state as the discriminator sees it."""
ABSORBING_ACT = np.zeros((1, spec.ACTION_DIM), np.float32)
"""``[1, ACTION_DIM]`` the action taken there (any fixed one)."""


def discriminator_batch(agent_obs: np.ndarray, agent_act: np.ndarray, n_terminated: int,
                        gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The agent side of the discriminator's BCE: the rollout's pairs plus one absorbing pair per
    failure, weighted ``gamma / (1 - gamma)``; ``(obs, act, weight or None)``."""
    if n_terminated == 0:
        return agent_obs, agent_act, None
    obs = np.concatenate([agent_obs, np.repeat(ABSORBING_OBS, n_terminated, axis=0)])
    act = np.concatenate([agent_act, np.repeat(ABSORBING_ACT, n_terminated, axis=0)])
    weight = np.ones(len(obs), np.float32)
    weight[-n_terminated:] = gamma / (1.0 - gamma)
    return obs, act, weight


def pay_absorbing(reward: np.ndarray, terminated: Sequence[tuple[int, int]], reward_fn: Callable, gamma: float,
                  floor_quantile: float) -> tuple[np.ndarray, dict[str, float]]:
    """Add ``gamma / (1 - gamma) * r(absorbing)`` to every failed step of ``reward [n_steps, n_envs]``.

    ``reward_fn(obs, act) -> [N]`` is the discriminator's reward, averaged here over
    :data:`ABSORBING_REWARD_SAMPLES` draws. Returns the new rewards and the logged
    ``charts/reward_absorbing`` (estimated) and ``charts/reward_absorbing_paid`` (after the floor).
    """
    r_abs = float(np.mean(reward_fn(np.repeat(ABSORBING_OBS, ABSORBING_REWARD_SAMPLES, 0),
                                    np.repeat(ABSORBING_ACT, ABSORBING_REWARD_SAMPLES, 0))))
    paid = min(r_abs, float(np.quantile(reward, floor_quantile)))  # ending never cheaper than driving on
    out = reward.copy()
    for step, env in terminated:
        out[step, env] += gamma / (1.0 - gamma) * paid
    return out, {"charts/reward_absorbing": r_abs, "charts/reward_absorbing_paid": paid}


def normalise(reward: np.ndarray, episode_starts: np.ndarray, ret_std, gamma: float) -> np.ndarray:
    """``reward / std`` of the running discounted return (``ret_std``: :class:`drive_drail.train.checkpoint.RunningStd`,
    updated in place with this rollout)."""
    ret_std.update(reward, episode_starts, gamma)
    return reward / ret_std.std


def bootstrap_truncations(reward: np.ndarray, truncated: Sequence[tuple[int, int, np.ndarray]],
                          value_fn: Callable[[np.ndarray], np.ndarray], gamma: float) -> np.ndarray:
    """Add ``gamma * V(s_final)`` to every time-limit step: the episode would have gone on.

    ``truncated``: ``(step, env, final_obs [OBS_DIM])``; ``value_fn(obs [N, OBS_DIM]) -> [N]``.
    """
    if not truncated:
        return reward
    values = value_fn(np.stack([o for _, _, o in truncated]).astype(np.float32))
    out = reward.copy()
    for (step, env, _), v in zip(truncated, values):
        out[step, env] += gamma * v
    return out
