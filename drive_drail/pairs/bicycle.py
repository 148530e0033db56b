"""The kinematic bicycle model of highway-env, forward and inverted.

State ``(x_m, y_m, heading_rad, speed_mps)``, action ``(accel_mps2, steer_rad)``, with
the centre of mass half-way between the axles (``lr = lf = length_m / 2``). One explicit
Euler step of length ``dt_s`` (exactly highway-env's ``Vehicle.step``)::

    beta      = arctan(tan(steer) / 2)                  # slip angle at the centre
    x        += speed * cos(heading + beta) * dt
    y        += speed * sin(heading + beta) * dt
    heading  += speed * sin(beta) / (length / 2) * dt
    speed    += accel * dt

The model is symmetric under mirroring (y, heading, steer -> -y, -heading, -steer),
so it holds unchanged in the spec frame. All functions broadcast over leading dims.
"""

from __future__ import annotations

import numpy as np


def slip_angle(steer_rad: np.ndarray) -> np.ndarray:
    """beta [rad] for a front-wheel angle, ``arctan(tan(steer) / 2)``."""
    return np.arctan(0.5 * np.tan(steer_rad))


def steer_from_slip(beta_rad: np.ndarray) -> np.ndarray:
    """Inverse of :func:`slip_angle`: ``steer = arctan(2 tan(beta))``."""
    return np.arctan(2.0 * np.tan(beta_rad))


def step(
    x_m: np.ndarray,
    y_m: np.ndarray,
    heading_rad: np.ndarray,
    speed_mps: np.ndarray,
    accel_mps2: np.ndarray,
    steer_rad: np.ndarray,
    length_m: np.ndarray,
    dt_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One Euler step; returns the next ``(x_m, y_m, heading_rad, speed_mps)``."""
    beta = slip_angle(steer_rad)
    x_next = x_m + speed_mps * np.cos(heading_rad + beta) * dt_s
    y_next = y_m + speed_mps * np.sin(heading_rad + beta) * dt_s
    heading_next = heading_rad + speed_mps * np.sin(beta) / (length_m / 2.0) * dt_s
    speed_next = speed_mps + accel_mps2 * dt_s
    return x_next, y_next, heading_next, speed_next


def rollout(
    x_m: float,
    y_m: float,
    heading_rad: float,
    speed_mps: float,
    accel_mps2: np.ndarray,
    steer_rad: np.ndarray,
    length_m: float,
    dt_s: float,
    substeps: int = 1,
) -> np.ndarray:
    """Integrate actions ``[N]`` held for ``substeps`` Euler steps each.

    Returns states ``[N + 1, 4]`` = ``(x_m, y_m, heading_rad, speed_mps)`` at the action
    boundaries, starting with the initial state.
    """
    out = np.empty((len(accel_mps2) + 1, 4))
    state = (float(x_m), float(y_m), float(heading_rad), float(speed_mps))
    out[0] = state
    for i, (a, d) in enumerate(zip(accel_mps2, steer_rad)):
        for _ in range(substeps):
            state = step(*state, a, d, length_m, dt_s)
        out[i + 1] = state
    return out


def invert(
    heading_rad: np.ndarray,
    speed_mps: np.ndarray,
    length_m: np.ndarray,
    dt_s: float,
    substeps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Recover the action held over ``substeps`` Euler steps between two states.

    Args:
        heading_rad, speed_mps: ``[..., 2]`` states at the start and the end of the
            action period (``substeps`` steps of ``dt_s`` apart).
        length_m: ``[...]`` vehicle length.
    Returns:
        ``(accel_mps2, steer_rad)``, each ``[...]``. Exact for data made by :func:`step`:
        speed grows linearly, so ``accel = dv / (k dt)``; the heading change is
        ``sin(beta) / (L/2) * dt * sum_i speed_i`` with ``speed_i = v0 + i accel dt``.
        Where the vehicle barely moves the steering is undefined and set to 0.
    """
    k = substeps
    v0, v1 = speed_mps[..., 0], speed_mps[..., 1]
    accel = (v1 - v0) / (k * dt_s)
    speed_sum = k * v0 + accel * dt_s * k * (k - 1) / 2.0  # sum of speeds over the k steps
    dheading = np.pi - np.mod(np.pi - (heading_rad[..., 1] - heading_rad[..., 0]), 2 * np.pi)
    moving = np.abs(speed_sum * dt_s) > 1e-3  # > 1 mm travelled in the period
    sin_beta = np.divide(
        dheading * (length_m / 2.0), speed_sum * dt_s, out=np.zeros_like(dheading), where=moving
    )
    steer = steer_from_slip(np.arcsin(np.clip(sin_beta, -1.0, 1.0)))
    return accel, steer


def consistent_heading(
    course_rad: np.ndarray, speed_mps: np.ndarray, length_m: np.ndarray, dt_s: float
) -> np.ndarray:
    """Estimate headings ``[n_tracks, T]`` from the course (motion direction) of each step.

    In the model the motion direction is ``heading + beta`` and the heading turns by
    ``speed sin(beta) / (L/2) dt``, so given the course ``c_t`` the heading follows
    ``h_{t+1} = h_t + g_t sin(c_t - h_t)`` with ``g_t = 2 speed dt / L``: the heading
    the model itself would have, which makes inverse dynamics reproduce the positions.
    The gain is capped at 1 (a critically damped update), which only binds for very
    short, fast vehicles (e.g. motorcycles at 10 Hz). Tracks are left-aligned rows;
    NaN padding at a row's end stays NaN. Loops over time steps, vectorised over tracks.
    """
    gain = np.minimum(2.0 * np.abs(speed_mps) * dt_s / length_m, 1.0)
    heading = np.empty_like(course_rad)
    heading[:, 0] = course_rad[:, 0]
    for t in range(1, course_rad.shape[1]):
        d = np.pi - np.mod(np.pi - (course_rad[:, t - 1] - heading[:, t - 1]), 2 * np.pi)
        heading[:, t] = heading[:, t - 1] + gain[:, t - 1] * np.sin(d)
    return np.where(np.isnan(course_rad), np.nan, heading)
