"""Lanes a vehicle can only leave by merging, found from the lane centre lines of a map.

ScenarioNet's lane types never say "ramp", and its converters (and MetaDrive's exporter) give
road-level or no ``entry_lanes`` / ``exit_lanes``. What makes a merge is geometry, so these rules read
only the centre lines of a :class:`drive_drail.logs.scenarionet.LaneMap`:

- **ends**: a lane that no lane continues (no lane starts within :data:`JOIN_TOLERANCE_M` of its
  end, or in line with it a few metres on, running its way), while a lane that ran beside its last metres goes on past its end
  (found :data:`END_AHEAD_PROBES_M` ahead, on that lane or the lanes that continue it): an
  acceleration lane, or a lane drop. A lane at the edge of the map's crop has nothing going on
  beside it, and a lane whose continuation merely starts a little further on (sloppy junction
  geometry) continues itself, not the lane beside it, so neither counts;
- **joins**: of two or more lanes that flow into the start of one lane, all but the one that
  continues it most nearly straight (the smallest offset from its start line, measured
  :data:`JOIN_LOOKBACK_M` back) and that ran beside it there (at most :data:`BESIDE_MAX_M` off the
  line, within :data:`ALIGNED_MAX_ANGLE_DEG` of it there and twice as far back): a ramp joining at
  a shallow angle. The turns of a junction come in across the line;
- **feeds**: a lane whose one continuation is such a lane (the ramp road leading to an
  acceleration lane), up to :data:`MAX_RAMP_LENGTH_M` of ramp in all.

A vehicle that moves from such a lane to another is merging (:mod:`drive_drail.pairs.maneuvers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # LaneMap's module imports this one
    from drive_drail.logs.scenarionet import LaneMap

JOIN_TOLERANCE_M = 1.0
"""A lane continues another if it starts within this distance of the other's end [m]."""
GAP_AHEAD_MAX_M = 10.0
"""A lane that starts in line with another's end (within :data:`JOIN_TOLERANCE_M` of its line), up to
this far ahead, also continues it as far as "ends" is concerned: junction maps leave such gaps [m]."""
ALIGNED_MAX_ANGLE_DEG = 30.0
"""Lanes that continue, run beside or join one another point within this angle [deg]."""
BESIDE_MIN_M = 1.0
BESIDE_MAX_M = 5.0
"""A lane runs beside a point if its centre line passes this far from it: [min, max] [m]."""
END_BACK_PROBE_M = 5.0
"""The lane beside an ending lane is looked for this far before its end [m] ..."""
END_AHEAD_PROBES_M = (10.0, 30.0)
"""... and must still be there (or the lanes that continue it) this far past the end [m]."""
JOIN_LOOKBACK_M = 20.0
"""How far back along the joining lanes their offset from the joined lane's start line is measured [m]."""
JOIN_MIN_OFFSET_M = 1.0
"""A joining lane lies at least this much further off that line than the straight one [m]."""
MAX_RAMP_LENGTH_M = 400.0
"""Lanes that feed a ramp are marked back to this length of ramp [m]."""
CONTINUATION_HOPS = 3
"""How many continuations of the lane beside are followed to find it past the end."""


def _lane_geometry(lane_map: LaneMap) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per lane ``[L]``: first and last segment index, start and end heading [rad], length [m]."""
    n_lanes, seg_lane = len(lane_map.lane_ids), lane_map.seg_lane
    idx = np.arange(seg_lane.size)
    first = np.full(n_lanes, seg_lane.size)
    last = np.full(n_lanes, -1)
    np.minimum.at(first, seg_lane, idx)
    np.maximum.at(last, seg_lane, idx)
    d = lane_map.seg_end_m - lane_map.seg_start_m
    heading = np.arctan2(d[:, 1], d[:, 0])
    length = np.bincount(seg_lane, weights=np.hypot(d[:, 0], d[:, 1]), minlength=n_lanes)
    return first, last, heading[first], heading[last], length


def continuations(lane_map: LaneMap) -> np.ndarray:
    """``[L, L]`` bool: lane j starts where lane i ends and runs its way (``[i, j]``)."""
    first, last, start_h, end_h, _ = _lane_geometry(lane_map)
    start, end = lane_map.seg_start_m[first], lane_map.seg_end_m[last]
    gap = np.hypot(start[None, :, 0] - end[:, None, 0], start[None, :, 1] - end[:, None, 1])
    out = (gap < JOIN_TOLERANCE_M) & (np.cos(start_h[None, :] - end_h[:, None]) > np.cos(np.radians(ALIGNED_MAX_ANGLE_DEG)))
    np.fill_diagonal(out, False)
    return out


def _continued_across_a_gap(lane_map: LaneMap) -> np.ndarray:
    """``[L]`` bool: some lane starts in line with the lane's end, at most :data:`GAP_AHEAD_MAX_M` ahead."""
    first, last, start_h, end_h, _ = _lane_geometry(lane_map)
    start, end = lane_map.seg_start_m[first], lane_map.seg_end_m[last]
    rel = start[None, :, :] - end[:, None, :]  # [i, j]: start of j seen from the end of i
    along = rel[..., 0] * np.cos(end_h)[:, None] + rel[..., 1] * np.sin(end_h)[:, None]
    across = -rel[..., 0] * np.sin(end_h)[:, None] + rel[..., 1] * np.cos(end_h)[:, None]
    aligned = np.cos(start_h[None, :] - end_h[:, None]) > np.cos(np.radians(ALIGNED_MAX_ANGLE_DEG))
    gap = aligned & (np.abs(across) < JOIN_TOLERANCE_M) & (along > -JOIN_TOLERANCE_M) & (along < GAP_AHEAD_MAX_M)
    np.fill_diagonal(gap, False)
    return gap.any(axis=1)


def _lanes_beside(lane_map: LaneMap, xy_m: np.ndarray, heading_rad: float, exclude: int) -> set[int]:
    """Lanes other than ``exclude`` whose centre line passes within [BESIDE_MIN_M, BESIDE_MAX_M] of
    ``xy_m [2]`` running within the aligned angle of ``heading_rad``."""
    a, d = lane_map.seg_start_m, lane_map.seg_end_m - lane_map.seg_start_m
    rel = xy_m[None, :] - a
    t = np.clip(np.einsum("sk,sk->s", rel, d) / np.einsum("sk,sk->s", d, d), 0.0, 1.0)
    dist = np.hypot(*(rel - t[:, None] * d).T)
    aligned = np.cos(np.arctan2(d[:, 1], d[:, 0]) - heading_rad) > np.cos(np.radians(ALIGNED_MAX_ANGLE_DEG))
    hit = aligned & (dist >= BESIDE_MIN_M) & (dist <= BESIDE_MAX_M) & (lane_map.seg_lane != exclude)
    return set(lane_map.seg_lane[hit].tolist())


def _point_before_end(lane_map: LaneMap, lane: int, back_m: float) -> tuple[np.ndarray, float]:
    """The point ``back_m`` before the end of ``lane`` along its centre line, and the heading there
    (the lane's start if it is shorter)."""
    segs = np.flatnonzero(lane_map.seg_lane == lane)[::-1]
    a, b = lane_map.seg_start_m, lane_map.seg_end_m
    walked = 0.0
    for s in segs:
        d = b[s] - a[s]
        seg_len = float(np.hypot(*d))
        if walked + seg_len >= back_m:
            return b[s] - (back_m - walked) * d / seg_len, float(np.arctan2(d[1], d[0]))
        walked += seg_len
    d = b[segs[-1]] - a[segs[-1]]
    return a[segs[-1]].copy(), float(np.arctan2(d[1], d[0]))


def _reachable(cont: np.ndarray, lanes: set[int], hops: int) -> set[int]:
    """``lanes`` and the lanes that continue them, up to ``hops`` continuations."""
    out, frontier = set(lanes), set(lanes)
    for _ in range(hops):
        frontier = {int(j) for i in frontier for j in np.flatnonzero(cont[i])} - out
        out |= frontier
    return out


def ramp_lanes(lane_map: LaneMap) -> tuple[np.ndarray, dict[str, str]]:
    """``(on_ramp [L] bool, {lane id: "ends" | "joins <lane id>" | "feeds"})`` (see the module docstring)."""
    n_lanes = len(lane_map.lane_ids)
    first, last, start_h, end_h, length = _lane_geometry(lane_map)
    start, end = lane_map.seg_start_m[first], lane_map.seg_end_m[last]
    cont = continuations(lane_map)
    on_ramp = np.zeros(n_lanes, bool)
    reason: dict[int, str] = {}

    # ends: nothing continues the lane, and a lane beside it goes on
    for i in np.flatnonzero(~cont.any(axis=1) & ~_continued_across_a_gap(lane_map)):
        back_xy, back_h = _point_before_end(lane_map, int(i), END_BACK_PROBE_M)
        beside = _lanes_beside(lane_map, back_xy, back_h, int(i))
        if not beside:
            continue
        ahead_lanes = _reachable(cont, beside, CONTINUATION_HOPS)
        u = np.array([np.cos(end_h[i]), np.sin(end_h[i])])
        goes_on = all(ahead_lanes & _lanes_beside(lane_map, end[i] + ahead * u, end_h[i], int(i)) for ahead in END_AHEAD_PROBES_M)
        if goes_on:
            on_ramp[i], reason[i] = True, "ends"

    # joins: all but the straightest of the lanes that flow into one lane
    cos_aligned = np.cos(np.radians(ALIGNED_MAX_ANGLE_DEG))
    for c in np.flatnonzero(cont.sum(axis=0) >= 2):
        preds = np.flatnonzero(cont[:, c])
        u = np.array([np.cos(start_h[c]), np.sin(start_h[c])])
        offsets, aligned = [], []
        for p in preds:
            xy, h = _point_before_end(lane_map, int(p), JOIN_LOOKBACK_M)
            rel = xy - start[c]
            offsets.append(abs(u[0] * rel[1] - u[1] * rel[0]))
            _, h_far = _point_before_end(lane_map, int(p), 2 * JOIN_LOOKBACK_M)  # a turn's straight last metres are not enough
            aligned.append(np.cos(h - start_h[c]) > cos_aligned and np.cos(h_far - start_h[c]) > cos_aligned)
        straight = int(np.argmin(offsets))
        for k, p in enumerate(preds):
            beside = offsets[straight] + JOIN_MIN_OFFSET_M < offsets[k] <= BESIDE_MAX_M
            if k != straight and aligned[k] and beside and not on_ramp[p]:
                on_ramp[p], reason[p] = True, f"joins {lane_map.lane_ids[c]}"

    # feeds: lanes whose one continuation is a ramp, back to MAX_RAMP_LENGTH_M of ramp
    behind_m = np.where(on_ramp, length, np.inf)  # ramp length from each marked lane's start onwards
    changed = True
    while changed:
        changed = False
        for i in np.flatnonzero(~on_ramp & (cont.sum(axis=1) == 1)):
            j = int(np.flatnonzero(cont[i])[0])
            if on_ramp[j] and behind_m[j] + length[i] <= MAX_RAMP_LENGTH_M:
                on_ramp[i], reason[i], behind_m[i], changed = True, "feeds", behind_m[j] + length[i], True
    return on_ramp, {lane_map.lane_ids[i]: r for i, r in sorted(reason.items())}
