"""Road geometry of the batched simulator: highway-env's lane graph flattened into arrays.

Every road of the highway scenarios (the straight multi-lane road of ``highway-fast-v0``
and of the stop scenario, and merge-v0's road with its on-ramp) is made of lanes that
run along +x in highway-env's frame (y to the RIGHT): ``StraightLane``s and one
``SineLane`` (the converging part of the ramp). Such a lane is fully described by

    s = x - x_start                                   (longitudinal coordinate)
    r = y - y_start - amplitude * sin(pulsation * s + phase)   (lateral, + = right)
    heading(s) = arctan(amplitude * pulsation * cos(pulsation * s + phase))

(``amplitude = 0`` for a straight lane), which is exactly what highway-env's
``StraightLane.local_coordinates`` and ``SineLane.local_coordinates`` compute for lanes
whose direction is (1, 0). :class:`LaneTable` stores these parameters per lane in
highway-env's graph order (``RoadNetwork.lanes_list()``), so ``argmin`` over lanes breaks
ties like ``RoadNetwork.get_closest_lane_index`` does.

The road is shared by all B scenes of a batch (one scenario split = one road).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LANE_WIDTH_M = 4.0
"""highway-env's ``AbstractLane.DEFAULT_WIDTH`` [m]."""

LANE_VEHICLE_LENGTH_M = 5.0
"""highway-env's ``AbstractLane.VEHICLE_LENGTH`` (lane extension in ``on_lane``, ``after_end``) [m]."""


@dataclass
class LaneTable:
    """The lanes of one road, in highway-env's graph order. Tensors have shape ``[L]``.

    ``edge``/``lane_id`` name each lane as highway-env's ``(from, to, id)``; ``left``/``right``
    are the table indices of the neighbouring lanes on the same edge (``-1`` if none) and
    ``next_lane`` the lane ``RoadNetwork.next_lane`` continues to at the lane's end (itself
    where the road ends).
    """

    edges: tuple[tuple[str, str], ...]
    """Edge names ``(from, to)`` in graph order."""
    edge: torch.Tensor
    """Edge index of each lane (into ``edges``), int64."""
    lane_id: torch.Tensor
    """highway-env's lane id within its edge (0 = leftmost), int64."""
    edge_lane_count: torch.Tensor
    """Number of lanes of the lane's edge, int64."""
    x_start_m: torch.Tensor
    y_start_m: torch.Tensor
    """highway-env frame (y to the right)."""
    length_m: torch.Tensor
    width_m: torch.Tensor
    amplitude_m: torch.Tensor
    pulsation_radpm: torch.Tensor
    phase_rad: torch.Tensor
    speed_limit_mps: torch.Tensor
    forbidden: torch.Tensor
    """bool: lane changes INTO this lane are forbidden (``is_reachable_from`` is False)."""
    left: torch.Tensor
    right: torch.Tensor
    next_lane: torch.Tensor
    has_sine: bool
    """False when every lane is straight (skips the sine terms)."""

    @property
    def count(self) -> int:
        return int(self.edge.shape[0])

    def index(self, lane_index: tuple) -> int:
        """Table index of highway-env's ``(from, to, id)``."""
        e = self.edges.index((lane_index[0], lane_index[1]))
        hits = torch.nonzero((self.edge == e) & (self.lane_id == int(lane_index[2]))).flatten()
        if len(hits) != 1:
            raise KeyError(f"lane {lane_index} is not on this road")
        return int(hits[0])

    def name(self, i: int) -> tuple[str, str, int]:
        """highway-env's ``(from, to, id)`` of table lane ``i``."""
        return (*self.edges[int(self.edge[i])], int(self.lane_id[i]))

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "LaneTable":
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, torch.Tensor):
                out[k] = v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
            else:
                out[k] = v
        return LaneTable(**out)

    # ------------------------------------------------------------------ lane geometry

    def lateral_m(self, lane: torch.Tensor, s_m: torch.Tensor, y_m: torch.Tensor) -> torch.Tensor:
        """Lateral coordinate r (+ = right) on ``lane`` of a point at longitudinal ``s_m`` and world ``y_m``."""
        r = y_m - self.y_start_m[lane]
        if self.has_sine:
            r = r - self.amplitude_m[lane] * torch.sin(self.pulsation_radpm[lane] * s_m + self.phase_rad[lane])
        return r

    def heading_at(self, lane: torch.Tensor, s_m: torch.Tensor) -> torch.Tensor:
        """Lane heading [rad] at longitudinal ``s_m`` (0 for straight lanes)."""
        if not self.has_sine:
            return torch.zeros_like(s_m)
        a, w = self.amplitude_m[lane], self.pulsation_radpm[lane]
        return torch.arctan(a * w * torch.cos(w * s_m + self.phase_rad[lane]))

    def closest_lane(self, x_m: torch.Tensor, y_m: torch.Tensor, heading_rad: torch.Tensor) -> torch.Tensor:
        """``RoadNetwork.get_closest_lane_index(position, heading)`` for arrays ``[...]`` -> lane ``[...]``.

        Distance = |r| + max(s - length, 0) + max(-s, 0) + |wrap(heading - lane heading(s))|;
        the first lane in graph order wins ties (``np.argmin``).
        """
        s = x_m[..., None] - self.x_start_m  # [..., L]
        r = y_m[..., None] - self.y_start_m
        if self.has_sine:
            r = r - self.amplitude_m * torch.sin(self.pulsation_radpm * s + self.phase_rad)
            lane_h = torch.arctan(self.amplitude_m * self.pulsation_radpm * torch.cos(self.pulsation_radpm * s + self.phase_rad))
        else:
            lane_h = torch.zeros_like(s)
        angle = torch.abs(wrap_to_pi(heading_rad[..., None] - lane_h))
        d = torch.abs(r) + torch.clamp(s - self.length_m, min=0.0) + torch.clamp(-s, min=0.0) + angle
        return torch.argmin(d, dim=-1)  # first minimum, like np.argmin

    def on_lane(self, lane: torch.Tensor, s_m: torch.Tensor, r_m: torch.Tensor, margin_m: float = 0.0) -> torch.Tensor:
        """``AbstractLane.on_lane``: |r| <= width/2 + margin and -5 <= s < length + 5."""
        return (torch.abs(r_m) <= self.width_m[lane] / 2 + margin_m) & (s_m >= -LANE_VEHICLE_LENGTH_M) & (s_m < self.length_m[lane] + LANE_VEHICLE_LENGTH_M)


def wrap_to_pi(x: torch.Tensor) -> torch.Tensor:
    """highway-env's ``utils.wrap_to_pi``: ((x + pi) mod 2 pi) - pi (Python's floor mod)."""
    return torch.remainder(x + np.pi, 2 * np.pi) - np.pi


# --------------------------------------------------------------------------------------
# Builders (the same geometry as highway-env's constructors)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaneSpec:
    """One lane, as plain numbers, before it becomes a row of a :class:`LaneTable`."""

    edge: tuple[str, str]
    x_start_m: float
    y_start_m: float
    length_m: float
    speed_limit_mps: float
    forbidden: bool = False
    amplitude_m: float = 0.0
    pulsation_radpm: float = 0.0
    phase_rad: float = 0.0
    width_m: float = LANE_WIDTH_M


def lane_table(specs: list[LaneSpec]) -> LaneTable:
    """Build a :class:`LaneTable` from lanes listed in highway-env's graph order.

    Lane ids count within each edge in list order; ``next_lane`` follows highway-env's
    ``RoadNetwork.next_lane`` without a route: the next edge starting at this edge's end
    node (the closest lane to the projected end position when lane counts differ).
    """
    edges: list[tuple[str, str]] = []
    for sp in specs:
        if sp.edge not in edges:
            edges.append(sp.edge)
    # graph order: grouped by from-node (dict insertion), then to-node, then lane id
    from_order: list[str] = []
    for e in edges:
        if e[0] not in from_order:
            from_order.append(e[0])
    edges = sorted(edges, key=lambda e: (from_order.index(e[0]), edges.index(e)))
    by_edge = {e: [sp for sp in specs if sp.edge == e] for e in edges}
    ordered = [(e, i, sp) for e in edges for i, sp in enumerate(by_edge[e])]
    n = len(ordered)

    def idx(e: tuple[str, str], i: int) -> int:
        return next(k for k, (e2, i2, _) in enumerate(ordered) if e2 == e and i2 == i)

    left = [idx(e, i - 1) if i > 0 else -1 for e, i, _ in ordered]
    right = [idx(e, i + 1) if i + 1 < len(by_edge[e]) else -1 for e, i, _ in ordered]

    def local(sp: LaneSpec, x: float, y: float) -> tuple[float, float]:
        s = x - sp.x_start_m
        return s, y - sp.y_start_m - sp.amplitude_m * np.sin(sp.pulsation_radpm * s + sp.phase_rad)

    def position(sp: LaneSpec, s: float) -> tuple[float, float]:
        return sp.x_start_m + s, sp.y_start_m + sp.amplitude_m * np.sin(sp.pulsation_radpm * s + sp.phase_rad)

    def distance(sp: LaneSpec, x: float, y: float) -> float:
        s, r = local(sp, x, y)
        return abs(r) + max(s - sp.length_m, 0) + max(0 - s, 0)

    nxt = []
    for k, (e, i, sp) in enumerate(ordered):
        candidates = [e2 for e2 in edges if e2[0] == e[1]]
        if not candidates:
            nxt.append(k)
            continue
        # projected position where follow_road switches: s = length - VEHICLE_LENGTH / 2
        px, py = position(sp, sp.length_m - LANE_VEHICLE_LENGTH_M / 2)
        best = None
        for e2 in candidates:
            lanes2 = by_edge[e2]
            j = i if len(lanes2) == len(by_edge[e]) else min(range(len(lanes2)), key=lambda j: distance(lanes2[j], px, py))
            d = distance(lanes2[j], px, py)
            if best is None or d < best[0]:
                best = (d, idx(e2, j))
        nxt.append(best[1])

    f64 = lambda vals: torch.tensor(vals, dtype=torch.float64)  # noqa: E731
    i64 = lambda vals: torch.tensor(vals, dtype=torch.int64)  # noqa: E731
    sps = [sp for _, _, sp in ordered]
    return LaneTable(
        edges=tuple(edges),
        edge=i64([edges.index(e) for e, _, _ in ordered]),
        lane_id=i64([i for _, i, _ in ordered]),
        edge_lane_count=i64([len(by_edge[e]) for e, _, _ in ordered]),
        x_start_m=f64([sp.x_start_m for sp in sps]),
        y_start_m=f64([sp.y_start_m for sp in sps]),
        length_m=f64([sp.length_m for sp in sps]),
        width_m=f64([sp.width_m for sp in sps]),
        amplitude_m=f64([sp.amplitude_m for sp in sps]),
        pulsation_radpm=f64([sp.pulsation_radpm for sp in sps]),
        phase_rad=f64([sp.phase_rad for sp in sps]),
        speed_limit_mps=f64([sp.speed_limit_mps for sp in sps]),
        forbidden=torch.tensor([sp.forbidden for sp in sps], dtype=torch.bool),
        left=i64(left),
        right=i64(right),
        next_lane=i64(nxt),
        has_sine=any(sp.amplitude_m != 0.0 for sp in sps),
    )


def straight_road(lanes: int, length_m: float, speed_limit_mps: float, nodes: tuple[str, str] = ("0", "1")) -> LaneTable:
    """``RoadNetwork.straight_road_network(lanes, length=length_m, speed_limit=...)``: lane i at y = 4 i."""
    return lane_table([LaneSpec(nodes, 0.0, i * LANE_WIDTH_M, length_m, speed_limit_mps) for i in range(lanes)])


MERGE_ENDS_M = (150.0, 80.0, 80.0, 150.0)
"""merge-v0's section lengths: before, converging, merge, after [m]."""
MERGE_AMPLITUDE_M = 3.25


def merge_road(speed_limit_mps: float) -> tuple[LaneTable, list[tuple[float, float]]]:
    """merge-v0's road (``MergeEnv._make_road``) and its obstacle position(s) (highway-env frame).

    Two main lanes a->b->c->d; the ramp j->k (straight, y = 14.5), k->b (a sine converging
    to y = 8) and the acceleration lane ("b", "c", 2) ending at an obstacle at x = 310 m.
    Every lane gets ``speed_limit_mps`` (the project's RampMergeEnv sets all lanes alike).
    """
    before, converge, merge, after = MERGE_ENDS_M
    specs: list[LaneSpec] = []
    # Insertion order of MergeEnv._make_road: per main lane i, edges a-b, b-c, c-d.
    for i in range(2):
        y = i * LANE_WIDTH_M
        specs.append(LaneSpec(("a", "b"), 0.0, y, before + converge, speed_limit_mps))
        specs.append(LaneSpec(("b", "c"), before + converge, y, merge, speed_limit_mps))
        specs.append(LaneSpec(("c", "d"), before + converge + merge, y, after, speed_limit_mps))
    y_ramp = 6.5 + 4 + 4
    specs.append(LaneSpec(("j", "k"), 0.0, y_ramp, before, speed_limit_mps, forbidden=True))
    y_sine = y_ramp - MERGE_AMPLITUDE_M
    pulsation = 2 * np.pi / (2 * converge)
    specs.append(LaneSpec(("k", "b"), before, y_sine, converge, speed_limit_mps, forbidden=True, amplitude_m=MERGE_AMPLITUDE_M, pulsation_radpm=pulsation, phase_rad=np.pi / 2))
    y_merge = y_sine + MERGE_AMPLITUDE_M * np.sin(pulsation * converge + np.pi / 2)
    specs.append(LaneSpec(("b", "c"), before + converge, y_merge, merge, speed_limit_mps, forbidden=True))
    # lane order inside an edge is insertion order, so ("b","c",2) is the acceleration lane
    return lane_table(specs), [(before + converge + merge, y_merge)]


def road_from_network(network) -> LaneTable:
    """A :class:`LaneTable` from a highway-env ``RoadNetwork`` of +x ``StraightLane``/``SineLane``s.

    Raises ``ValueError`` for any other lane type or direction (the batched simulator only
    models the highway scenarios' roads).
    """
    from highway_env.road.lane import SineLane, StraightLane

    specs = []
    for _from, tos in network.graph.items():
        for _to, lanes in tos.items():
            for lane in lanes:
                if not isinstance(lane, StraightLane) or not np.allclose(lane.direction, [1.0, 0.0], atol=0.0):
                    raise ValueError(f"lane {(_from, _to)} is not a +x straight or sine lane: the batched simulator cannot model it")
                sine = isinstance(lane, SineLane)
                specs.append(
                    LaneSpec(
                        (_from, _to), float(lane.start[0]), float(lane.start[1]), float(lane.length), float(lane.speed_limit),
                        forbidden=bool(lane.forbidden), width_m=float(lane.width),
                        amplitude_m=float(lane.amplitude) if sine else 0.0,
                        pulsation_radpm=float(lane.pulsation) if sine else 0.0,
                        phase_rad=float(lane.phase) if sine else 0.0,
                    )
                )  # fmt: skip
    return lane_table(specs)
