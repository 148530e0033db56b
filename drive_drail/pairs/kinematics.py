"""Per-track kinematics from a track table: smoothing, speed, and heading.

The track table is sorted by (scene_id, track_id, frame) with consecutive frames, so
each track is one contiguous run of rows. Everything here is vectorised over rows
(cumulative sums, left-aligned ``[n_tracks, T]`` padding); the only loop is over time
steps in :func:`~drive_drail.pairs.bicycle.consistent_heading`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from drive_drail.pairs import bicycle


class Tracks(NamedTuple):
    """Row layout of a sorted track table: each row's track and position in it."""

    track: np.ndarray  # [N] track number 0..n_tracks-1
    start: np.ndarray  # [n_tracks] first row of each track
    length: np.ndarray  # [n_tracks] rows in each track
    pos: np.ndarray  # [N] index of the row within its track


def track_layout(df: pd.DataFrame) -> Tracks:
    key_change = np.ones(len(df), dtype=bool)
    if len(df):
        sid, tid = df["scene_id"].to_numpy(), df["track_id"].to_numpy()
        key_change[1:] = (sid[1:] != sid[:-1]) | (tid[1:] != tid[:-1])
    start = np.flatnonzero(key_change)
    length = np.diff(np.append(start, len(df)))
    track = np.repeat(np.arange(len(start)), length)
    pos = np.arange(len(df)) - start[track]
    return Tracks(track, start, length, pos)


def smooth(values: np.ndarray, tracks: Tracks, half_window: int, passes: int = 2) -> np.ndarray:
    """Centred moving average of ``half_window`` rows each side, within each track.

    Two passes give a triangular kernel. Near track ends the window shrinks
    symmetrically (never reaching into the neighbouring track), which keeps linear
    motion unbiased, so differentiated speeds stay right at the ends.
    """
    if half_window <= 0:
        return values.astype(np.float64, copy=True)
    out = values.astype(np.float64)
    to_end = tracks.length[tracks.track] - 1 - tracks.pos
    half = np.minimum(np.minimum(tracks.pos, to_end), half_window)
    idx = np.arange(len(out))
    lo, hi = idx - half, idx + half
    for _ in range(passes):
        csum = np.concatenate([[0.0], np.cumsum(out)])
        out = (csum[hi + 1] - csum[lo]) / (hi - lo + 1)
    return out


def to_padded(values: np.ndarray, tracks: Tracks, fill: float = np.nan) -> np.ndarray:
    """Rows ``[N]`` -> left-aligned ``[n_tracks, max_len]``."""
    out = np.full((len(tracks.start), int(tracks.length.max(initial=0))), fill)
    out[tracks.track, tracks.pos] = values
    return out


class Kinematics(NamedTuple):
    x_m: np.ndarray
    y_m: np.ndarray
    heading_rad: np.ndarray
    speed_mps: np.ndarray  # signed speed along the heading


def from_logged_heading(df: pd.DataFrame) -> Kinematics:
    """Sources that log headings (simulators, ScenarioNet): speed = velocity along heading."""
    h = df["heading_rad"].to_numpy(np.float64)
    speed = df["vx_mps"].to_numpy(np.float64) * np.cos(h) + df["vy_mps"].to_numpy(np.float64) * np.sin(h)
    return Kinematics(df["x_m"].to_numpy(np.float64), df["y_m"].to_numpy(np.float64), h, speed)


def estimate_from_positions(df: pd.DataFrame, tracks: Tracks, dt_s: float, smooth_s: float) -> Kinematics:
    """Sources without headings (highD, NGSIM): smooth, difference, then estimate headings.

    ``smooth_s`` is the full width of the triangular smoothing kernel [s] (0 = none).

    Speed and course come from forward differences of the smoothed positions, so that
    integrating the recovered actions reproduces the smoothed positions; headings follow
    the model's own kinematics (:func:`bicycle.consistent_heading`).
    """
    # Two box passes of half-width h make a triangle of full width 4h ~ smooth_s.
    half = int(round(smooth_s / dt_s / 4.0))
    x = smooth(df["x_m"].to_numpy(), tracks, half)
    y = smooth(df["y_m"].to_numpy(), tracks, half)
    n = len(x)
    is_last = tracks.pos == tracks.length[tracks.track] - 1
    nxt = np.minimum(np.arange(n) + 1, max(n - 1, 0))
    dx, dy = x[nxt] - x, y[nxt] - y
    # The last row of a track has no successor: reuse the previous step's motion.
    prev = np.maximum(np.arange(n) - 1, 0)
    dx = np.where(is_last, dx[prev], dx)
    dy = np.where(is_last, dy[prev], dy)
    single = tracks.length[tracks.track] == 1
    speed = np.where(single, np.hypot(df["vx_mps"].to_numpy(), df["vy_mps"].to_numpy()), np.hypot(dx, dy) / dt_s)
    course = np.where(
        single, np.arctan2(df["vy_mps"].to_numpy(), df["vx_mps"].to_numpy()), np.arctan2(dy, dx)
    )
    heading_padded = bicycle.consistent_heading(
        to_padded(course, tracks),
        to_padded(speed, tracks, 0.0),
        to_padded(df["length_m"].to_numpy(np.float64), tracks, 1.0),
        dt_s,
    )
    heading = heading_padded[tracks.track, tracks.pos]
    return Kinematics(x, y, heading, speed)
