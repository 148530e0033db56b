"""Collisions (oriented-box overlap by the separating axis theorem) and off-road, vectorised.

highway-env's ``Road.step`` checks, after all vehicles moved, every pair (vehicle i,
later vehicle j) and every (vehicle, road object) pair where at least one side has
``check_collisions`` (``RoadObject.handle_collisions``):

- a sphere pre-check: skip if ``|p_j - p_i| > (diag_i + diag_j) / 2 + v_i dt``;
- ``utils.are_polygons_intersecting``: project both rectangles on the 8 edge normals;
  *intersecting* if every interval pair overlaps; *will intersect* if they still overlap
  with box i's interval swept by the relative displacement ``(vel_i - vel_j) dt``; the
  translation is the normal of least |overlap| (first on ties), pointing from j to i;
- will intersect: i gets ``impact = t / 2`` and j ``-t / 2`` (a vehicle against an
  obstacle gets the whole t), applied at the next step, which marks it crashed;
  intersecting: both are crashed now.

Impacts overwrite each other in highway-env's loop order, so when a vehicle collides with
several objects in one step the last pair in that order wins; :func:`handle_collisions`
keeps the same winner. Only candidate pairs that pass the pre-check go through SAT.
"""

from __future__ import annotations

import torch

from drive_drail.sim.batched.road import LaneTable
from drive_drail.sim.batched.vehicles import VehicleState


def _corners(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, length: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``RoadObject.polygon()`` without the closing point: ``[K, 4, 2]``."""
    px = torch.stack([-length / 2, -length / 2, length / 2, length / 2], dim=1)
    py = torch.stack([-width / 2, width / 2, width / 2, -width / 2], dim=1)
    c, s = torch.cos(h)[:, None], torch.sin(h)[:, None]
    return torch.stack([c * px - s * py + x[:, None], s * px + c * py + y[:, None]], dim=2)


def are_polygons_intersecting(a: torch.Tensor, b: torch.Tensor, disp_a: torch.Tensor, disp_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``utils.are_polygons_intersecting`` for K rectangle pairs.

    ``a``, ``b``: corners ``[K, 4, 2]``; ``disp_*``: displacements ``[K, 2]``.
    Returns intersecting ``[K]``, will_intersect ``[K]``, translation ``[K, 2]`` (valid where will_intersect).
    """
    edges_from = torch.cat([a, b], dim=1)  # [K, 8, 2]
    edges_to = torch.cat([a.roll(-1, dims=1), b.roll(-1, dims=1)], dim=1)
    normal = torch.stack([-edges_to[..., 1] + edges_from[..., 1], edges_to[..., 0] - edges_from[..., 0]], dim=2)
    normal = normal / torch.sqrt(normal[..., 0] ** 2 + normal[..., 1] ** 2)[..., None]
    proj_a = a[:, None, :, 0] * normal[:, :, None, 0] + a[:, None, :, 1] * normal[:, :, None, 1]  # [K, 8, 4]
    proj_b = b[:, None, :, 0] * normal[:, :, None, 0] + b[:, None, :, 1] * normal[:, :, None, 1]
    min_a, max_a = proj_a.min(dim=2).values, proj_a.max(dim=2).values
    min_b, max_b = proj_b.min(dim=2).values, proj_b.max(dim=2).values

    def interval_distance(lo_a, hi_a, lo_b, hi_b):
        return torch.where(lo_a < lo_b, lo_b - hi_a, lo_a - hi_b)

    intersecting = ~(interval_distance(min_a, max_a, min_b, max_b) > 0).any(dim=1)
    rel = disp_a - disp_b
    vp = normal[..., 0] * rel[:, None, 0] + normal[..., 1] * rel[:, None, 1]  # [K, 8]
    min_a = torch.where(vp < 0, min_a + vp, min_a)
    max_a = torch.where(vp < 0, max_a, max_a + vp)
    distance = interval_distance(min_a, max_a, min_b, max_b)
    will_intersect = ~(distance > 0).any(dim=1)
    k = torch.argmin(torch.abs(distance), dim=1)  # first axis of least |overlap|
    axis = normal[torch.arange(len(k), device=k.device), k]
    min_distance = torch.abs(distance).gather(1, k[:, None])
    d = a.mean(dim=1) - b.mean(dim=1)  # centre difference
    sign = torch.where((d * axis).sum(dim=1, keepdim=True) > 0, 1.0, -1.0)
    return intersecting, will_intersect, min_distance * axis * sign


def handle_collisions(st: VehicleState, dt_s: float) -> None:
    """``Road.step``'s collision pass (after the bicycle step), in place: crashed flags and impacts."""
    b, m = st.x_m.shape
    n = st.n_vehicles
    upper = torch.ones(n, m, dtype=torch.bool, device=st.x_m.device).triu(diagonal=1)  # j > i
    check = st.check_collisions & st.valid
    valid_i = st.valid[:, :n] & st.is_vehicle[:, :n]
    pair = upper & valid_i[:, :, None] & st.valid[:, None, :] & (check[:, :n, None] | check[:, None, :])
    bb, ii, jj = torch.nonzero(pair, as_tuple=True)
    # Sphere pre-check on the candidate pairs only (flat indices into [B, M]).
    fi, fj = bb * m + ii, bb * m + jj
    x, y = st.x_m.reshape(-1), st.y_m.reshape(-1)
    length, width = st.length_m.reshape(-1), st.width_m.reshape(-1)
    dx, dy = x[fj] - x[fi], y[fj] - y[fi]
    diag_i = torch.sqrt(length[fi] ** 2 + width[fi] ** 2)
    diag_j = torch.sqrt(length[fj] ** 2 + width[fj] ** 2)
    near = ~(torch.sqrt(dx * dx + dy * dy) > (diag_i + diag_j) / 2 + st.speed_mps.reshape(-1)[fi] * dt_s)
    bb, ii, jj = bb[near], ii[near], jj[near]
    if len(bb) == 0:
        return

    def box(idx: torch.Tensor) -> torch.Tensor:
        return _corners(st.x_m[bb, idx], st.y_m[bb, idx], st.heading_rad[bb, idx], st.length_m[bb, idx], st.width_m[bb, idx])

    def displacement(idx: torch.Tensor) -> torch.Tensor:
        v, h = st.speed_mps[bb, idx], st.heading_rad[bb, idx]
        return torch.stack([v * torch.cos(h) * dt_s, v * torch.sin(h) * dt_s], dim=1)

    intersecting, will, translation = are_polygons_intersecting(box(ii), box(jj), displacement(ii), displacement(jj))

    # Crashes now (both solid).
    st.crashed[bb[intersecting], ii[intersecting]] = True
    st.crashed[bb[intersecting], jj[intersecting]] = True

    # Impacts: the last pair in highway-env's loop order (key i * M + j) wins for each object.
    bb, ii, jj, translation = bb[will], ii[will], jj[will], translation[will]
    if len(bb) == 0:
        return
    other_is_vehicle = st.is_vehicle[bb, jj]
    share = torch.where(other_is_vehicle, 0.5, 1.0)[:, None]
    key = ii * m + jj
    tgt_slot = torch.cat([ii, jj[other_is_vehicle]])
    tgt_b = torch.cat([bb, bb[other_is_vehicle]])
    tgt_key = torch.cat([key, key[other_is_vehicle]])
    tgt_push = torch.cat([translation * share, -translation[other_is_vehicle] / 2])
    flat = tgt_b * m + tgt_slot
    last = torch.full((b * m,), -1, dtype=torch.int64, device=flat.device).scatter_reduce(0, flat, tgt_key, reduce="amax")
    win = tgt_key == last[flat]
    st.impact_x_m[tgt_b[win], tgt_slot[win]] = tgt_push[win, 0].to(st.impact_x_m.dtype)
    st.impact_y_m[tgt_b[win], tgt_slot[win]] = tgt_push[win, 1].to(st.impact_y_m.dtype)
    st.has_impact[tgt_b[win], tgt_slot[win]] = True


def off_road(st: VehicleState, lanes: LaneTable, slot: int = 0) -> torch.Tensor:
    """``not vehicle.on_road`` for one slot of every scene (``lane.on_lane(position)``, no margin), ``[B]``."""
    lane = st.lane[:, slot]
    s = st.x_m[:, slot] - lanes.x_start_m[lane]
    r = lanes.lateral_m(lane, s, st.y_m[:, slot])
    return ~lanes.on_lane(lane, s, r)
