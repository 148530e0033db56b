"""highway-env's kinematic bicycle model (``Vehicle.step``), vectorised over ``[B, N]`` vehicles.

For a front-wheel angle delta and acceleration a, over one step dt (highway-env's
``Vehicle.step`` with its ``clip_actions``)::

    beta     = arctan(tan(delta) / 2)                      slip angle at the centre (Eq. B1)
    p       += v [cos(psi + beta), sin(psi + beta)] dt     position (Eq. B2)
    p       += impact  (then crashed = True)               pending collision push
    psi     += v sin(beta) / (LENGTH / 2) dt               heading (Eq. B3)
    v       += a dt                                        speed (Eq. B4)

A crashed vehicle's action is overridden with delta = 0, a = -v (it coasts to a stop),
and a is limited so that |v| stays within ``MAX_SPEED`` = 40 m/s. IDM vehicles advance
their MOBIL timer by dt first (``IDMVehicle.step``). After moving, each vehicle's lane
is the closest lane (``RoadNetwork.get_closest_lane_index`` with heading).
"""

from __future__ import annotations

import torch

from drive_drail.sim.batched.road import LaneTable
from drive_drail.sim.batched.vehicles import VehicleState

MAX_SPEED_MPS = 40.0
"""highway-env ``Vehicle.MAX_SPEED`` [m/s]."""
MIN_SPEED_MPS = -40.0
"""highway-env ``Vehicle.MIN_SPEED`` [m/s]."""


def clip_actions(st: VehicleState, moving: torch.Tensor) -> None:
    """``Vehicle.clip_actions`` on the vehicle slots ``[:, :N]`` (mutates the stored action, like highway-env)."""
    n = st.n_vehicles
    speed = st.speed_mps[:, :n]
    crashed = st.crashed[:, :n] & moving
    steer = torch.where(crashed, torch.zeros_like(speed), st.steer_rad[:, :n])
    accel = torch.where(crashed, -1.0 * speed, st.accel_mps2[:, :n])
    accel = torch.where(speed > MAX_SPEED_MPS, torch.minimum(accel, 1.0 * (MAX_SPEED_MPS - speed)), accel)
    accel = torch.where(speed < MIN_SPEED_MPS, torch.maximum(accel, 1.0 * (MIN_SPEED_MPS - speed)), accel)
    st.steer_rad[:, :n] = torch.where(moving, steer, st.steer_rad[:, :n])
    st.accel_mps2[:, :n] = torch.where(moving, accel, st.accel_mps2[:, :n])


def bicycle_step(st: VehicleState, lanes: LaneTable, dt_s: float) -> None:
    """Advance every valid vehicle slot by ``dt_s`` in place (obstacles never move)."""
    n = st.n_vehicles
    moving = st.valid[:, :n] & st.is_vehicle[:, :n]
    idm = moving & st.is_idm[:, :n]
    st.timer_s[:, :n] = torch.where(idm, st.timer_s[:, :n] + dt_s, st.timer_s[:, :n])
    clip_actions(st, moving)

    x, y = st.x_m[:, :n], st.y_m[:, :n]
    psi, v = st.heading_rad[:, :n], st.speed_mps[:, :n]
    beta = torch.arctan(1 / 2 * torch.tan(st.steer_rad[:, :n]))  # Eq. B1
    x_new = x + v * torch.cos(psi + beta) * dt_s  # Eq. B2
    y_new = y + v * torch.sin(psi + beta) * dt_s
    hit = st.has_impact[:, :n] & moving
    x_new = torch.where(hit, x_new + st.impact_x_m[:, :n], x_new)
    y_new = torch.where(hit, y_new + st.impact_y_m[:, :n], y_new)
    psi_new = psi + v * torch.sin(beta) / (st.length_m[:, :n] / 2) * dt_s  # Eq. B3
    v_new = v + st.accel_mps2[:, :n] * dt_s  # Eq. B4

    st.x_m[:, :n] = torch.where(moving, x_new, x)
    st.y_m[:, :n] = torch.where(moving, y_new, y)
    st.heading_rad[:, :n] = torch.where(moving, psi_new, psi)
    st.speed_mps[:, :n] = torch.where(moving, v_new, v)
    st.crashed[:, :n] |= hit
    st.has_impact[:, :n] &= ~hit
    lane = lanes.closest_lane(st.x_m[:, :n], st.y_m[:, :n], st.heading_rad[:, :n])
    st.lane[:, :n] = torch.where(moving, lane, st.lane[:, :n])
