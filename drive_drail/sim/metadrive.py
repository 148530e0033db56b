"""The MetaDrive adapter: a scenario's MetaDrive environment behind the spec interface.

Runs MetaDrive 0.4.3 headless and state-only (``use_render=False``, no image
observation); :mod:`drive_drail.sim.metadrive_assets` makes that work without MetaDrive's
render assets and without its asset download.

Frames. MetaDrive's world frame is right-handed: ``vehicle.position`` is Panda3D's (x, y)
unchanged, ``heading_theta`` is counter-clockwise from +x in rad, positive steering turns
left, and the first block of every procedural (PG) map runs along +x. So it IS the spec
frame; no mirroring. Velocities are the spec's convention (as in the highway adapter and
the converter): ``speed * [cos(heading), sin(heading)]`` with the signed speed
``speed = velocity . [cos(heading), sin(heading)]`` of the physics body.

Lanes. MetaDrive lanes are ``(from_node, to_node, id)``; on every road segment id 0 is
the LEFTMOST lane in the driving direction (checked on the first block: lane 0 lies at
the largest y), which is the spec's convention, so ``lane_index = id`` unchanged.
``lane_count`` is the number of lanes of that segment (an on-ramp's acceleration lane
counts, as in highway-env). ``lane_offset_m`` is measured geometrically, + = left, from
the lane centre at the vehicle's longitudinal coordinate (MetaDrive's own ``lateral`` is
+ = right); ``lane_heading_rad = lane.heading_theta_at(longitudinal)``. A vehicle's lane
is its navigation's current lane (the ego's lies on its route).

Actions (:func:`physical_to_metadrive`, :func:`metadrive_to_physical`). MetaDrive's
action is ``[steering, throttle_brake]`` in [-1, 1]^2 (``BaseVehicle._set_action``):

- the front wheels turn by ``delta_md = steering * max_steering`` (the vehicle config's
  ``max_steering``, in degrees, 40 for the default car), + = left. The spec's ``steer_rad`` is
  the front-wheel angle of highway-env's bicycle model, whose reference point is the centre of
  a car of wheelbase = its length L: yaw rate ``v sin(beta) / (L / 2)`` with
  ``beta = arctan(tan(steer_rad) / 2)``. MetaDrive's car turns on its real, shorter wheelbase
  ``W`` (front + rear, 2.47 m against L = 4.52 m), yaw rate ``v tan(delta_md) / W``, so the same
  wheel angle turns it ~1.8x faster. The map equates the two yaw rates:
  ``tan(delta_md) = (2 W / L) sin(beta)`` (:func:`spec_to_wheel_rad`), and back
  (:func:`wheel_to_spec_rad`). Measured, the car then turns at 0.95-0.98 of the spec's rate at
  5-20 m/s (the tyres' understeer), so logs converted with the spec's model recover the
  applied steering;
- ``throttle_brake > 0`` applies an engine force ``throttle_brake * max_engine_force`` [N]
  at each of the 4 wheels: ``accel = throttle_brake * 4 * max_engine_force / mass``
  (2.73 to 3.09 m/s^2 at full throttle for the default car, whose engine force is drawn
  in [750, 850] N per episode); the engine cuts out above ``max_speed_km_h`` (80 km/h);
- ``throttle_brake < 0`` sets Bullet's brake, a per-physics-step impulse limit of
  ``|throttle_brake| * max_brake_force`` [N s] at each wheel:
  ``accel = throttle_brake * 4 * max_brake_force / (mass * physics_world_step_size)``
  (14.5 to 33 m/s^2 nominal at full brake, brake force drawn in [80, 180] N s; the
  spec's -5 m/s^2 floor is reached near -0.3, well inside the tyres' grip); the car
  brakes to a standstill and never reverses;
- ``throttle_brake == 0`` exactly coasts with MetaDrive's rolling-resistance brake 2.0:
  ``-4 * 2 / (mass * dt)``, -0.36 m/s^2 at 50 Hz. The forward map therefore sends
  ``accel_mps2 <= 0`` to the brake branch (``accel == 0`` -> a vanishing brake, not to
  the coasting value).

These are the ego's own numbers, read from its config every episode (:class:`VehicleLimits`);
the test checks the map against measured accelerations and yaw rates. Spec actions
outside the car's range are clipped to it. Actions are held for
``decision_repeat = simulation_frequency_hz // policy_frequency_hz`` physics steps of
``physics_world_step_size = 1 / simulation_frequency_hz`` s.

Scene. The ego, every other vehicle MetaDrive has spawned (active traffic, traffic
parked until its block is triggered, stalled vehicles) and every static traffic object
(cones, warnings, barriers), as vehicles; :func:`drive_drail.spec.observe_batch` applies
its own radius. One helper, :meth:`MetaDriveAdapter.frame_rows`, extracts these states
for both :meth:`MetaDriveAdapter.scene` and the recorder, so logs and rollouts hold the
same float64 numbers. ``expert`` is True for the ego and for traffic that is driving
(triggered), False for parked traffic, stalled vehicles and objects.

Outcomes. ``crashed`` = MetaDrive's ``crash`` (vehicle, object, building, sidewalk or
human), ``offroad`` = ``out_of_road`` (which in MetaDrive includes crossing a solid
line), ``success`` from ``arrive_dest`` or the task's own criterion, see
:class:`MetaDriveAdapter`.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Callable

import gymnasium as gym
import numpy as np

from drive_drail import spec
from drive_drail.scenario import Scenario, ScenarioError, did_you_mean
from drive_drail.sim import base
from drive_drail.sim.metadrive_assets import state_only_engine
from drive_drail.sim.rows import STATE_COLUMNS, FrameRows, scene_from_rows

ENV_IDS = ("MetaDriveEnv",)
"""Scenario ``env_id`` values this adapter runs (MetaDrive's procedural-map environment)."""

ADAPTER_KEYS: dict[str, tuple[object, str]] = {
    "ego_on_ramp": (False, "start the ego on the first on-ramp ('r' block) of the map instead of the first block"),
    "stall_distance_m": ([60.0, 90.0], "stop: uniform range of the distance from the ego to the stalled vehicle [m]"),
}
"""Settings the adapter understands on top of MetaDrive's own config keys: key -> (default, doc)."""

RESERVED_CONFIG_KEYS = {
    "use_render": "the adapter runs MetaDrive headless (see sim/metadrive_assets.py)",
    "image_observation": "the adapter builds the spec observation itself",
    "agent_observation": "the adapter builds the spec observation itself",
    "manual_control": "the adapter drives the ego",
    "agent_policy": "the adapter drives the ego",
    "physics_world_step_size": "set by simulation_frequency_hz",
    "decision_repeat": "set by simulation_frequency_hz // policy_frequency_hz",
    "horizon": "set by episode_seconds",
    "start_seed": "set by the scenario's seeds",
    "num_scenarios": "set by the scenario's seeds",
    "num_agents": "the adapter drives exactly one ego",
    "is_multi_agent": "the adapter drives exactly one ego",
}
"""MetaDrive config keys a scenario may not set, and why."""

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


# --------------------------------------------------------------------------------------
# State extraction: the ONE place MetaDrive objects become spec-frame numbers
# --------------------------------------------------------------------------------------

_FLOAT_COLUMNS = ("x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m", "lane_offset_m", "lane_heading_rad")


class Track:
    """A stable handle on one MetaDrive object for one episode (the recorder keys tracks by it).

    ``crashed`` becomes True, and stays True, once the object is seen in a crash.
    """

    __slots__ = ("obj", "crashed", "__weakref__")

    def __init__(self, obj):
        self.obj = obj
        self.crashed = False


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


@cache
def _object_classes() -> tuple[type, type]:
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
def _is_vehicle(kind: type) -> bool:
    return issubclass(kind, _object_classes()[0])


def _heading_rad(obj) -> float:
    """``obj.heading_theta`` in (-pi, pi], recomputed from the scene node on Python floats
    (bitwise equal; ~0.5 us against 2.4-5 us). A vehicle's node is turned 90 degrees from its heading."""
    h = _wrap_to_pi(obj.origin.getH() / 180 * math.pi)
    return _wrap_to_pi(h + math.pi / 2) if _is_vehicle(type(obj)) else h


def _kinematics(obj) -> tuple[float, float, float, float, float]:
    """``(x_m, y_m, vx_mps, vy_mps, heading_rad)`` of a MetaDrive object, the velocity along its
    heading (MetaDrive's body velocity carries a little sideslip the spec does not model).

    Reads what ``obj.position``, ``obj.velocity`` and ``obj.heading_theta`` return (the scene
    node's x, y and heading, the rigid body's vx, vy) without their wrapper objects: this runs
    for every object every step."""
    pos = obj.origin.getPos()
    h = _heading_rad(obj)
    ch, sh = math.cos(h), math.sin(h)
    vel = obj._body.getLinearVelocity()  # the node ``obj.body`` wraps, read without the wrapper lookup
    speed = vel[0] * ch + vel[1] * sh  # signed speed along the heading
    return pos[0], pos[1], speed * ch, speed * sh, h


def _speed_mps(obj) -> float:
    """``obj.speed`` (planar speed, clipped at 0 and 1e5 m/s) without its wrapper lookups."""
    vel = obj._body.getLinearVelocity()
    return min(max(math.sqrt(vel[0] ** 2 + vel[1] ** 2), 0.0), 100000.0)


@cache
def _is_scene_object(kind: type) -> bool:
    """Whether objects of this class belong in the scene (vehicles and traffic objects)."""
    return issubclass(kind, _object_classes())


def _crashed(obj) -> bool:
    return bool(
        getattr(obj, "crash_vehicle", False)
        or getattr(obj, "crash_object", False)
        or getattr(obj, "crash_building", False)
        or getattr(obj, "crash_human", False)
        or getattr(obj, "crash_sidewalk", False)
    )


# --------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------

SPAWN_CLEARANCE_M = 5.0
"""Free road kept ahead of and behind the ego's bumpers at reset, in its lane [m] (:meth:`MetaDriveAdapter._clear_spawn`)."""

SimStepHook = Callable[["MetaDriveAdapter"], None]
_ENGINE_OWNER: "weakref.ref[MetaDriveAdapter] | None" = None
"""MetaDrive allows one engine per process: the adapter that holds it."""


def _check_engine_free(adapter: "MetaDriveAdapter") -> None:
    """MetaDrive runs one engine per process: refuse clearly if another adapter holds it."""
    owner = _ENGINE_OWNER() if _ENGINE_OWNER is not None else None
    if owner is not None and owner is not adapter:
        raise RuntimeError(
            "MetaDrive runs one engine per process and another MetaDrive adapter holds it: close that one first "
            "(or run this one in its own process, e.g. a SubprocVecEnv worker)"
        )


class MetaDriveAdapter(base.SpecAdapter):
    """A scenario's MetaDrive environment with the spec observation and action (see ``sim/base.py``).

    - observation: ``spec.observe(self.scene())``, shape ``[OBS_DIM]``, float32;
    - action: ``[-1, 1]^2`` -> ``[accel_mps2, steer_rad]`` (+ = left) -> MetaDrive's
      ``[steering, throttle_brake]`` with the ego's limits, held for ``decision_repeat``
      physics steps;
    - reward: 0 (imitation learning brings its own);
    - terminated: crash, off-road, MetaDrive's ``arrive_dest``, or the task's route done
      (lane_change: ``route_length_m`` driven along the route);
    - truncated: the time limit ``episode_seconds`` was reached without termination;
    - info (every step): crashed, offroad, success (True only on the final step of a
      successful episode), route_completion, speed_mps, lane_index, time_s, arrive_dest,
      episode_seed, action_physical (the applied ``[accel_mps2, steer_rad]`` after the car's
      limits) and task extras (lane_changes; merge: merged; stop: gap_m, stopped_s).

    Route completion: lane_change: distance driven along the navigation route over
    ``route_length_m``; merge: MetaDrive's own ``route_completion`` (to the map's end);
    stop: progress from the start to the stop zone (``stopped_before_m`` behind the
    stalled vehicle). Success: no crash, no off-road, completion at least
    ``min_route_completion`` (or ``arrive_dest``), plus merge: on a main lane if
    ``require_merge``; stop: the gap criteria of :class:`drive_drail.scenario.SuccessCriteria`.

    Episode seeds work as in the highway adapter: ``reset(seed=s)`` plays MetaDrive's
    scenario ``s`` (map and traffic), ``reset()`` takes the split's next seed. MetaDrive
    holds one engine per process, so one adapter at a time: close it before making another.
    """

    simulator = "metadrive"
    label = "MetaDrive"
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, scenario: Scenario, seed: int = 0, split: str = "train"):
        super().__init__(scenario, split)

        self.md_config, self.adapter_config = metadrive_config(scenario, split)
        from metadrive.envs import MetaDriveEnv

        _check_engine_free(self)
        with state_only_engine():
            self._md = MetaDriveEnv(self.md_config)

        self._seed_order = scenario.seed_order(split, seed)
        self._episodes = 0
        self._hooks: list[SimStepHook] = []
        self._tracks: dict[str, Track] = {}
        self._closed = False
        self.sim_frame = 0
        self.policy_steps = 0
        self.episode_seed: int | None = None
        self.limits: VehicleLimits | None = None
        self._ego = None
        self._engine = None
        self._canvas = None
        self.stalled = None

    # ---------------------------------------------------------------- MetaDrive access

    @property
    def md_env(self):
        """The wrapped ``MetaDriveEnv`` (experts and the benchmark read it)."""
        return self._md

    @property
    def engine(self):
        return self._md.engine if self._engine is None else self._engine

    @property
    def ego(self):
        """The ego vehicle of this episode (MetaDrive's ``agent``, looked up once per reset: the
        lookup walks MetaDrive's agent manager and the adapter reads the ego ~10 times a step)."""
        return self._ego

    @property
    def road_network(self):
        return self._md.current_map.road_network

    def add_sim_step_hook(self, hook: SimStepHook) -> None:
        """Call ``hook(adapter)`` after every physics step, e.g. to record states."""
        self._hooks.append(hook)

    def remove_sim_step_hook(self, hook: SimStepHook) -> None:
        self._hooks.remove(hook)

    # ---------------------------------------------------------------- gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        global _ENGINE_OWNER
        super().reset(seed=seed)
        if self._closed:
            raise RuntimeError("this MetaDrive adapter is closed")
        _check_engine_free(self)
        if seed is None:
            seed = self._seed_order[self._episodes % len(self._seed_order)]
        if seed not in self._md_seed_range():
            raise ValueError(f"episode seed {seed} is not one of the {self.split} seeds of {self.scenario.source}")
        self._episodes += 1
        self.episode_seed = int(seed)
        with state_only_engine():
            self._md.reset(seed=self.episode_seed)
        _ENGINE_OWNER = weakref.ref(self)
        self._engine = self._md.engine  # MetaDriveEnv.engine re-imports its getter on every read (~2 us)
        self._ego = self._md.agent
        self._canvas = None  # the top-down road of this episode's map, painted at the first render_rgb
        self._clear_spawn()
        self._install_physics_hook()
        self._tracks = {}
        self.limits = VehicleLimits.of(self.ego, self.sim_dt_s)
        self.sim_frame = 0
        self.policy_steps = 0
        self._md_info: dict = {}
        self._start_task()
        self._last_action = np.zeros(spec.ACTION_DIM)
        return self._observe(), self._info(final=False)

    def step(self, action_unit) -> tuple[np.ndarray, float, bool, bool, dict]:
        accel_mps2, steer_rad = spec.action_to_physical_one(*np.asarray(action_unit, dtype=np.float64).reshape(spec.ACTION_DIM).tolist())
        md_action = _physical_to_metadrive(accel_mps2, steer_rad, self.limits)  # one action: the scalar maps
        _, _, md_terminated, _, self._md_info = self._md.step(np.array(md_action))  # decision_repeat physics steps
        self.policy_steps += 1
        self._last_action = np.array(_metadrive_to_physical(*md_action, self.limits))
        self._update_task()

        crashed, offroad = self._crashed_offroad()
        completion = self._route_completion()
        terminated = bool(md_terminated or crashed or offroad or self._arrived() or (self.scenario.task == "lane_change" and completion >= 1.0))
        truncated = not terminated and self.policy_steps >= self.scenario.max_policy_steps
        info = self._info(final=terminated or truncated, outcome=(crashed, offroad, completion))
        return self._observe(), 0.0, terminated, truncated, info

    def render_rgb(self) -> np.ndarray:
        """A top-down frame around the ego, ``[H, W, 3]`` uint8, drawn from the map's lanes and the
        vehicles' boxes (:mod:`drive_drail.sim.topdown`): MetaDrive's own renderers need assets
        this state-only engine does not load. Ego green, traffic blue, a stalled car orange,
        anything crashed red."""
        from drive_drail.sim import topdown

        if self._canvas is None:  # one map per episode: paint its road once
            self._canvas = topdown.TopDownCanvas(lane_outlines(self.road_network))
        boxes = []
        for o in self._objects():
            x, y, _, _, heading = _kinematics(o)
            color = (topdown.CRASHED if _crashed(o) else topdown.EGO if o is self.ego else topdown.STALLED
                     if getattr(o, "break_down", False) else topdown.TRAFFIC if _is_vehicle(type(o)) else topdown.OBJECT)
            boxes.append(topdown.Box(x, y, heading, float(o.LENGTH), float(o.WIDTH), color))
        ex, ey, *_ = _kinematics(self.ego)
        return self._canvas.frame((ex, ey), boxes)

    def scene(self) -> spec.Scene:
        """The current scene of the ego (every vehicle and object MetaDrive has spawned)."""
        return scene_from_rows(self.frame_rows().columns)

    def frame_rows(self) -> FrameRows:
        """All objects now, ego first, as record-format state columns."""
        ego, objects = self.ego, self._objects()
        active = {id(v) for v in self.engine.traffic_manager.traffic_vehicles}
        frames, on_ramp_lanes = self._lane_frames, self._on_ramp_lanes
        states, lanes, flags, tracks = [], [], [], []  # per row: 9 floats, 2 ints, 2 bools, its Track
        for o in objects:
            x, y, vx, vy, h = _kinematics(o)
            lane = self._lane_of(o)
            index, count, offset, lane_heading = frames.frame(lane, x, y) if lane is not None else (-1, 0, 0.0, h)
            states.append((x, y, vx, vy, h, o.LENGTH, o.WIDTH, offset, lane_heading))
            lanes.append((index, count))
            is_expert = _is_vehicle(type(o)) and (o is ego or id(o) in active) and not getattr(o, "break_down", False)
            flags.append((lane is not None and lane.index in on_ramp_lanes, is_expert))
            track = self._tracks.get(o.name)
            if track is None:
                track = self._tracks[o.name] = Track(o)
            if not track.crashed:
                track.crashed = _crashed(o)
            tracks.append(track)
        f = np.array(states, dtype=np.float64).reshape(-1, 9)
        k = np.array(lanes, dtype=np.int64).reshape(-1, 2)
        b = np.array(flags, dtype=bool).reshape(-1, 2)
        columns = dict(zip(_FLOAT_COLUMNS, f.T))
        columns.update(lane_index=k[:, 0], lane_count=k[:, 1], on_ramp=b[:, 0], expert=b[:, 1])
        return FrameRows(objects=tracks, columns={c: columns[c] for c in STATE_COLUMNS})

    def close(self) -> None:
        global _ENGINE_OWNER
        if not self._closed:
            self._md.close()
            self._closed = True
            self._engine = None
            if _ENGINE_OWNER is not None and _ENGINE_OWNER() is self:
                _ENGINE_OWNER = None

    # ---------------------------------------------------------------- internals

    def _md_seed_range(self) -> range:
        start = int(self.md_config["start_seed"])
        return range(start, start + int(self.md_config["num_scenarios"]))

    def _observe(self) -> np.ndarray:
        """``observe_rows(frame_rows().columns)`` reading only what the observation uses: every
        object's kinematics and lane index, and the ego lane's geometry (no tracks, flags or
        arrays: this runs every step, and MetaDrive itself steps in ~1.5-3.5 ms)."""
        objects = self._objects()
        x, y, vx, vy, h = (list(c) for c in zip(*map(_kinematics, objects)))
        lanes = [self._lane_of(o) for o in objects]
        lane_index = [lane.index[2] if lane is not None else -1 for lane in lanes]
        if lanes[0] is not None:
            lane_index[0], count, offset, lane_heading = self._lane_frames.frame(lanes[0], x[0], y[0])
        else:
            count, offset, lane_heading = 0, 0.0, h[0]
        return spec.observe_one(x, y, vx, vy, h, lane_index, 0, count, offset, lane_heading)

    def _objects(self) -> list:
        """The ego, then every other vehicle and traffic object MetaDrive has spawned."""
        ego = self.ego
        return [ego] + [o for o in self._engine.get_objects().values() if o is not ego and _is_scene_object(type(o))]

    def _lane_of(self, obj):
        navigation = getattr(obj, "navigation", None)
        if navigation is not None and navigation.current_lane is not None:
            return navigation.current_lane
        return getattr(obj, "lane", None)  # static objects remember the lane they were placed on (or None)

    def _install_physics_hook(self) -> None:
        """Wrap this engine's ``step_physics_world`` (the instance, not the class) to count frames and call hooks."""
        engine = self.engine
        original = type(engine).step_physics_world.__get__(engine)

        def step_physics_world() -> None:
            original()
            self.sim_frame += 1
            for hook in self._hooks:
                hook(self)

        engine.step_physics_world = step_physics_world

    def _crashed_offroad(self) -> tuple[bool, bool]:
        info = self._md_info
        crashed = bool(info.get("crash", False)) or _crashed(self.ego)
        return crashed, bool(info.get("out_of_road", False))

    def _arrived(self) -> bool:
        return bool(self._md_info.get("arrive_dest", False))

    # Task progress.
    def _start_task(self) -> None:
        ego, task, success = self.ego, self.scenario.task, self.scenario.success
        self._on_ramp_lanes = on_ramp_lanes(self._md.current_map)
        self._lane_frames = LaneFrames(self.road_network)  # this episode's map (read every step)
        self._lane_changes = 0
        self._last_lane = ego.lane_index  # the ego's (from, to, id) lane after the latest step
        self._stopped_s = 0.0
        self._travelled_start_m = float(ego.navigation.travelled_length)
        if task == "stop":
            self.stalled, self._stall_lane = self._spawn_stalled_vehicle()
            self._gap_start_m = self._gap_now_m = self._gap_m()

    def _spawn_stalled_vehicle(self):
        """Stop task: a broken-down vehicle in the ego lane, ``stall_distance_m`` ahead along the route."""
        ego = self.ego
        lo, hi = self.adapter_config["stall_distance_m"]
        distance = float(np.random.default_rng(self.episode_seed).uniform(lo, hi))  # reproducible from the episode seed
        lane, longitudinal = lane_ahead(ego, distance)
        if lane is None:
            raise ScenarioError(self.scenario.source, f"the route is shorter than {distance:.0f} m: lengthen the map", key="env_config.map_config")
        manager = self.engine.traffic_manager  # it clears what it spawned at the next reset; it drives only its own traffic list
        vehicle_type = manager.random_vehicle_type()
        stalled = manager.spawn_object(vehicle_type, vehicle_config={"spawn_lane_index": lane.index, "spawn_longitude": float(longitudinal)})
        stalled.set_break_down()
        return stalled, lane

    def _clear_spawn(self) -> None:
        """Remove the traffic cars that start on top of (or within :data:`SPAWN_CLEARANCE_M` of) the
        ego. MetaDrive's traffic manager does not keep the ego's spawn lane free
        when the ego starts off its first block (an on-ramp): on 5 of 20 held-out merge seeds it
        placed a car overlapping the ego, a crash at the first step whatever the policy did."""
        ego, manager = self.ego, self.engine.traffic_manager
        ex, ey, _, _, heading = _kinematics(ego)
        c, s = math.cos(heading), math.sin(heading)
        blocking = []
        for vehicle in manager.traffic_vehicles:
            x, y, *_ = _kinematics(vehicle)
            ahead, left = (x - ex) * c + (y - ey) * s, -(x - ex) * s + (y - ey) * c
            if abs(left) < (ego.WIDTH + vehicle.WIDTH) / 2 + 0.5 and abs(ahead) < (ego.LENGTH + vehicle.LENGTH) / 2 + SPAWN_CLEARANCE_M:
                blocking.append(vehicle)
        if blocking:
            manager.clear_objects([v.id for v in blocking])
            # No public API for this: what the manager's own after_step does when it removes a car.
            manager._traffic_vehicles = [v for v in manager._traffic_vehicles if v not in blocking]
            ego.crash_vehicle = False  # the reset's contact check saw the removed car; MetaDrive re-checks every step

    def _update_task(self) -> None:
        lane = self.ego.lane_index  # read once a step: _info uses _last_lane
        if lane[:2] == self._last_lane[:2] and lane[2] != self._last_lane[2]:
            self._lane_changes += 1
        self._last_lane = lane
        if self.scenario.task == "stop":
            stopped = _speed_mps(self.ego) < self.scenario.success.max_final_speed_mps
            self._stopped_s = self._stopped_s + self.policy_dt_s if stopped else 0.0
            self._gap_now_m = self._gap_m()  # read by the route completion and the info of this step

    def _gap_m(self) -> float:
        """stop: bumper gap from the ego's front to the stalled vehicle's rear, along its (straight) lane [m]."""
        lane, ego, stalled = self._stall_lane, self.ego, self.stalled
        ego_pos, stalled_pos = ego.origin.getPos(), stalled.origin.getPos()  # the nodes' x, y: what ``position`` wraps
        s_ego = self._lane_frames.longitudinal_m(lane, ego_pos[0], ego_pos[1])
        s_stalled = self._lane_frames.longitudinal_m(lane, stalled_pos[0], stalled_pos[1])
        return float(s_stalled - s_ego - (ego.LENGTH + stalled.LENGTH) / 2)

    def _route_completion(self) -> float:
        task, success = self.scenario.task, self.scenario.success
        if task == "lane_change":
            driven = float(self.ego.navigation.travelled_length) - self._travelled_start_m
            done = driven / success.route_length_m
        elif task == "merge":
            done = float(self.ego.navigation.route_completion)
        else:
            span = self._gap_start_m - success.stopped_before_m
            done = (self._gap_start_m - self._gap_now_m) / span if span > 0 else 1.0
        return min(max(float(done), 0.0), 1.0)  # np.clip costs ~4 us on a scalar, every step

    def _info(self, final: bool, outcome: tuple[bool, bool, float] | None = None) -> dict:
        """The shared info keys; ``outcome = (crashed, offroad, route_completion)`` when the caller has them."""
        ego, task = self.ego, self.scenario.task
        crashed, offroad, completion = outcome or (*self._crashed_offroad(), self._route_completion())
        arrived = self._arrived()
        return base.step_info(
            self.scenario,
            final=final,
            crashed=crashed,
            offroad=offroad,
            route_completion=completion,
            speed_mps=_speed_mps(ego),
            lane_index=int(self._last_lane[2]),
            time_s=self.policy_steps * self.policy_dt_s,
            arrived=arrived,
            merged=(self._last_lane not in self._on_ramp_lanes) if task == "merge" else None,
            gap_m=self._gap_now_m if task == "stop" else None,
            stopped_s=self._stopped_s if task == "stop" else None,
            arrive_dest=arrived,
            episode_seed=self.episode_seed,
            action_physical=self._last_action.copy(),
            lane_changes=self._lane_changes,
        )


# --------------------------------------------------------------------------------------
# Map helpers
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------


def metadrive_config(scenario: Scenario, split: str) -> tuple[dict, dict]:
    """``(MetaDriveEnv config, adapter settings)`` of a split, with scenario keys checked.

    Scenario ``env_config`` keys are MetaDrive's own (``MetaDriveEnv.default_config()``)
    or the adapter's (:data:`ADAPTER_KEYS`); reserved keys raise.
    """
    if scenario.env_id not in ENV_IDS:
        raise ScenarioError(scenario.source, f"unknown MetaDrive environment '{scenario.env_id}'{did_you_mean(scenario.env_id, ENV_IDS)} (available: {', '.join(ENV_IDS)})", key="env_id")
    from metadrive.envs import MetaDriveEnv

    known = MetaDriveEnv.default_config()
    for where, overrides in [("env_config", scenario.env_config), *((f"splits.{k}", v) for k, v in scenario.splits.items())]:
        for key in overrides:
            if key in RESERVED_CONFIG_KEYS:
                raise ScenarioError(scenario.source, f"reserved: {RESERVED_CONFIG_KEYS[key]}", key=f"{where}.{key}")
            if key not in known and key not in ADAPTER_KEYS:
                options = [k for k in [*known, *ADAPTER_KEYS] if k not in RESERVED_CONFIG_KEYS]
                raise ScenarioError(scenario.source, f"not a setting of MetaDrive's {scenario.env_id} or the adapter{did_you_mean(key, options)}", key=f"{where}.{key}")
    merged = scenario.env_config_for(split)
    adapter = {k: merged.pop(k, default) for k, (default, _doc) in ADAPTER_KEYS.items()}

    seeds = scenario.seeds_for(split)
    sensors_off = {
        "lidar": {"num_lasers": 0, "distance": 50.0},  # no rays; MetaDrive's IDM still finds neighbours by broad phase
        "side_detector": {"num_lasers": 0},
        "lane_line_detector": {"num_lasers": 0},
        "show_navi_mark": False,
        "show_dest_mark": False,
        "show_line_to_dest": False,
        "show_line_to_navi_mark": False,
    }
    vehicle_config = {**sensors_off, **merged.pop("vehicle_config", {})}
    config = {
        **merged,
        "use_render": False,
        "image_observation": False,
        "agent_observation": NullObservation,
        "physics_world_step_size": 1.0 / scenario.simulation_frequency_hz,
        "decision_repeat": scenario.frames_per_action,
        "horizon": None,
        "start_seed": min(seeds),
        "num_scenarios": max(seeds) - min(seeds) + 1,
        "log_level": merged.get("log_level", logging.ERROR),
        "vehicle_config": vehicle_config,
    }
    if adapter["ego_on_ramp"]:
        try:
            spawn = ramp_spawn_lane(config.get("map_config", {}))
        except ValueError as exc:
            raise ScenarioError(scenario.source, str(exc), key="env_config.ego_on_ramp") from None
        config["random_spawn_lane_index"] = False
        config["agent_configs"] = {"default_agent": {"use_special_color": True, "spawn_lane_index": spawn}}
    return config, adapter


def _null_observation_class():
    """MetaDrive's observation is replaced by a constant: the adapter computes the spec observation."""
    from metadrive.obs.observation_base import BaseObservation

    class _NullObservation(BaseObservation):
        @property
        def observation_space(self):
            return gym.spaces.Box(0.0, 1.0, (1,), np.float32)

        def observe(self, *args, **kwargs):
            return np.zeros(1, np.float32)

    return _NullObservation


class _LazyNullObservation:
    """Builds MetaDrive's observation class on first use, so importing this module stays cheap."""

    _cls = None

    def __new__(cls, config):
        if cls._cls is None:
            cls._cls = _null_observation_class()
        return cls._cls(config)


NullObservation = _LazyNullObservation


def make_env(scenario: Scenario, seed: int = 0, split: str = "train") -> MetaDriveAdapter:
    """The adapter for a MetaDrive scenario (see :class:`MetaDriveAdapter` for seeds and splits)."""
    return MetaDriveAdapter(scenario, seed=seed, split=split)
