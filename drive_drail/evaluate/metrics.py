"""Per-episode closed-loop metrics, computed from one episode's trace.

Everything here is pure NumPy on arrays recorded at the policy rate (one entry per
policy step, the reset state included), so the same numbers come out whichever
process, backend or simulator produced the trace.

Definitions (units in the names):

- ``success``, ``collision``, ``offroad``: the adapter's final ``info`` flags (0/1).
- ``route_completion``: final fraction of the route, in [0, 1].
- ``time_to_goal_s``: first time the route completion reached the scenario's goal
  fraction; NaN if never.
- ``mean_speed_mps``, ``min_speed_mps``: over every recorded step.
- ``mean_abs_jerk_mps3``, ``max_abs_jerk_mps3``: longitudinal jerk of the ego's speed,
  ``j_t = (a_{t+1} - a_t) / dt`` with ``a_t = (v_{t+1} - v_t) / dt``; NaN under 3 speeds.
- ``lane_changes``: completed lane changes (the adapter's count when it reports one).
- ``min_ttc_s``: minimum time-to-collision to the vehicle ahead (see :func:`ttc_ahead_s`),
  capped at :data:`TTC_HORIZON_S` (also when nothing was ever closing in).
- ``hard_brakes``: braking events, i.e. runs of consecutive steps with
  ``a_t < HARD_BRAKE_MPS2`` (one long brake counts once).
- ``ade_m``, ``fde_m``: average / final displacement of the ego position against a
  reference trajectory from the same start (the scripted expert from the same seed),
  over the reference's steps; an episode that ended earlier stays at its last position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drive_drail import spec
from drive_drail.sim.base import INFO_CRASHED, INFO_OFFROAD, INFO_SUCCESS

HARD_BRAKE_MPS2 = -4.0
"""A deceleration beyond this counts as hard braking [m/s^2]."""

TTC_HORIZON_S = 10.0
"""Time-to-collision is capped here [s]: beyond it there is no conflict, and a finite cap
keeps means and confidence intervals finite."""

METRIC_COLUMNS: tuple[str, ...] = (
    "success",
    "collision",
    "offroad",
    "route_completion",
    "time_to_goal_s",
    "steps",
    "time_s",
    "mean_speed_mps",
    "min_speed_mps",
    "mean_abs_jerk_mps3",
    "max_abs_jerk_mps3",
    "lane_changes",
    "min_ttc_s",
    "hard_brakes",
    "ade_m",
    "fde_m",
)
"""Per-episode metric columns of the results table, in order."""

RATE_METRICS: tuple[str, ...] = ("success", "collision", "offroad")
"""The 0/1 outcomes among them: aggregated as binomial rates with Wilson score intervals."""

HIGHER_IS_BETTER: dict[str, bool | None] = {
    "success": True,
    "collision": False,
    "offroad": False,
    "route_completion": True,
    "time_to_goal_s": False,
    "steps": None,
    "time_s": None,
    "mean_speed_mps": None,
    "min_speed_mps": None,
    "mean_abs_jerk_mps3": False,
    "max_abs_jerk_mps3": False,
    "lane_changes": None,
    "min_ttc_s": True,
    "hard_brakes": False,
    "ade_m": False,
    "fde_m": False,
}
"""Which direction is better for each metric (None: no ranking, e.g. speed is task-dependent)."""


@dataclass
class EpisodeTrace:
    """One closed-loop episode at the policy rate: ``T`` steps give ``T + 1`` samples.

    Every array has shape ``[T + 1]`` (index 0 is the state after ``reset``).
    """

    dt_s: float
    """Policy period [s]."""
    speed_mps: np.ndarray
    """Ego speed [m/s]."""
    lane_index: np.ndarray
    """Ego lane index (0 = leftmost, -1 unknown)."""
    x_m: np.ndarray
    """Ego position along the road, spec frame [m]."""
    y_m: np.ndarray
    """Ego position across the road, + = left [m]."""
    ttc_s: np.ndarray
    """Time-to-collision to the vehicle ahead at each step [s] (inf: none closing in)."""
    route_completion: np.ndarray
    """Route completion at each step, in [0, 1]."""
    final_info: dict
    """The adapter's ``info`` of the last step."""
    lane_offset_m: np.ndarray | None = None
    """Signed offset of the ego centre from its lane centre, + = left [m] (``[T + 1]``; None: not recorded)."""
    action_physical: np.ndarray | None = None
    """The policy's action at each step, ``[T, 2]``: accel [m/s^2], steer [rad] (None: not recorded)."""

    @property
    def steps(self) -> int:
        return len(self.speed_mps) - 1


def ttc_ahead_s(scene: spec.Scene) -> float:
    """Time-to-collision [s] from the ego to the nearest vehicle ahead in its corridor.

    Ego frame: relative positions and velocities are rotated by the ego heading. A
    vehicle is *ahead in the ego lane* when its centre is in front (``dx > 0``) and the
    two bodies overlap laterally (``|dy| < (w_ego + w_other) / 2``), which follows the
    ego's own path during a lane change. ``gap = dx - (l_ego + l_other) / 2`` (bumper to
    bumper) and ``ttc = gap / closing_speed`` with ``closing_speed = -dvx > 0``; 0 when the
    bodies already touch, ``inf`` when the leader is not being closed in on.
    """
    others = scene.others
    if not others:
        return float("inf")
    ego = scene.ego
    x = np.array([[v.x_m, v.y_m, v.vx_mps, v.vy_mps, v.length_m, v.width_m] for v in others])
    c, s = np.cos(ego.heading_rad), np.sin(ego.heading_rad)
    rx, ry = x[:, 0] - ego.x_m, x[:, 1] - ego.y_m
    rvx, rvy = x[:, 2] - ego.vx_mps, x[:, 3] - ego.vy_mps
    dx, dy = rx * c + ry * s, -rx * s + ry * c
    dvx = rvx * c + rvy * s
    ahead = (dx > 0.0) & (np.abs(dy) < 0.5 * (ego.width_m + x[:, 5]))
    if not ahead.any():
        return float("inf")
    gap_m = dx - 0.5 * (ego.length_m + x[:, 4])
    closing_mps = -dvx
    ttc = np.where(gap_m <= 0.0, 0.0, np.where(closing_mps > 1e-6, gap_m / np.maximum(closing_mps, 1e-6), np.inf))
    return float(ttc[ahead].min())


def displacement_errors(xy_m: np.ndarray, ref_xy_m: np.ndarray) -> tuple[float, float]:
    """ADE and FDE [m] of a trajectory ``[T, 2]`` against a reference ``[T_ref, 2]`` from the same start.

    Compared over the reference's ``T_ref`` samples. An episode that ended earlier (a
    crash, leaving the road) stays where it ended, so ending early is not rewarded with
    a short, easy horizon; samples past the reference's end are not compared.
    """
    xy, ref = np.asarray(xy_m, dtype=np.float64), np.asarray(ref_xy_m, dtype=np.float64)
    if len(xy) == 0 or len(ref) == 0:
        return float("nan"), float("nan")
    if len(xy) < len(ref):
        xy = np.concatenate([xy, np.repeat(xy[-1:], len(ref) - len(xy), axis=0)])
    err = np.linalg.norm(xy[: len(ref)] - ref, axis=1)
    return float(err.mean()), float(err[-1])


def count_events(mask: np.ndarray) -> int:
    """Number of runs of True in a boolean array (rising edges)."""
    m = np.asarray(mask, dtype=bool)
    if m.size == 0:
        return 0
    return int(m[0]) + int((m[1:] & ~m[:-1]).sum())


def episode_metrics(trace: EpisodeTrace, goal_completion: float = 1.0, ref_xy_m: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of one episode (keys: :data:`METRIC_COLUMNS`).

    Args:
        trace: the episode at the policy rate.
        goal_completion: route fraction that counts as reaching the goal (the
            scenario's ``success.min_route_completion``).
        ref_xy_m: reference ego positions ``[T_ref, 2]`` from the same start (the
            scripted expert's), or None: ADE/FDE are NaN.
    """
    info, dt = trace.final_info, trace.dt_s
    v = np.asarray(trace.speed_mps, dtype=np.float64)
    accel_mps2 = np.diff(v) / dt  # [T]
    jerk_mps3 = np.abs(np.diff(accel_mps2) / dt)  # [T - 1]

    completion = np.asarray(trace.route_completion, dtype=np.float64)
    reached = np.flatnonzero(completion >= goal_completion - 1e-9)
    time_to_goal_s = float(reached[0] * dt) if reached.size else float("nan")

    lane = np.asarray(trace.lane_index)
    if "lane_changes" in info:
        lane_changes = int(info["lane_changes"])
    else:
        lane_changes = int(((lane[1:] != lane[:-1]) & (lane[1:] >= 0) & (lane[:-1] >= 0)).sum())

    if ref_xy_m is not None:
        ade_m, fde_m = displacement_errors(np.stack([trace.x_m, trace.y_m], axis=1), ref_xy_m)
    else:
        ade_m = fde_m = float("nan")

    return {
        "success": float(bool(info.get(INFO_SUCCESS, False))),
        "collision": float(bool(info.get(INFO_CRASHED, False))),
        "offroad": float(bool(info.get(INFO_OFFROAD, False))),
        "route_completion": float(completion[-1]) if completion.size else float("nan"),
        "time_to_goal_s": time_to_goal_s,
        "steps": trace.steps,
        "time_s": trace.steps * dt,
        "mean_speed_mps": float(v.mean()),
        "min_speed_mps": float(v.min()),
        "mean_abs_jerk_mps3": float(jerk_mps3.mean()) if jerk_mps3.size else float("nan"),
        "max_abs_jerk_mps3": float(jerk_mps3.max()) if jerk_mps3.size else float("nan"),
        "lane_changes": lane_changes,
        "min_ttc_s": float(min(np.min(trace.ttc_s), TTC_HORIZON_S)) if len(trace.ttc_s) else TTC_HORIZON_S,
        "hard_brakes": count_events(accel_mps2 < HARD_BRAKE_MPS2),
        "ade_m": ade_m,
        "fde_m": fde_m,
    }
