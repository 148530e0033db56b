"""Lane geometry of a MetaDrive map: the spec's lane frame of a point, ramps, and lanes ahead on a route."""

from __future__ import annotations

import math

import numpy as np


def lane_frame(lane, road_network, x_m: float, y_m: float) -> tuple[int, int, float, float]:
    """``(lane_index, lane_count, lane_offset_m (+ left), lane_heading_rad)`` of a point on ``lane``."""
    longitudinal = lane.local_coordinates((x_m, y_m))[0]
    cx, cy = lane.position(longitudinal, 0.0)
    h = float(lane.heading_theta_at(longitudinal))
    offset = -math.sin(h) * (x_m - cx) + math.cos(h) * (y_m - cy)
    f, t, i = lane.index
    return int(i), len(road_network.graph[f][t]), float(offset), h


class LaneFrames:
    """:func:`lane_frame` and the distance along a lane for one map, with each straight lane's
    geometry read once into Python floats (MetaDrive's lane methods work on numpy scalars and
    cost ~5-30 us a call inside a physics step; the adapter asks every step).

    A straight lane's frame is closed-form: heading constant, offset = the point's lateral
    coordinate from the lane start (equal to :func:`lane_frame` to ~1e-12 m). Other lanes
    (MetaDrive's arcs) take :func:`lane_frame`'s general path.
    """

    def __init__(self, road_network):
        from metadrive.component.lane.straight_lane import StraightLane

        self.road_network = road_network
        self._straight_lane = StraightLane
        self._geometry: dict[tuple, tuple | None] = {}  # lane.index -> (x0, y0, cos_h, sin_h, heading, index, count)

    def _straight(self, lane) -> tuple | None:
        index = lane.index
        try:
            return self._geometry[index]
        except KeyError:
            geometry = None
            if type(lane) is self._straight_lane:
                h = float(lane.heading)
                f, t, i = index
                geometry = (float(lane.start[0]), float(lane.start[1]), math.cos(h), math.sin(h), h, int(i), len(self.road_network.graph[f][t]))
            self._geometry[index] = geometry
            return geometry

    def frame(self, lane, x_m: float, y_m: float) -> tuple[int, int, float, float]:
        """``(lane_index, lane_count, lane_offset_m (+ left), lane_heading_rad)``, as :func:`lane_frame`."""
        g = self._straight(lane)
        if g is None:
            return lane_frame(lane, self.road_network, x_m, y_m)
        x0, y0, c, s, h, index, count = g
        return index, count, -s * (x_m - x0) + c * (y_m - y0), h

    def longitudinal_m(self, lane, x_m: float, y_m: float) -> float:
        """Distance along ``lane`` from its start to the point's projection [m] (``local_coordinates[0]``)."""
        g = self._straight(lane)
        if g is None:
            return float(lane.local_coordinates((x_m, y_m))[0])
        x0, y0, c, s = g[:4]
        return (x_m - x0) * c + (y_m - y0) * s


def lane_outlines(road_network, step_m: float = 2.0) -> list:
    """Every lane of a MetaDrive road network as a :class:`~drive_drail.sim.topdown.LaneOutline`:
    both boundaries sampled every ``step_m`` along the lane, dashed where the lane's line type is broken."""
    from drive_drail.sim.topdown import LaneOutline

    outlines = []
    for lane in road_network.get_all_lanes():
        s = np.append(np.arange(0.0, lane.length, step_m), lane.length)
        half = [lane.width_at(x) / 2 for x in s]
        left = np.array([lane.position(x, -w) for x, w in zip(s, half)])[:, :2]  # MetaDrive's lateral: + = right
        right = np.array([lane.position(x, w) for x, w in zip(s, half)])[:, :2]
        types = [str(t) for t in getattr(lane, "line_types", ("", ""))]
        outlines.append(LaneOutline(left, right, "BROKEN" in types[0], "BROKEN" in types[1]))
    return outlines


def on_ramp_lanes(pg_map) -> frozenset:
    """Lane indices of every on-ramp of a PG map: the ramp roads and the acceleration lane.

    MetaDrive's ``InRampOnStraight`` block ``r`` at block index ``i`` names its ramp road
    ``{i}r1_*`` and its merge road ``{i}r0_0_ -> {i}r0_1_``, whose extra rightmost lane
    (the highest id) is the acceleration lane.
    """
    from metadrive.component.pgblock.ramp import InRampOnStraight

    graph = pg_map.road_network.graph
    lanes = set()
    for block in pg_map.blocks:
        if not isinstance(block, InRampOnStraight):
            continue
        ramp_prefix = block.road_node(1, 0)[:-3]  # "{i}r1"
        for f, tos in graph.items():
            for t, road_lanes in tos.items():
                if f.startswith(ramp_prefix):
                    lanes.update(lane.index for lane in road_lanes)
        merge_from, merge_to = block.road_node(0, 0), block.road_node(0, 1)
        if merge_from in graph and merge_to in graph[merge_from]:
            lanes.add(graph[merge_from][merge_to][-1].index)
    return frozenset(lanes)


def ramp_spawn_lane(map_config: dict) -> tuple[str, str, int]:
    """The first lane of the first on-ramp of a block-sequence map (``ego_on_ramp``)."""
    sequence = str(map_config.get("config", ""))
    if map_config.get("type") != "block_sequence" or "r" not in sequence:
        raise ValueError("ego_on_ramp needs map_config {type: block_sequence, config: '...r...'}")
    from metadrive.component.pgblock.ramp import InRampOnStraight

    block_index = sequence.index("r") + 1  # block 0 is MetaDrive's first block
    return (InRampOnStraight.node(block_index, 1, 0), InRampOnStraight.node(block_index, 1, 1), 0)


def lane_ahead(vehicle, distance_m: float):
    """``(lane, longitudinal)`` at ``distance_m`` ahead of ``vehicle`` along its route, same lane id (or None)."""
    navigation = vehicle.navigation
    graph = navigation.map.road_network.graph
    lane = vehicle.lane
    lane_id = lane.index[2]
    s = lane.local_coordinates(vehicle.position)[0] + distance_m
    checkpoints = navigation.checkpoints
    f, t = lane.index[:2]
    k = next((j for j in range(len(checkpoints) - 1) if (checkpoints[j], checkpoints[j + 1]) == (f, t)), None)
    if k is None:
        return None, 0.0
    while True:
        lanes = graph[checkpoints[k]][checkpoints[k + 1]]
        lane = lanes[min(lane_id, len(lanes) - 1)]
        if s <= lane.length:
            return lane, s
        s -= lane.length
        k += 1
        if k + 1 >= len(checkpoints):
            return None, 0.0
