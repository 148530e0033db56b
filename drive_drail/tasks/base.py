"""What a simulator measures for the task rules, as ``[B]`` arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Measurements:
    """One step's task measurements of B episodes, each ``[B]``.

    ``merged`` (merge) and ``gap_m`` / ``stopped_s`` (stop) may be None for the other tasks.
    """

    crashed: np.ndarray
    """bool: the ego collided."""
    offroad: np.ndarray
    """bool: the ego left the road."""
    route_completion: np.ndarray
    """Fraction of the task's route driven, in [0, 1]."""
    arrived: np.ndarray | None = None
    """bool: the simulator's own destination reached (MetaDrive's ``arrive_dest``); None = never."""
    merged: np.ndarray | None = None
    """merge, bool: the ego is on a main-road lane."""
    gap_m: np.ndarray | None = None
    """stop: bumper gap from the ego's front to the obstacle's rear along the lane [m]."""
    stopped_s: np.ndarray | None = None
    """stop: how long the ego has been below the stopped speed [s]."""

    @classmethod
    def one(cls, **values) -> "Measurements":
        """B = 1 from scalars (None stays None)."""
        return cls(**{k: None if v is None else np.atleast_1d(np.asarray(v)) for k, v in values.items()})


def safe(m: Measurements) -> np.ndarray:
    """``[B]`` bool: no collision and no off-road, which every task requires."""
    return ~np.asarray(m.crashed, bool) & ~np.asarray(m.offroad, bool)


def route_done(m: Measurements) -> np.ndarray:
    """``[B]`` bool: the whole route driven."""
    return np.asarray(m.route_completion) >= 1.0


def arrived(m: Measurements) -> np.ndarray:
    return np.zeros(np.shape(m.crashed), bool) if m.arrived is None else np.asarray(m.arrived, bool)


def route_driven(criteria, m: Measurements) -> np.ndarray:
    """``[B]`` bool: safe, and the route driven (``min_route_completion``) or the destination reached."""
    return safe(m) & (arrived(m) | (np.asarray(m.route_completion) >= criteria.min_route_completion))
