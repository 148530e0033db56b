"""State arrays of the batched simulator: B scenes x M slots of highway-env road objects.

Slot layout of every scene (highway-env's iteration order, which decides tie-breaks in
``Road.neighbour_vehicles`` and the order collisions are handled in ``Road.step``)::

    slot 0            the ego (highway-env's ``env.vehicle``)
    slots 1 .. N-1    the other vehicles, in ``road.vehicles`` order (padding: valid = False)
    slots N .. M-1    solid road objects (obstacles), in ``road.objects`` order

Positions, headings and velocities are in highway-env's frame (y to the RIGHT); the
environment mirrors them into the spec frame only when it builds the observation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

VEHICLE_LENGTH_M = 5.0
"""highway-env ``Vehicle.LENGTH`` [m] (also the bicycle model's wheelbase: heading rate uses LENGTH / 2)."""
VEHICLE_WIDTH_M = 2.0
"""highway-env ``Vehicle.WIDTH`` [m]."""
OBSTACLE_SIZE_M = 2.0
"""highway-env ``RoadObject.LENGTH`` = ``WIDTH`` of a plain ``Obstacle`` [m]."""
FAR_AWAY_M = 1.0e7
"""x of padding slots: far from every lane, so no geometric test can select them [m]."""


@dataclass
class VehicleState:
    """Per-slot state, every tensor of shape ``[B, M]`` (float: ``x_m`` .. ``impact_y_m``).

    ``n_vehicles`` = N (ego + traffic slots); slots ``>= N`` hold obstacles.
    """

    x_m: torch.Tensor
    y_m: torch.Tensor
    """Position, highway-env frame (y to the right) [m]."""
    heading_rad: torch.Tensor
    """Heading, counter-clockwise in highway-env's frame (toward +y = right on screen) [rad]."""
    speed_mps: torch.Tensor
    length_m: torch.Tensor
    width_m: torch.Tensor
    target_speed_mps: torch.Tensor
    """IDM target speed (``ControlledVehicle.target_speed``); unused for non-IDM slots."""
    timer_s: torch.Tensor
    """MOBIL decision timer (``IDMVehicle.timer``) [s]."""
    delta: torch.Tensor
    """IDM velocity exponent of this vehicle (``IDMVehicle.DELTA``, randomised at spawn)."""
    steer_rad: torch.Tensor
    accel_mps2: torch.Tensor
    """The stored action (``Vehicle.action``): front-wheel angle [rad] (+ toward +y) and acceleration."""
    impact_x_m: torch.Tensor
    impact_y_m: torch.Tensor
    """Pending collision push applied at the next step (``Vehicle.impact``) [m]."""
    lane: torch.Tensor
    """Current lane (``lane_index``), an index into the road's :class:`LaneTable`, int64."""
    target_lane: torch.Tensor
    """Lane followed by the steering controller (``target_lane_index``), int64."""
    valid: torch.Tensor
    """bool: the slot holds an object."""
    is_vehicle: torch.Tensor
    """bool: a highway-env ``Vehicle`` (moves with the bicycle model); False for obstacles."""
    is_idm: torch.Tensor
    """bool: an ``IDMVehicle`` (decides with IDM/MOBIL and the lane controller)."""
    lane_change: torch.Tensor
    """bool: ``enable_lane_change`` of an IDM vehicle."""
    check_collisions: torch.Tensor
    """bool: ``RoadObject.check_collisions`` (highway-fast turns it off for traffic)."""
    crashed: torch.Tensor
    has_impact: torch.Tensor
    """bool: ``impact is not None``."""
    n_vehicles: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.x_m.shape)  # type: ignore[return-value]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n_vehicles"}

    def index_copy_(self, dst: torch.Tensor, src: "VehicleState", src_idx: torch.Tensor) -> None:
        """``self[dst] = src[src_idx]`` for every field (rows = scenes)."""
        for name, t in self.tensors().items():
            t[dst] = getattr(src, name)[src_idx].to(t.dtype)

    def clone(self) -> "VehicleState":
        return VehicleState(**{k: v.clone() for k, v in self.tensors().items()}, n_vehicles=self.n_vehicles)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "VehicleState":
        out = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in self.tensors().items()}
        return VehicleState(**out, n_vehicles=self.n_vehicles)


FLOAT_FIELDS = (
    "x_m", "y_m", "heading_rad", "speed_mps", "length_m", "width_m", "target_speed_mps", "timer_s",
    "delta", "steer_rad", "accel_mps2", "impact_x_m", "impact_y_m",
)  # fmt: skip
INT_FIELDS = ("lane", "target_lane")
BOOL_FIELDS = ("valid", "is_vehicle", "is_idm", "lane_change", "check_collisions", "crashed", "has_impact")


def empty_state(b: int, n_vehicles: int, n_objects: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> VehicleState:
    """An all-padding state of shape ``[b, n_vehicles + n_objects]``."""
    m = n_vehicles + n_objects
    kw: dict = {name: torch.zeros(b, m, device=device, dtype=dtype) for name in FLOAT_FIELDS}
    kw["x_m"] = torch.full((b, m), FAR_AWAY_M, device=device, dtype=dtype)
    kw["length_m"] = torch.full((b, m), VEHICLE_LENGTH_M, device=device, dtype=dtype)
    kw["width_m"] = torch.full((b, m), VEHICLE_WIDTH_M, device=device, dtype=dtype)
    kw.update({name: torch.zeros(b, m, device=device, dtype=torch.int64) for name in INT_FIELDS})
    kw.update({name: torch.zeros(b, m, device=device, dtype=torch.bool) for name in BOOL_FIELDS})
    return VehicleState(**kw, n_vehicles=n_vehicles)
