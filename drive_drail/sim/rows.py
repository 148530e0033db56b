"""Simulator-independent scene rows: the record-format columns of every object at one instant.

Each adapter fills these columns from its simulator (``frame_rows()``); everything after
that is shared: the recorder logs them, and the scene / observation is built from them
by the ONE observation function, so the log and the adapter agree by construction.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drive_drail import spec

STATE_COLUMNS = (
    "x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m",
    "lane_index", "lane_count", "lane_offset_m", "lane_heading_rad", "on_ramp", "expert",
)  # fmt: skip
"""The record-format columns an adapter's ``frame_rows()`` fills (all but scene_id, track_id, frame, t_s)."""


class FrameRows(NamedTuple):
    """Every object at one instant, ego first, in the spec frame.

    ``objects[i]`` is the simulator's handle of row i (stable for an episode: the recorder
    keys tracks by it); ``columns`` maps each name in :data:`STATE_COLUMNS` to an array
    ``[N]`` (float64 states, int64 lane fields, bool flags).
    """

    objects: list
    columns: dict[str, np.ndarray]


def scene_from_rows(columns: dict[str, np.ndarray], ego_row: int = 0) -> spec.Scene:
    """The :class:`spec.Scene` of the vehicle in row ``ego_row`` (columns as in :data:`STATE_COLUMNS`)."""

    def vehicle(i: int) -> spec.Vehicle:
        return spec.Vehicle(
            x_m=float(columns["x_m"][i]),
            y_m=float(columns["y_m"][i]),
            vx_mps=float(columns["vx_mps"][i]),
            vy_mps=float(columns["vy_mps"][i]),
            heading_rad=float(columns["heading_rad"][i]),
            length_m=float(columns["length_m"][i]),
            width_m=float(columns["width_m"][i]),
            lane=int(columns["lane_index"][i]),
        )

    lane = spec.LaneContext(
        count=int(columns["lane_count"][ego_row]),
        offset_m=float(columns["lane_offset_m"][ego_row]),
        heading_rad=float(columns["lane_heading_rad"][ego_row]),
    )
    n = len(columns["x_m"])
    return spec.Scene(ego=vehicle(ego_row), others=[vehicle(i) for i in range(n) if i != ego_row], lane=lane)


def observe_rows(columns: dict[str, np.ndarray], ego_row: int = 0) -> np.ndarray:
    """``spec.observe(scene_from_rows(columns, ego_row))`` without building the Scene objects:
    :func:`spec.observe_one` on the columns, shape ``[OBS_DIM]``, float32."""
    return spec.observe_one(
        columns["x_m"].tolist(), columns["y_m"].tolist(), columns["vx_mps"].tolist(), columns["vy_mps"].tolist(),
        columns["heading_rad"].tolist(), columns["lane_index"].tolist(), ego_row, float(columns["lane_count"][ego_row]),
        float(columns["lane_offset_m"][ego_row]), float(columns["lane_heading_rad"][ego_row]),
    )  # fmt: skip


def batch_for_all(columns: dict[str, np.ndarray]) -> spec.SceneBatch:
    """One scene per vehicle (obstacles excluded as egos), all sharing the same M slots.

    Returns a :class:`spec.SceneBatch` with ``B`` = number of vehicles, ``M`` = number of rows;
    scene b has its ego in slot ``ego[b]``.
    """
    egos = np.flatnonzero(columns["expert"])
    b = len(egos)

    def tile(name: str) -> np.ndarray:
        return np.broadcast_to(columns[name], (b, len(columns[name]))).copy()

    return spec.SceneBatch(
        x_m=tile("x_m"),
        y_m=tile("y_m"),
        vx_mps=tile("vx_mps"),
        vy_mps=tile("vy_mps"),
        heading_rad=tile("heading_rad"),
        lane=tile("lane_index"),
        valid=np.ones((b, len(columns["x_m"])), dtype=bool),
        ego=egos.astype(np.int64),
        lane_count=columns["lane_count"][egos].astype(np.float64),
        lane_offset_m=columns["lane_offset_m"][egos].copy(),
        lane_heading_rad=columns["lane_heading_rad"][egos].copy(),
    )
