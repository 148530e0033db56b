"""The action map: spec ``(accel_mps2, steer_rad)`` <-> MetaDrive's ``[steering, throttle_brake]``.

The derivation (wheelbase, engine and brake forces, the rolling brake) is in the package
docstring, :mod:`drive_drail.sim.metadrive`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from drive_drail import spec

NO_BRAKE_EPS = 1e-9
"""|throttle_brake| sent for ``accel_mps2 == 0``: a vanishing brake instead of MetaDrive's coasting brake."""

ROLLING_BRAKE = 2.0
"""MetaDrive's brake impulse limit per wheel while not braking (``_apply_throttle_brake``) [N s]."""

WHEELS = 4
"""MetaDrive applies engine force and brake at all four wheels."""


# --------------------------------------------------------------------------------------
# The action map: spec (accel_mps2, steer_rad) <-> MetaDrive [steering, throttle_brake]
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VehicleLimits:
    """The ego's physical limits, from its MetaDrive config (see the module docstring)."""

    max_steering_rad: float
    """MetaDrive front-wheel angle at ``steering = 1`` [rad]."""
    wheelbase_m: float
    """Front + rear wheelbase of the MetaDrive car [m]."""
    length_m: float
    """Car length [m]: the wheelbase of the spec's (highway-env's) bicycle model."""
    max_accel_mps2: float
    """Acceleration at full throttle, ``4 * max_engine_force / mass`` [m/s^2]."""
    max_brake_mps2: float
    """Deceleration at full brake, ``4 * max_brake_force / (mass * dt)`` [m/s^2], > 0."""
    coast_mps2: float
    """Deceleration at ``throttle_brake == 0``, ``4 * 2.0 / (mass * dt)`` [m/s^2], > 0."""
    max_speed_mps: float
    """Above this speed the engine gives no force [m/s]."""

    @classmethod
    def of(cls, vehicle, physics_dt_s: float) -> "VehicleLimits":
        """The limits of a MetaDrive ``BaseVehicle`` stepped at ``physics_dt_s``."""
        c = vehicle.config
        mass = float(c["mass"]) if c["mass"] else float(vehicle.MASS)
        return cls(
            max_steering_rad=math.radians(float(vehicle.max_steering)),
            wheelbase_m=float(vehicle.FRONT_WHEELBASE + vehicle.REAR_WHEELBASE),
            length_m=float(vehicle.LENGTH),
            max_accel_mps2=WHEELS * float(c["max_engine_force"]) / mass,
            max_brake_mps2=WHEELS * float(c["max_brake_force"]) / (mass * physics_dt_s),
            coast_mps2=WHEELS * ROLLING_BRAKE / (mass * physics_dt_s),
            max_speed_mps=float(c["max_speed_km_h"]) / 3.6,
        )


    @cached_property  # read on every step by physical_to_metadrive; the limits never change
    def max_spec_steer_rad(self) -> float:
        """The spec steering angle at MetaDrive's full lock [rad]."""
        return wheel_to_spec_rad(self.max_steering_rad, self)


def spec_to_wheel_rad(steer_rad: float, limits: VehicleLimits) -> float:
    """Spec steering (bicycle model on wheelbase L) -> MetaDrive front-wheel angle with the same yaw rate [rad]."""
    sin_beta = math.sin(math.atan(0.5 * math.tan(steer_rad)))
    return math.atan(2.0 * limits.wheelbase_m / limits.length_m * sin_beta)


def wheel_to_spec_rad(wheel_rad: float, limits: VehicleLimits) -> float:
    """Inverse of :func:`spec_to_wheel_rad` (the wheel angle is within MetaDrive's lock, so ``|sin(beta)| < 1``)."""
    sin_beta = _clip(limits.length_m * math.tan(wheel_rad) / (2.0 * limits.wheelbase_m), -1.0 + 1e-12, 1.0 - 1e-12)
    return math.atan(2.0 * math.tan(math.asin(sin_beta)))


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _per_action(one: Callable[[float, float, VehicleLimits], tuple[float, float]]):
    """Lift a map of ONE action (two floats: the adapter's per-step case, where numpy's per-call
    cost would be most of the work) to arrays of shape ``[..., 2]``."""

    def mapped(action: np.ndarray, limits: VehicleLimits) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        rows = a.reshape(-1, 2).tolist()
        return np.array([one(x, y, limits) for x, y in rows], dtype=np.float64).reshape(a.shape)

    mapped.__name__, mapped.__doc__ = one.__name__.lstrip("_"), f"{one.__doc__} Shape ``[..., 2]``."
    return mapped


def _physical_to_metadrive(accel_mps2: float, steer_rad: float, limits: VehicleLimits) -> tuple[float, float]:
    """``[accel_mps2, steer_rad]`` -> MetaDrive ``[steering, throttle_brake]``, clipped to [-1, 1]."""
    steer_rad = _clip(steer_rad, -limits.max_spec_steer_rad, limits.max_spec_steer_rad)  # full lock (< pi/2, where tan turns)
    steering = _clip(spec_to_wheel_rad(steer_rad, limits) / limits.max_steering_rad, -1.0, 1.0)
    if accel_mps2 > 0.0:
        throttle_brake = accel_mps2 / limits.max_accel_mps2
    else:
        throttle_brake = min(accel_mps2 / limits.max_brake_mps2, -NO_BRAKE_EPS)  # accel == 0 -> no brake, not coasting
    return steering, _clip(throttle_brake, -1.0, 1.0)


def _metadrive_to_physical(steering: float, throttle_brake: float, limits: VehicleLimits) -> tuple[float, float]:
    """MetaDrive ``[steering, throttle_brake]`` -> ``[accel_mps2, steer_rad]`` (clipped to [-1, 1] first)."""
    steering, tb = _clip(steering, -1.0, 1.0), _clip(throttle_brake, -1.0, 1.0)
    accel = tb * limits.max_accel_mps2 if tb > 0.0 else tb * limits.max_brake_mps2 if tb < 0.0 else -limits.coast_mps2
    return accel, wheel_to_spec_rad(steering * limits.max_steering_rad, limits)


physical_to_metadrive = _per_action(_physical_to_metadrive)
metadrive_to_physical = _per_action(_metadrive_to_physical)


def spec_unit_to_metadrive(action_unit: np.ndarray, limits: VehicleLimits) -> np.ndarray:
    """A policy action in [-1, 1]^2 -> MetaDrive's action (through physical units)."""
    return physical_to_metadrive(spec.action_to_physical(action_unit), limits)


def metadrive_to_spec_unit(action_metadrive: np.ndarray, limits: VehicleLimits) -> np.ndarray:
    """MetaDrive's action -> the policy action in [-1, 1]^2 that reproduces it (clipped to the spec ranges)."""
    physical = metadrive_to_physical(action_metadrive, limits)
    lo = np.array([spec.ACCEL_RANGE_MPS2[0], spec.STEER_RANGE_RAD[0]])
    hi = np.array([spec.ACCEL_RANGE_MPS2[1], spec.STEER_RANGE_RAD[1]])
    return spec.action_to_unit(np.clip(physical, lo, hi))
