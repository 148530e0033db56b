"""A top-down picture of a scene drawn from its road geometry and vehicle boxes, with no assets.

Simulators whose own renderer needs downloaded models or textures (MetaDrive) draw their
report frames here: the road is painted once per map from lane boundary polylines, then each
frame crops a window around the ego and draws every vehicle as its oriented box. World frame:
x forward/east, y left/north [m] (MetaDrive's right-handed frame); image rows grow downwards,
so y is flipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRASS = (100, 140, 80)
ROAD = (100, 100, 100)
LINE = (235, 235, 235)
EGO = (50, 200, 0)
TRAFFIC = (100, 200, 255)
STALLED = (255, 150, 0)
CRASHED = (220, 30, 30)
OBJECT = (200, 200, 200)
DASH_M = (3.0, 6.0)
"""Dashed lane lines: 3 m painted, 6 m gap."""


@dataclass(frozen=True)
class LaneOutline:
    """One lane's two boundaries, ``[N, 2]`` world points [m] each, from its start to its end."""

    left_xy_m: np.ndarray
    right_xy_m: np.ndarray
    left_dashed: bool
    right_dashed: bool


@dataclass(frozen=True)
class Box:
    """A vehicle or object seen from above: centre [m], heading [rad, + = left], size [m], fill colour."""

    x_m: float
    y_m: float
    heading_rad: float
    length_m: float
    width_m: float
    color: tuple[int, int, int]


def box_corners_m(box: Box) -> np.ndarray:
    """The four corners of ``box`` in the world frame, ``[4, 2]`` [m], counter-clockwise from front-left."""
    c, s = np.cos(box.heading_rad), np.sin(box.heading_rad)
    half_l, half_w = box.length_m / 2, box.width_m / 2
    local = np.array([[half_l, half_w], [-half_l, half_w], [-half_l, -half_w], [half_l, -half_w]])
    return np.array([box.x_m, box.y_m]) + local @ np.array([[c, s], [-s, c]])


def dashes(polyline_m: np.ndarray, on_m: float = DASH_M[0], off_m: float = DASH_M[1]) -> list[np.ndarray]:
    """The painted pieces of a dashed line along ``polyline_m`` ``[N, 2]``, each ``[K, 2]`` [m]."""
    seg = np.linalg.norm(np.diff(polyline_m, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    pieces = []
    for start in np.arange(0.0, s[-1], on_m + off_m):
        end = min(start + on_m, s[-1])
        inner = (s > start) & (s < end)
        ends = np.stack([np.interp([start, end], s, polyline_m[:, k]) for k in range(2)], axis=1)
        pieces.append(np.concatenate([ends[:1], polyline_m[inner], ends[1:]]))
    return pieces


class TopDownCanvas:
    """The painted road of one map, and frames cropped from it around a centre point.

    ``px_per_m`` sets the scale; ``view_px = (width, height)`` the frame size. The road is painted
    once (:meth:`__init__`, ~tens of ms for a MetaDrive map); :meth:`frame` costs a crop and a
    polygon per box.
    """

    def __init__(self, lanes: list[LaneOutline], px_per_m: float = 4.0, view_px: tuple[int, int] = (600, 300)):
        from PIL import Image, ImageDraw

        if not lanes:
            raise ValueError("a top-down canvas needs at least one lane")
        self.px_per_m, self.view_px = float(px_per_m), (int(view_px[0]), int(view_px[1]))
        points = np.concatenate([p for lane in lanes for p in (lane.left_xy_m, lane.right_xy_m)])
        self._min_m = points.min(axis=0)
        self._max_y_m = float(points[:, 1].max())
        size = np.ceil((points.max(axis=0) - self._min_m) * self.px_per_m).astype(int) + 1
        self._road = Image.new("RGB", (int(size[0]), int(size[1])), GRASS)
        draw = ImageDraw.Draw(self._road)
        for lane in lanes:
            outline = np.concatenate([lane.left_xy_m, lane.right_xy_m[::-1]])
            draw.polygon(self._to_px(outline), fill=ROAD)
        width_px = max(1, round(0.15 * self.px_per_m))
        for lane in lanes:
            for line, dashed in ((lane.left_xy_m, lane.left_dashed), (lane.right_xy_m, lane.right_dashed)):
                for piece in dashes(line) if dashed else [line]:
                    draw.line(self._to_px(piece), fill=LINE, width=width_px)

    def _to_px(self, xy_m: np.ndarray) -> list[tuple[float, float]]:
        """World points ``[N, 2]`` [m] -> pixel points of the painted road (y flipped)."""
        px = np.empty_like(xy_m, dtype=np.float64)
        px[:, 0] = (xy_m[:, 0] - self._min_m[0]) * self.px_per_m
        px[:, 1] = (self._max_y_m - xy_m[:, 1]) * self.px_per_m
        return [tuple(p) for p in px]

    def frame(self, centre_xy_m: tuple[float, float], boxes: list[Box]) -> np.ndarray:
        """The window of ``view_px`` centred on ``centre_xy_m`` with ``boxes`` drawn, ``[H, W, 3]`` uint8."""
        from PIL import Image, ImageDraw

        (cx, cy), (w, h) = self._to_px(np.array([centre_xy_m], dtype=np.float64))[0], self.view_px
        left, top = int(round(cx - w / 2)), int(round(cy - h / 2))
        image = Image.new("RGB", (w, h), GRASS)
        image.paste(self._road.crop((left, top, left + w, top + h)), (0, 0))  # crop pads outside the road with black:
        self._grass_outside(image, left, top)                                # repaint that as grass
        draw = ImageDraw.Draw(image)
        for box in boxes:
            corners = [(x - left, y - top) for x, y in self._to_px(box_corners_m(box))]
            draw.polygon(corners, fill=box.color, outline=(30, 30, 30))
        return np.asarray(image, dtype=np.uint8)

    def _grass_outside(self, image, left: int, top: int) -> None:
        from PIL import ImageDraw

        w, h = self.view_px
        rw, rh = self._road.size
        draw = ImageDraw.Draw(image)
        for x0, y0, x1, y1 in ((0, 0, -left - 1, h), (rw - left, 0, w, h), (0, 0, w, -top - 1), (0, rh - top, w, h)):
            if x1 >= x0 and y1 >= y0:
                draw.rectangle((x0, y0, x1, y1), fill=GRASS)
