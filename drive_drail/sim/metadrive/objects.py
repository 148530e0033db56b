"""State extraction: the ONE place MetaDrive objects become spec-frame numbers.

MetaDrive is imported late, as everywhere in this package, so that importing it does not start
MetaDrive's asset check.
"""

from __future__ import annotations

import math
from functools import cache

FLOAT_COLUMNS = ("x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m", "lane_offset_m", "lane_heading_rad")


class Track:
    """A stable handle on one MetaDrive object for one episode (the recorder keys tracks by it).

    ``crashed`` becomes True, and stays True, once the object is seen in a crash.
    """

    __slots__ = ("obj", "crashed", "__weakref__")

    def __init__(self, obj):
        self.obj = obj
        self.crashed = False


@cache
def object_classes() -> tuple[type, type]:
    """MetaDrive's (vehicle, traffic object) base classes: the objects a scene holds (imported late,
    like all of MetaDrive, so that importing this module does not start MetaDrive's asset check)."""
    from metadrive.component.static_object.traffic_object import TrafficObject
    from metadrive.component.vehicle.base_vehicle import BaseVehicle

    return BaseVehicle, TrafficObject


def _wrap_to_pi(angle_rad: float) -> float:
    """MetaDrive's ``wrap_to_pi`` on a Python float: the same operations, without numpy (bitwise equal)."""
    angle_rad %= 2 * math.pi
    return angle_rad - 2 * math.pi if angle_rad > math.pi else angle_rad


@cache
def is_vehicle(kind: type) -> bool:
    return issubclass(kind, object_classes()[0])


def heading_rad_of(obj) -> float:
    """``obj.heading_theta`` in (-pi, pi], recomputed from the scene node on Python floats
    (bitwise equal; ~0.5 us against 2.4-5 us). A vehicle's node is turned 90 degrees from its heading."""
    h = _wrap_to_pi(obj.origin.getH() / 180 * math.pi)
    return _wrap_to_pi(h + math.pi / 2) if is_vehicle(type(obj)) else h


def kinematics(obj) -> tuple[float, float, float, float, float]:
    """``(x_m, y_m, vx_mps, vy_mps, heading_rad)`` of a MetaDrive object, the velocity along its
    heading (MetaDrive's body velocity carries a little sideslip the spec does not model).

    Reads what ``obj.position``, ``obj.velocity`` and ``obj.heading_theta`` return (the scene
    node's x, y and heading, the rigid body's vx, vy) without their wrapper objects: this runs
    for every object every step."""
    pos = obj.origin.getPos()
    h = heading_rad_of(obj)
    ch, sh = math.cos(h), math.sin(h)
    vel = obj._body.getLinearVelocity()  # the node ``obj.body`` wraps, read without the wrapper lookup
    speed = vel[0] * ch + vel[1] * sh  # signed speed along the heading
    return pos[0], pos[1], speed * ch, speed * sh, h


def speed_mps(obj) -> float:
    """``obj.speed`` (planar speed, clipped at 0 and 1e5 m/s) without its wrapper lookups."""
    vel = obj._body.getLinearVelocity()
    return min(max(math.sqrt(vel[0] ** 2 + vel[1] ** 2), 0.0), 100000.0)


@cache
def is_scene_object(kind: type) -> bool:
    """Whether objects of this class belong in the scene (vehicles and traffic objects)."""
    return issubclass(kind, object_classes())


def in_crash(obj) -> bool:
    return bool(
        getattr(obj, "crash_vehicle", False)
        or getattr(obj, "crash_object", False)
        or getattr(obj, "crash_building", False)
        or getattr(obj, "crash_human", False)
        or getattr(obj, "crash_sidewalk", False)
    )
