"""stop: come to a halt behind a stalled vehicle, within ``stopped_before_m`` of it, and hold."""

from __future__ import annotations

import numpy as np

from drive_drail.tasks.base import Measurements, safe


def goal_x_m(obstacle_rear_x_m: np.ndarray, ego_length_m: np.ndarray, criteria) -> np.ndarray:
    """``[B]`` the ego-centre x at which its front enters the stop zone: the route's end [m]."""
    return np.asarray(obstacle_rear_x_m, np.float64) - criteria.stopped_before_m - np.asarray(ego_length_m) / 2


def stopped_s(previous_s: np.ndarray, speed_mps: np.ndarray, dt_s: float, criteria) -> np.ndarray:
    """``[B]`` time below ``max_final_speed_mps`` after one policy step of ``dt_s``; reset when moving [s]."""
    stopped = np.abs(speed_mps) < criteria.max_final_speed_mps
    return np.where(stopped, previous_s + dt_s, 0.0)


def success(criteria, m: Measurements) -> np.ndarray:
    """``[B]`` bool: safe, the gap in ``(0, stopped_before_m]`` and stopped for ``hold_seconds``."""
    gap = np.asarray(m.gap_m, np.float64)
    held = np.asarray(m.stopped_s, np.float64) >= criteria.hold_seconds - 1e-9
    return safe(m) & (gap > 0.0) & (gap <= criteria.stopped_before_m) & held


def terminated(simulator: str, m: Measurements) -> np.ndarray:
    """``[B]`` bool: a collision or off-road; reaching the stop zone does not end it (the ego must hold)."""
    return ~safe(m)
