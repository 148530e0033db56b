"""lane_change: overtake slower traffic and drive the route (``route_length_m`` along the road)."""

from __future__ import annotations

import numpy as np

from drive_drail.tasks.base import Measurements, route_done, route_driven, safe

ENDS_AT_ROUTE_DONE = {"highway": False, "metadrive": True}
"""Whether a lane_change episode ends when its route is done, per simulator. highway-env's road is
straight and long, so the episode runs on to its time limit (a crash after the route still fails
it); MetaDrive's procedural map ends soon after the 250 m route, so the episode ends there. The
committed learning tables were measured with these rules."""


def goal_x_m(x_start_m: np.ndarray, criteria) -> np.ndarray:
    """``[B]`` where the route ends on a straight road along x [m]."""
    return np.asarray(x_start_m, np.float64) + criteria.route_length_m


def success(criteria, m: Measurements) -> np.ndarray:
    """``[B]`` bool: safe, and the route driven (``min_route_completion``) or the destination reached."""
    return route_driven(criteria, m)


def terminated(simulator: str, m: Measurements) -> np.ndarray:
    """``[B]`` bool: a collision, off-road, or (where :data:`ENDS_AT_ROUTE_DONE`) the route done."""
    return ~safe(m) | (route_done(m) & ENDS_AT_ROUTE_DONE[simulator])
