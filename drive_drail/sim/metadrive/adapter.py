"""The gym adapter: a scenario's MetaDrive environment behind the spec interface (package docstring)."""

from __future__ import annotations

import math
import weakref
from typing import Callable

import numpy as np

from drive_drail import spec, tasks
from drive_drail.scenario import Scenario, ScenarioError
from drive_drail.sim import base
from drive_drail.sim.metadrive.actions import VehicleLimits, _metadrive_to_physical, _physical_to_metadrive
from drive_drail.sim.metadrive.assets import state_only_engine
from drive_drail.sim.metadrive.config import metadrive_config
from drive_drail.sim.metadrive.lanes import LaneFrames, lane_ahead, lane_outlines, on_ramp_lanes
from drive_drail.sim.metadrive.objects import FLOAT_COLUMNS, Track, in_crash, is_scene_object, is_vehicle, kinematics, speed_mps
from drive_drail.sim.rows import STATE_COLUMNS, FrameRows, scene_from_rows

SPAWN_CLEARANCE_M = 5.0
"""Free road kept ahead of and behind the ego's bumpers at reset, in its lane [m] (:meth:`MetaDriveAdapter._clear_spawn`)."""

SimStepHook = Callable[["MetaDriveAdapter"], None]
_ENGINE_OWNER: "weakref.ref[MetaDriveAdapter] | None" = None
"""MetaDrive allows one engine per process: the adapter that holds it."""


def check_engine_free(adapter: "MetaDriveAdapter") -> None:
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

        check_engine_free(self)
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
        check_engine_free(self)
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
        m = tasks.Measurements.one(crashed=crashed, offroad=offroad, route_completion=completion)
        terminated = bool(md_terminated or self._arrived() or tasks.task(self.scenario.task).terminated("metadrive", m)[0])
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
            x, y, _, _, heading = kinematics(o)
            color = (topdown.CRASHED if in_crash(o) else topdown.EGO if o is self.ego else topdown.STALLED
                     if getattr(o, "break_down", False) else topdown.TRAFFIC if is_vehicle(type(o)) else topdown.OBJECT)
            boxes.append(topdown.Box(x, y, heading, float(o.LENGTH), float(o.WIDTH), color))
        ex, ey, *_ = kinematics(self.ego)
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
            x, y, vx, vy, h = kinematics(o)
            lane = self._lane_of(o)
            index, count, offset, lane_heading = frames.frame(lane, x, y) if lane is not None else (-1, 0, 0.0, h)
            states.append((x, y, vx, vy, h, o.LENGTH, o.WIDTH, offset, lane_heading))
            lanes.append((index, count))
            is_expert = is_vehicle(type(o)) and (o is ego or id(o) in active) and not getattr(o, "break_down", False)
            flags.append((lane is not None and lane.index in on_ramp_lanes, is_expert))
            track = self._tracks.get(o.name)
            if track is None:
                track = self._tracks[o.name] = Track(o)
            if not track.crashed:
                track.crashed = in_crash(o)
            tracks.append(track)
        f = np.array(states, dtype=np.float64).reshape(-1, 9)
        k = np.array(lanes, dtype=np.int64).reshape(-1, 2)
        b = np.array(flags, dtype=bool).reshape(-1, 2)
        columns = dict(zip(FLOAT_COLUMNS, f.T))
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
        x, y, vx, vy, h = (list(c) for c in zip(*map(kinematics, objects)))
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
        return [ego] + [o for o in self._engine.get_objects().values() if o is not ego and is_scene_object(type(o))]

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
        crashed = bool(info.get("crash", False)) or in_crash(self.ego)
        return crashed, bool(info.get("out_of_road", False))

    def _arrived(self) -> bool:
        return bool(self._md_info.get("arrive_dest", False))

    # Task progress.
    def _start_task(self) -> None:
        ego, task = self.ego, self.scenario.task
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
        ex, ey, _, _, heading = kinematics(ego)
        c, s = math.cos(heading), math.sin(heading)
        blocking = []
        for vehicle in manager.traffic_vehicles:
            x, y, *_ = kinematics(vehicle)
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
            self._stopped_s = float(tasks.stop.stopped_s(self._stopped_s, speed_mps(self.ego), self.policy_dt_s, self.scenario.success))
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
            speed_mps=speed_mps(ego),
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


def make_env(scenario: Scenario, seed: int = 0, split: str = "train") -> MetaDriveAdapter:
    """The adapter for a MetaDrive scenario (see :class:`MetaDriveAdapter` for seeds and splits)."""
    return MetaDriveAdapter(scenario, seed=seed, split=split)
