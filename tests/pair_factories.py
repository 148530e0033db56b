"""Small constructed track tables with known actions, lane changes and stops."""

from __future__ import annotations

import numpy as np
import pandas as pd

from drive_drail.logs.base import TrackLog, finalize_tracks
from drive_drail.pairs import bicycle

LANE_WIDTH_M = 4.0


def simulate_track(accel_mps2, steer_rad, substeps, dt_s, x0=0.0, y0=0.0, heading0=0.0, speed0=25.0, length_m=5.0):
    """States ``[N * substeps + 1, 4]`` (every Euler step) under actions held for ``substeps`` steps."""
    a = np.repeat(np.asarray(accel_mps2, dtype=np.float64), substeps)
    d = np.repeat(np.asarray(steer_rad, dtype=np.float64), substeps)
    return bicycle.rollout(x0, y0, heading0, speed0, a, d, length_m, dt_s, 1)


def track_rows(states, track_id, dt_s, scene_id=0, length_m=5.0, lane_count=3, on_ramp=None, expert=True):
    """Track-table rows of one vehicle on straight lanes of LANE_WIDTH_M (lane 0 leftmost, centre y=0)."""
    x, y, h, v = states.T
    lane = np.clip(np.round(-y / LANE_WIDTH_M), 0, lane_count - 1).astype(int)
    n = len(x)
    return pd.DataFrame(
        {
            "scene_id": scene_id,
            "track_id": track_id,
            "frame": np.arange(n),
            "t_s": np.arange(n) * dt_s,
            "x_m": x,
            "y_m": y,
            "vx_mps": v * np.cos(h),
            "vy_mps": v * np.sin(h),
            "heading_rad": h,
            "length_m": length_m,
            "width_m": 2.0,
            "lane_index": lane,
            "lane_count": lane_count,
            "lane_offset_m": y + lane * LANE_WIDTH_M,
            "lane_heading_rad": 0.0,
            "on_ramp": np.zeros(n, bool) if on_ramp is None else on_ramp,
            "expert": expert,
        }
    )


def lane_change_actions(n_periods, period_s, start_period, direction=+1, steer_rad=0.01):
    """A smooth lane change: steer one way then back (direction +1 = left)."""
    steer = np.zeros(n_periods)
    k = int(round(1.0 / period_s))  # 1 s each way
    steer[start_period : start_period + k] = direction * steer_rad
    steer[start_period + k : start_period + 2 * k] = -direction * steer_rad
    return steer


def sim_log(frame_rate_hz=15.0, action_hz=5.0, seconds=12.0, seed=0) -> tuple[TrackLog, dict]:
    """Three vehicles; vehicle 0 changes lane left at t=3 s; vehicle 2 brakes to a stop."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / frame_rate_hz
    k = int(round(frame_rate_hz / action_hz))
    n = int(seconds * action_hz)
    period = 1.0 / action_hz
    accel0 = rng.uniform(-1, 1, n)
    steer0 = lane_change_actions(n, period, int(3.0 / period), +1, 0.02)
    s0 = simulate_track(accel0, steer0, k, dt, x0=0.0, y0=-LANE_WIDTH_M, speed0=25.0)
    s1 = simulate_track(rng.uniform(-0.5, 0.5, n), np.zeros(n), k, dt, x0=30.0, y0=0.0, speed0=27.0)
    accel2 = np.where(np.arange(n) * period < 6.0, -4.0, 0.0)
    s2 = simulate_track(accel2, np.zeros(n), k, dt, x0=-20.0, y0=-2 * LANE_WIDTH_M, speed0=20.0)
    s2[:, 3] = np.maximum(s2[:, 3], 0.0)  # (the model would reverse; a stopped car stays)
    # re-integrate positions consistently with the clamped speed
    for i in range(1, len(s2)):
        s2[i, 0] = s2[i - 1, 0] + s2[i - 1, 3] * dt
    df = pd.concat([track_rows(s0, 0, dt), track_rows(s1, 1, dt), track_rows(s2, 2, dt)])
    truth = {"accel0": accel0, "steer0": steer0, "states0": s0, "k": k}
    return TrackLog(finalize_tracks(df), "constructed", "simlog", frame_rate_hz, True), truth
