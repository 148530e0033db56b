"""Manoeuvre segments and discrete meta-action labels, from a track table.

Row-wise and vectorised (cumulative min/max over event indices, no loop per row).

* lane change: rows within ``lane_change_before_s`` before to ``lane_change_after_s``
  after a lane-index change of the same track that crosses a lane boundary: the offset from
  the lane centre jumps across the boundary (from the old lane's left edge to the new lane's
  right edge, for a change to the left) by more than ``min_crossing_jump_m``. A change of
  index without that jump is a hand-off between two pieces of the same lane (Waymo and
  nuPlan maps cut lanes into pieces whose neighbour lists differ), not a lane change;
* merge: such a window whose change leads from an on-ramp lane into a main lane;
* stop: rows where speed < ``stop_speed_mps``, or which reach such a row within
  ``stop_lookahead_s`` (the approach).

Meta-action of an action period (highway-env's DiscreteMetaAction semantics):
LANE_LEFT / LANE_RIGHT if a lane change happens within ``lane_decision_lookahead_s``,
else FASTER / SLOWER if ``|accel| > meta_accel_threshold_mps2``, else IDLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from drive_drail.pairs.kinematics import Tracks
from drive_drail.spec import MetaAction


@dataclass(frozen=True)
class ManeuverConfig:
    lane_change_before_s: float = 3.0
    """Seconds before the lane-boundary crossing that belong to the lane change."""
    lane_change_after_s: float = 2.0
    """Seconds after the crossing that still belong to it."""
    lane_decision_lookahead_s: float = 1.0
    """An action period whose start is at most this long before a crossing is labelled LANE_LEFT/RIGHT."""
    stop_speed_mps: float = 0.5
    """Below this speed the vehicle counts as stopped."""
    stop_lookahead_s: float = 6.0
    """Rows at most this long before a stop belong to the stop manoeuvre (the approach)."""
    meta_accel_threshold_mps2: float = 0.5
    """|accel| above this makes an action period FASTER or SLOWER."""
    min_crossing_jump_m: float = 1.5
    """A lane-index change is a boundary crossing only if the lane offset jumps by more than this in
    the direction of the change (about a lane width, >= 2.5 m, on a real crossing; ~0 on a hand-off) [m]."""


class ManeuverLabels(NamedTuple):
    is_lane_change: np.ndarray  # [N] bool
    is_merge: np.ndarray  # [N] bool
    is_stop: np.ndarray  # [N] bool
    lane_decision: np.ndarray  # [N] int8: -1 left, +1 right, 0 none (within the decision lookahead)


def _next_and_prev_event(event: np.ndarray, tracks: Tracks) -> tuple[np.ndarray, np.ndarray]:
    """Row index of the next event at or after each row, and of the last one at or before it (-1 if none)."""
    n = len(event)
    idx = np.arange(n)
    first = tracks.start[tracks.track]
    last = first + tracks.length[tracks.track] - 1
    nxt = np.minimum.accumulate(np.where(event, idx, n)[::-1])[::-1] if n else idx
    prv = np.maximum.accumulate(np.where(event, idx, -1)) if n else idx
    nxt = np.where(nxt <= last, nxt, -1)
    prv = np.where(prv >= first, prv, -1)
    return nxt, prv


def label_rows(
    lane_index: np.ndarray,
    lane_offset_m: np.ndarray,
    on_ramp: np.ndarray,
    speed_mps: np.ndarray,
    lateral_speed_mps: np.ndarray,
    tracks: Tracks,
    dt_s: float,
    config: ManeuverConfig = ManeuverConfig(),
) -> ManeuverLabels:
    """Label every row. ``lane_offset_m``: from the lane centre, + = left; ``lateral_speed_mps``: the
    velocity across the lane, + = left. Arrays ``[N]``, rows grouped by track in time order."""
    n = len(lane_index)
    idx = np.arange(n)
    prev_row = np.maximum(idx - 1, 0)
    continues = tracks.pos > 0
    known = (lane_index >= 0) & (lane_index[prev_row] >= 0)
    lane_step = np.sign(lane_index - lane_index[prev_row])
    # Lane indices grow to the right: crossing to the left (step -1) leaves the old lane's
    # left edge (offset ~ +w/2) for the new lane's right edge (~ -w/2), so step * jump ~ +w.
    crossed = lane_step * (lane_offset_m - lane_offset_m[prev_row]) > config.min_crossing_jump_m
    changed = ((lane_index != lane_index[prev_row]) & crossed) | (on_ramp != on_ramp[prev_row])
    event = continues & known & changed
    # Direction: crossing a ramp boundary compares lanes of different edges, so fall back to
    # the lateral speed's sign there.
    direction = np.where(on_ramp != on_ramp[prev_row], -np.sign(lateral_speed_mps), lane_step).astype(np.int8)
    merge_event = event & on_ramp[prev_row] & ~on_ramp

    nxt, prv = _next_and_prev_event(event, tracks)
    to_next_s = np.where(nxt >= 0, (nxt - idx) * dt_s, np.inf)
    since_prev_s = np.where(prv >= 0, (idx - prv) * dt_s, np.inf)
    before = to_next_s <= config.lane_change_before_s
    after = since_prev_s <= config.lane_change_after_s
    in_window = before | after
    event_of_row = np.where(before, nxt, np.where(after, prv, 0))
    is_merge = in_window & merge_event[event_of_row]
    is_lane_change = in_window & ~is_merge

    decision = to_next_s <= config.lane_decision_lookahead_s
    lane_decision = np.where(decision, direction[np.where(nxt >= 0, nxt, 0)], 0).astype(np.int8)

    stopped = np.abs(speed_mps) < config.stop_speed_mps
    nstop, _ = _next_and_prev_event(stopped, tracks)
    to_stop_s = np.where(nstop >= 0, (nstop - idx) * dt_s, np.inf)
    is_stop = to_stop_s <= config.stop_lookahead_s
    return ManeuverLabels(is_lane_change, is_merge, is_stop, lane_decision)


def meta_actions(lane_decision: np.ndarray, accel_mps2: np.ndarray, config: ManeuverConfig = ManeuverConfig()) -> np.ndarray:
    """Meta-action label per action period, int8 values of :class:`MetaAction`."""
    label = np.full(len(accel_mps2), MetaAction.IDLE, dtype=np.int8)
    label[accel_mps2 > config.meta_accel_threshold_mps2] = MetaAction.FASTER
    label[accel_mps2 < -config.meta_accel_threshold_mps2] = MetaAction.SLOWER
    label[lane_decision < 0] = MetaAction.LANE_LEFT
    label[lane_decision > 0] = MetaAction.LANE_RIGHT
    return label


def primary_maneuver(labels: ManeuverLabels) -> np.ndarray:
    """One name per row, by priority merge > lane_change > stop > keep_lane."""
    return np.select(
        [labels.is_merge, labels.is_lane_change, labels.is_stop],
        ["merge", "lane_change", "stop"],
        default="keep_lane",
    )
