"""Closed-loop episodes: a policy drives the ego in a scenario; per-episode metrics come out.

:func:`run_trace` plays one episode and records its :class:`EpisodeTrace` (speed, lane,
ego position, time-to-collision from the scene at every policy step);
:func:`run_episode` turns it into the metrics of :mod:`drive_drail.evaluate.metrics`.
A policy is anything with ``act(obs)``; one that also has ``start_episode(env, seed)``
(the scripted expert, the seeded random baseline) is told about each new episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from drive_drail import spec
from drive_drail.evaluate.metrics import HARD_BRAKE_MPS2, EpisodeTrace, episode_metrics, ttc_ahead_s
from drive_drail.sim.base import INFO_LANE_INDEX, INFO_ROUTE_COMPLETION, INFO_SPEED_MPS

__all__ = ["HARD_BRAKE_MPS2", "Policy", "evaluate", "run_episode", "run_trace"]


class Policy(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Spec observation ``[OBS_DIM]`` -> action in [-1, 1]^2."""
        ...


def policy_dt_s(env) -> float:
    """The policy period [s] of an adapter."""
    dt = getattr(env, "policy_dt_s", None)
    if dt is None:
        dt = 1.0 / float(getattr(env.unwrapped, "policy_frequency_hz", 5.0))
    return float(dt)


def run_trace(env, policy: Policy, seed: int, on_step: Callable[[object], None] | None = None) -> EpisodeTrace:
    """Drive one episode from episode seed ``seed`` and record it at the policy rate.

    ``on_step(env)`` is called after the reset and after every step (e.g. to render).
    """
    obs, info = env.reset(seed=seed)
    start = getattr(policy, "start_episode", None)
    if start is not None:
        start(env, seed)
    speed, lane, xs, ys, ttc, completion, offset, actions = [], [], [], [], [], [], [], []

    def record(info: dict) -> None:
        scene = env.scene()
        speed.append(float(info.get(INFO_SPEED_MPS, np.hypot(scene.ego.vx_mps, scene.ego.vy_mps))))
        lane.append(int(info.get(INFO_LANE_INDEX, scene.ego.lane)))
        xs.append(scene.ego.x_m)
        ys.append(scene.ego.y_m)
        ttc.append(ttc_ahead_s(scene))
        completion.append(float(info.get(INFO_ROUTE_COMPLETION, np.nan)))
        offset.append(float(scene.lane.offset_m))
        if on_step is not None:
            on_step(env)

    record(info)
    done = False
    while not done:
        action = policy.act(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        record(info)
        done = terminated or truncated
    return EpisodeTrace(
        dt_s=policy_dt_s(env),
        speed_mps=np.asarray(speed),
        lane_index=np.asarray(lane),
        x_m=np.asarray(xs),
        y_m=np.asarray(ys),
        ttc_s=np.asarray(ttc),
        route_completion=np.asarray(completion),
        final_info=info,
        lane_offset_m=np.asarray(offset),
        action_physical=spec.action_to_physical(np.asarray(actions, dtype=np.float64).reshape(-1, 2)),  # clipped as the adapter does
    )


def run_episode(
    env, policy: Policy, seed: int, goal_completion: float = 1.0, ref_xy_m: np.ndarray | None = None
) -> dict[str, float]:
    """Drive one episode with ``policy``; returns ``{"seed": seed, **metrics}``.

    ``ref_xy_m`` ``[T_ref, 2]``: a reference ego trajectory from the same seed for ADE/FDE.
    """
    trace = run_trace(env, policy, seed)
    return {"seed": seed, **episode_metrics(trace, goal_completion=goal_completion, ref_xy_m=ref_xy_m)}


def evaluate(make_env: Callable[[], object], policy: Policy, seeds: list[int]) -> pd.DataFrame:
    """Run one episode per seed in a fresh-reset env; one row per episode (no ADE/FDE reference).

    The multi-policy, multi-scenario, parallel evaluation is :func:`drive_drail.evaluate.runner.evaluate`.
    """
    env = make_env()
    try:
        return pd.DataFrame([run_episode(env, policy, s) for s in seeds])
    finally:
        env.close()
