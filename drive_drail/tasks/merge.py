"""merge: drive from the on-ramp into the main road and on to the end of the route."""

from __future__ import annotations

import numpy as np

from drive_drail.tasks.base import Measurements, route_done, route_driven, safe


def success(criteria, m: Measurements) -> np.ndarray:
    """``[B]`` bool: safe, the route driven (or the destination reached), and on a main lane where
    ``require_merge``."""
    return route_driven(criteria, m) & (np.asarray(m.merged, bool) | (not criteria.require_merge))


def terminated(simulator: str, m: Measurements) -> np.ndarray:
    """``[B]`` bool: a collision, off-road, or the route done (the ramp and the merge are behind)."""
    return ~safe(m) | route_done(m)
