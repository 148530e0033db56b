"""The asset-free top-down renderer: road painted from lane outlines, boxes where the vehicles are."""

from __future__ import annotations

import numpy as np
import pytest

from drive_drail.sim import topdown
from drive_drail.sim.topdown import Box, LaneOutline, TopDownCanvas


def straight_lanes(n: int = 2, length_m: float = 200.0, width_m: float = 4.0) -> list[LaneOutline]:
    x = np.linspace(0.0, length_m, 11)
    return [LaneOutline(np.stack([x, np.full_like(x, (i + 1) * width_m)], 1), np.stack([x, np.full_like(x, i * width_m)], 1),
                        left_dashed=i < n - 1, right_dashed=i > 0) for i in range(n)]


def pixel(frame: np.ndarray, canvas: TopDownCanvas, centre: tuple[float, float], xy_m: tuple[float, float]) -> tuple:
    """The colour of the world point ``xy_m`` in a frame centred on ``centre`` (y up in the world, down in the image)."""
    w, h = canvas.view_px
    col = round(w / 2 + (xy_m[0] - centre[0]) * canvas.px_per_m)
    row = round(h / 2 - (xy_m[1] - centre[1]) * canvas.px_per_m)
    return tuple(frame[row, col])


def test_boxes_are_drawn_where_the_vehicles_are_and_the_road_under_them():
    canvas = TopDownCanvas(straight_lanes(), px_per_m=4.0, view_px=(400, 200))
    centre = (100.0, 4.0)
    ego = Box(100.0, 2.0, 0.0, 5.0, 2.0, topdown.EGO)
    lead = Box(130.0, 6.0, 0.3, 5.0, 2.0, topdown.TRAFFIC)
    frame = canvas.frame(centre, [ego, lead])
    assert frame.shape == (200, 400, 3) and frame.dtype == np.uint8
    assert pixel(frame, canvas, centre, (100.0, 2.0)) == topdown.EGO
    assert pixel(frame, canvas, centre, (130.0, 6.0)) == topdown.TRAFFIC
    assert pixel(frame, canvas, centre, (115.0, 1.0)) == topdown.ROAD  # on the road, between lines and boxes
    assert pixel(frame, canvas, centre, (100.0, 20.0)) == topdown.GRASS  # beside the road
    # The heading turns the box: 1.8 m ahead along its 0.3 rad heading is inside it; (+2.0, -0.8) m, inside an
    # unturned box, is 1.35 m to its right, outside.
    assert pixel(frame, canvas, centre, (130.0 + 1.8 * np.cos(0.3), 6.0 + 1.8 * np.sin(0.3))) == topdown.TRAFFIC
    assert pixel(frame, canvas, centre, (132.0, 5.2)) == topdown.ROAD


def test_a_window_past_the_end_of_the_road_is_grass_not_black():
    canvas = TopDownCanvas(straight_lanes(), view_px=(300, 100))
    frame = canvas.frame((195.0, 4.0), [])
    assert not (frame == 0).all(axis=2).any()
    assert pixel(frame, canvas, (195.0, 4.0), (220.0, 2.0)) == topdown.GRASS
    assert pixel(frame, canvas, (195.0, 4.0), (190.0, 2.0)) == topdown.ROAD


def test_dashes_paint_a_third_of_the_line():
    line = np.array([[0.0, 0.0], [45.0, 0.0], [90.0, 0.0]])
    pieces = topdown.dashes(line)
    lengths = [np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in pieces]
    assert len(pieces) == 10 and lengths == pytest.approx([3.0] * 10)
    assert pieces[5][0] == pytest.approx([45.0, 0.0])  # the 6th dash starts at 5 x 9 m, on the polyline's middle vertex


def test_a_canvas_without_lanes_is_refused():
    with pytest.raises(ValueError, match="at least one lane"):
        TopDownCanvas([])
