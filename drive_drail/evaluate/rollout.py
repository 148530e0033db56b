"""Closed-loop episodes: a policy drives the ego in a scenario; per-episode metrics come out."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import pandas as pd

from drive_drail.sim.base import (
    INFO_CRASHED,
    INFO_LANE_INDEX,
    INFO_OFFROAD,
    INFO_ROUTE_COMPLETION,
    INFO_SPEED_MPS,
    INFO_SUCCESS,
)

HARD_BRAKE_MPS2 = -4.0
"""A deceleration beyond this counts as a hard brake [m/s^2]."""


class Policy(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Spec observation ``[OBS_DIM]`` -> action in [-1, 1]^2."""
        ...


def run_episode(env, policy: Policy, seed: int) -> dict[str, float]:
    """Drive one episode with ``policy``; returns its metrics."""
    obs, info = env.reset(seed=seed)
    dt_s = 1.0 / float(getattr(env.unwrapped, "policy_frequency_hz", 5.0))
    speeds, lanes = [float(info.get(INFO_SPEED_MPS, 0.0))], [info.get(INFO_LANE_INDEX, -1)]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        speeds.append(float(info.get(INFO_SPEED_MPS, 0.0)))
        lanes.append(info.get(INFO_LANE_INDEX, -1))
        done = terminated or truncated
    v = np.asarray(speeds)
    accel = np.diff(v) / dt_s
    lane = np.asarray(lanes)
    return {
        "seed": seed,
        "success": float(bool(info.get(INFO_SUCCESS, False))),
        "collision": float(bool(info.get(INFO_CRASHED, False))),
        "offroad": float(bool(info.get(INFO_OFFROAD, False))),
        "route_completion": float(info.get(INFO_ROUTE_COMPLETION, np.nan)),
        "steps": len(v) - 1,
        "time_s": (len(v) - 1) * dt_s,
        "mean_speed_mps": float(v.mean()),
        "min_speed_mps": float(v.min()),
        "hard_brakes": int((accel < HARD_BRAKE_MPS2).sum()),
        "lane_changes": int(((lane[1:] != lane[:-1]) & (lane[1:] >= 0) & (lane[:-1] >= 0)).sum()),
    }


def evaluate(make_env: Callable[[], object], policy: Policy, seeds: list[int]) -> pd.DataFrame:
    """Run one episode per seed in a fresh-reset env; one row per episode."""
    env = make_env()
    try:
        return pd.DataFrame([run_episode(env, policy, s) for s in seeds])
    finally:
        env.close()
