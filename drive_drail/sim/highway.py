"""The highway-env adapter: a scenario's highway-env environment behind the spec interface.

Frames. highway-env's world frame has y pointing RIGHT on screen (the lane id grows
with y, ``LANE_LEFT`` decreases it) and a positive steering angle turns toward +y. The
spec frame has y LEFT, so the adapter mirrors::

    y_spec = -y_hw    vy_spec = -vy_hw    heading_spec = -heading_hw    steer_hw = -steer_spec

Lane fields: ``lane_index`` is highway-env's lane id within its (from, to) edge
(0 = leftmost, as in highway-env), ``lane_count`` the number of lanes of that edge,
``lane_offset_m = -lateral`` of ``lane.local_coordinates(position)`` (+ = left) and
``lane_heading_rad = -lane.heading_at(longitudinal)``. Velocities are highway-env's
``vehicle.velocity = speed * [cos(heading), sin(heading)]``: along the heading, without
the bicycle model's slip angle beta (the position itself moves along heading + beta).

Scene. Every vehicle on the road plus every solid road object (obstacles, the stop
scenario's stalled vehicle) as a vehicle with zero speed; no range limit
(:func:`drive_drail.spec.observe_batch` applies its own radius). One helper,
:func:`frame_rows`, extracts these states for both :meth:`HighwayAdapter.scene` and
the recorder, so logs and rollouts hold the same float64 numbers.

Actions. A policy action in [-1, 1]^2 goes through :func:`drive_drail.spec.action_to_physical`
to ``[accel_mps2, steer_rad]``; the steering is mirrored and handed to highway-env's
``ContinuousAction`` configured with the spec's ranges, so its own linear map is the
identity on physical units. Actions are held for ``simulation_frequency // policy_frequency``
simulation steps (highway-env's ``AbstractEnv._simulate``).
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import highway_env  # noqa: F401  (registers highway-env's environments)
import numpy as np
from gymnasium.envs.registration import load_env_creator
from highway_env.envs.common.abstract import AbstractEnv
from highway_env.envs.merge_env import MergeEnv
from highway_env.road.road import Road
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.kinematics import Vehicle as HwVehicle

from drive_drail import spec, tasks
from drive_drail.scenario import Scenario, ScenarioError, check_simulator_settings, did_you_mean
from drive_drail.sim import base, stop_env
from drive_drail.sim.rows import STATE_COLUMNS, FrameRows, batch_for_all, observe_rows, scene_from_rows

RESERVED_CONFIG_KEYS = {
    "observation": "the adapter builds the spec observation itself",
    "action": "the adapter uses ContinuousAction with the spec's ranges",
    "simulation_frequency": "set by simulation_frequency_hz",
    "policy_frequency": "set by policy_frequency_hz",
    "duration": "set by episode_seconds",
    "offscreen_rendering": "the adapter does not render",
    "show_trajectories": "the adapter does not render",
    "manual_control": "the adapter does not render",
    "real_time_rendering": "the adapter does not render",
    "render_agent": "the adapter does not render",
    "controlled_vehicles": "the adapter drives exactly one ego",
}
"""highway-env config keys a scenario may not set, and why."""


# --------------------------------------------------------------------------------------
# The merge-from-the-ramp environment (stock merge-v0 starts the ego on the main road)
# --------------------------------------------------------------------------------------

MERGE_ENV_ID = "drive-drail-highway/merge-ramp-v0"


class RampMergeEnv(MergeEnv):
    """merge-v0's road with the ego on the on-ramp ``("j", "k", 0)``: it must merge into the main lanes.

    The road is merge-v0's: two main lanes, a ramp (``j->k`` straight, ``k->b`` converging,
    then the acceleration lane ``("b", "c", 2)`` that ends at an obstacle at x = 310 m).
    IDM/MOBIL traffic drives on the main lanes. All lanes get ``speed_limit_mps``
    (merge-v0 leaves highway-env's 20 m/s default). Reward and termination are the adapter's.
    """

    ON_RAMP_LANES = (("j", "k", 0), ("k", "b", 0), ("b", "c", 2))
    """Lanes of the on-ramp, including the acceleration lane (``on_ramp`` in logs)."""

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config.update(
            {
                "vehicles_count": 6,  # IDM traffic on the main road
                "speed_limit_mps": 30.0,
                "traffic_span_m": [0.0, 220.0],  # traffic x range on the main road at reset [m]
                "traffic_speed_mps": [25.0, 30.0],  # uniform range of traffic speeds (and target speeds)
                "vehicles_spacing_m": 25.0,  # minimum gap between traffic centres on one lane [m]
                "ego_ramp_position_m": [70.0, 110.0],  # uniform range of the ego's position on the ramp [m]
                "ego_speed_mps": [20.0, 24.0],  # uniform range of the ego's initial speed
                "goal_x_m": 370.0,  # the route ends here (merge-v0 terminates at 370 m too)
            }
        )
        return config

    def _make_road(self) -> None:
        super()._make_road()
        for lane in self.road.network.lanes_list():
            lane.speed_limit = self.config["speed_limit_mps"]

    def _make_vehicles(self) -> None:
        cfg, road, rng = self.config, self.road, self.np_random
        ramp = road.network.get_lane(("j", "k", 0))
        s = float(rng.uniform(*cfg["ego_ramp_position_m"]))
        ego = self.action_type.vehicle_class(road, ramp.position(s, 0.0), ramp.heading_at(s), float(rng.uniform(*cfg["ego_speed_mps"])))
        road.vehicles.append(ego)
        self.vehicle = ego

        taken: dict[int, list[float]] = {0: [], 1: []}
        for _ in range(cfg["vehicles_count"]):
            for _try in range(20):
                lane_id = int(rng.integers(2))
                x = float(rng.uniform(*cfg["traffic_span_m"]))
                if all(abs(x - p) >= cfg["vehicles_spacing_m"] for p in taken[lane_id]):
                    break
            else:
                continue
            taken[lane_id].append(x)
            lane = road.network.get_lane(("a", "b", lane_id))
            v = IDMVehicle(road, lane.position(x, 0.0), lane.heading_at(x), float(rng.uniform(*cfg["traffic_speed_mps"])))
            v.randomize_behavior()
            road.vehicles.append(v)

    # merge-v0's reward assumes discrete actions; the adapter computes its own outcome.
    def _reward(self, action) -> float:
        return 0.0

    def _info(self, obs, action=None) -> dict:
        return {"speed": self.vehicle.speed, "crashed": self.vehicle.crashed}

    def _is_terminated(self) -> bool:
        return bool(self.vehicle.crashed)

    def _is_truncated(self) -> bool:
        return False


def register_envs() -> None:
    """Register the project's highway-env environments with gymnasium (idempotent)."""
    stop_env.register()
    if MERGE_ENV_ID not in gym.registry:
        gym.register(id=MERGE_ENV_ID, entry_point="drive_drail.sim.highway:RampMergeEnv")


# --------------------------------------------------------------------------------------
# State extraction: the ONE place highway-env objects become spec-frame numbers
# --------------------------------------------------------------------------------------

def frame_rows(road: Road, ego: HwVehicle, on_ramp_lanes: tuple = ()) -> FrameRows:
    """Extract every vehicle and solid obstacle of ``road`` (ego first) into spec-frame rows."""
    objects = [ego] + [v for v in road.vehicles if v is not ego]
    # Solid objects only: Landmarks (goal markers) are not obstacles.
    objects += [o for o in road.objects if o.solid and o.collidable]
    n = len(objects)
    f64 = {c: np.empty(n, dtype=np.float64) for c in STATE_COLUMNS[:7] + ("lane_offset_m", "lane_heading_rad")}
    lane_index = np.empty(n, dtype=np.int64)
    lane_count = np.empty(n, dtype=np.int64)
    on_ramp = np.zeros(n, dtype=bool)
    expert = np.zeros(n, dtype=bool)
    graph = road.network.graph
    for i, o in enumerate(objects):
        _from, _to, _id = o.lane_index
        lane = graph[_from][_to][_id]
        longitudinal, lateral = lane.local_coordinates(o.position)
        velocity = o.velocity  # speed * (cos h, sin h): highway-env's definition, no slip angle
        f64["x_m"][i] = o.position[0]
        f64["y_m"][i] = -o.position[1]
        f64["vx_mps"][i] = velocity[0]
        f64["vy_mps"][i] = -velocity[1]
        f64["heading_rad"][i] = -o.heading
        f64["length_m"][i] = o.LENGTH
        f64["width_m"][i] = o.WIDTH
        f64["lane_offset_m"][i] = -lateral
        f64["lane_heading_rad"][i] = -lane.heading_at(longitudinal)
        lane_index[i] = _id
        lane_count[i] = len(graph[_from][_to])
        on_ramp[i] = (_from, _to, _id) in on_ramp_lanes
        expert[i] = isinstance(o, HwVehicle)
    columns = {**f64, "lane_index": lane_index, "lane_count": lane_count, "on_ramp": on_ramp, "expert": expert}
    return FrameRows(objects=objects, columns={c: columns[c] for c in STATE_COLUMNS})


# --------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------

SimStepHook = Callable[["HighwayAdapter"], None]


class HighwayAdapter(base.SpecAdapter):
    """A scenario's highway-env environment with the spec observation and action (see ``sim/base.py``).

    - observation: ``spec.observe(self.scene())``, shape ``[OBS_DIM]``, float32;
    - action: ``[-1, 1]^2`` -> ``[accel_mps2, steer_rad]`` (+ = left), held for
      ``frames_per_action`` simulation steps;
    - reward: 0 (imitation learning brings its own);
    - terminated: the ego crashed or left the road, or (merge) reached the end of its route;
    - truncated: the time limit ``episode_seconds`` was reached without termination;
    - info (every step): crashed, offroad, success (True only on the final step of a
      successful episode), route_completion, speed_mps, lane_index, time_s, plus
      episode_seed, action_physical (the applied ``[accel_mps2, steer_rad]``, spec frame)
      and task extras (lane_changes; merge: merged; stop: gap_m, stopped_s).

    Episode seeds: ``reset(seed=s)`` plays episode seed ``s``. ``reset()`` without a seed
    takes the next seed of the split: the train seeds in an order shuffled by ``seed``,
    or the eval seeds in order starting at index ``seed``. Every episode reseeds
    highway-env, so an episode is reproducible from its seed alone.
    """

    simulator = "highway"
    label = "highway"
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, scenario: Scenario, seed: int = 0, split: str = "train"):
        super().__init__(scenario, split)
        register_envs()

        config = _highway_config(scenario, split)
        self._hw: AbstractEnv = gym.make(scenario.env_id, config=config, render_mode=None, disable_env_checker=True).unwrapped
        action_type = self._hw.action_type
        ranges = (tuple(action_type.acceleration_range), tuple(action_type.steering_range))
        if ranges != (spec.ACCEL_RANGE_MPS2, spec.STEER_RANGE_RAD):  # the spec's action map is highway-env's ContinuousAction's
            raise RuntimeError(f"highway-env's ContinuousAction ranges {ranges} are not the spec's "
                               f"{(spec.ACCEL_RANGE_MPS2, spec.STEER_RANGE_RAD)}: an unsupported highway-env version?")
        self.on_ramp_lanes = tuple(getattr(self._hw, "ON_RAMP_LANES", ()))

        self._seed_order = scenario.seed_order(split, seed)
        self._episodes = 0
        self._hooks: list[SimStepHook] = []
        self.sim_frame = 0
        self.policy_steps = 0
        self.episode_seed: int | None = None

    # ---------------------------------------------------------------- highway-env access

    @property
    def hw_env(self) -> AbstractEnv:
        """The wrapped highway-env environment (experts and the recorder read it)."""
        return self._hw

    def render_rgb(self) -> np.ndarray:
        """highway-env's top-down frame of the current scene, ``[H, W, 3]`` uint8 (headless: set
        ``SDL_VIDEODRIVER=offscreen`` before pygame starts, as the report does)."""
        from highway_env.vehicle.graphics import VehicleGraphics

        self._hw.render_mode = "rgb_array"
        # highway-env paints a plain Vehicle (the continuous-action ego) and an Obstacle in the same yellow:
        # the ego gets highway-env's ego green (graphics only; no dynamics read ``color``)
        self.ego.color = VehicleGraphics.EGO_COLOR
        frame = self._hw.render()
        # highway-env re-renders every intermediate simulation step after a render() call; one frame per policy step is enough.
        self._hw.enable_auto_render = False
        return np.asarray(frame)

    @property
    def road(self) -> Road:
        return self._hw.road

    @property
    def ego(self) -> HwVehicle:
        return self._hw.vehicle

    def add_sim_step_hook(self, hook: SimStepHook) -> None:
        """Call ``hook(adapter)`` after every simulation step (``road.step``), e.g. to record states."""
        self._hooks.append(hook)

    def remove_sim_step_hook(self, hook: SimStepHook) -> None:
        self._hooks.remove(hook)

    # ---------------------------------------------------------------- gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is None:
            seed = self._seed_order[self._episodes % len(self._seed_order)]
        self._episodes += 1
        self.episode_seed = int(seed)
        self._hw.reset(seed=self.episode_seed)
        self._install_road_hook()
        self.sim_frame = 0
        self.policy_steps = 0
        self._start_task()
        self._last_action = np.zeros(spec.ACTION_DIM)
        info = self._info(final=False)
        return self._observe(), info

    def step(self, action_unit) -> tuple[np.ndarray, float, bool, bool, dict]:
        accel_mps2, steer_rad = spec.action_to_physical(np.asarray(action_unit, dtype=np.float64).reshape(spec.ACTION_DIM))
        accel_mps2 = float(spec.no_reverse_accel_mps2(accel_mps2, float(self.ego.speed), self.policy_dt_s))
        # highway-env steers toward +y_hw (right): mirror, then let ContinuousAction's own
        # linear map (configured with the spec ranges) turn [-1, 1] back into physical units.
        hw_unit = spec.physical_to_linear_unit(np.array([accel_mps2, -steer_rad]))
        self._hw.time += self.policy_dt_s
        self._hw._simulate(hw_unit)  # frames_per_action x (road.act(); road.step(dt))
        self.policy_steps += 1
        self._last_action = np.array([accel_mps2, steer_rad])
        self._update_task()

        ego = self.ego
        crashed, offroad = bool(ego.crashed), not ego.on_road
        m = tasks.Measurements.one(crashed=crashed, offroad=offroad, route_completion=self._route_completion())
        terminated = bool(tasks.task(self.scenario.task).terminated("highway", m)[0])
        truncated = not terminated and self.policy_steps >= self.scenario.max_policy_steps
        info = self._info(final=terminated or truncated)
        return self._observe(), 0.0, terminated, truncated, info

    def scene(self) -> spec.Scene:
        """The current scene of the ego (every vehicle and obstacle on the road)."""
        return scene_from_rows(self.frame_rows().columns)

    def frame_rows(self) -> FrameRows:
        """All objects of the road now, ego first, as record-format state columns."""
        return frame_rows(self.road, self.ego, self.on_ramp_lanes)

    def scene_batch_for_all(self) -> spec.SceneBatch:
        """One scene per vehicle (each vehicle as ego), for observing every track at once."""
        return batch_for_all(self.frame_rows().columns)

    def close(self) -> None:
        self._hw.close()

    # ---------------------------------------------------------------- internals

    def _observe(self) -> np.ndarray:
        return observe_rows(self.frame_rows().columns)  # = spec.observe(self.scene()), without the Scene objects

    def _install_road_hook(self) -> None:
        """Wrap this episode's ``road.step`` (per instance, not the class) to count frames and call hooks."""
        road = self.road
        original = road.step

        def step(dt: float) -> None:
            original(dt)
            self.sim_frame += 1
            for hook in self._hooks:
                hook(self)

        road.step = step

    # Task progress. The route is measured along x (every road here is straight in x).
    def _start_task(self) -> None:
        ego, task, success = self.ego, self.scenario.task, self.scenario.success
        self._x_start = float(ego.position[0])
        self._lane_changes = 0
        self._last_lane = ego.lane_index
        self._stopped_s = 0.0
        self._obstacle = None
        if task == "lane_change":
            self._x_goal = float(tasks.lane_change.goal_x_m(self._x_start, success))
        elif task == "merge":
            self._x_goal = float(self._hw.config.get("goal_x_m", 370.0))
        else:  # stop: the route ends where the ego's front enters the stop zone
            self._obstacle = getattr(self._hw, "stop_obstacle", None)
            if self._obstacle is None:
                raise ScenarioError(self.scenario.source, f"task 'stop' needs an environment with a stop obstacle (e.g. {stop_env.ENV_ID}), got '{self.scenario.env_id}'", key="env_id")
            rear_x = self._obstacle.position[0] - self._obstacle.LENGTH / 2
            self._x_goal = float(tasks.stop.goal_x_m(rear_x, ego.LENGTH, success))

    def _update_task(self) -> None:
        ego = self.ego
        if ego.lane_index[:2] == self._last_lane[:2] and ego.lane_index[2] != self._last_lane[2]:
            self._lane_changes += 1
        self._last_lane = ego.lane_index
        if self.scenario.task == "stop":
            self._stopped_s = float(tasks.stop.stopped_s(self._stopped_s, ego.speed, self.policy_dt_s, self.scenario.success))

    def _route_completion(self) -> float:
        span = self._x_goal - self._x_start
        done = (float(self.ego.position[0]) - self._x_start) / span if span > 0 else 1.0
        return float(np.clip(done, 0.0, 1.0))

    def _gap_m(self) -> float:
        """stop: bumper gap from the ego's front to the obstacle's rear, along the ego lane [m]."""
        ego, obstacle = self.ego, self._obstacle
        return float(ego.lane_distance_to(obstacle) - (ego.LENGTH + obstacle.LENGTH) / 2)

    def _info(self, final: bool) -> dict:
        ego, task = self.ego, self.scenario.task
        return base.step_info(
            self.scenario,
            final=final,
            crashed=bool(ego.crashed),
            offroad=not ego.on_road,
            route_completion=self._route_completion(),
            speed_mps=float(ego.speed),
            lane_index=int(ego.lane_index[2]),
            time_s=self.policy_steps * self.policy_dt_s,
            merged=(ego.lane_index not in self.on_ramp_lanes) if task == "merge" else None,
            gap_m=self._gap_m() if task == "stop" else None,
            stopped_s=self._stopped_s if task == "stop" else None,
            episode_seed=self.episode_seed,
            action_physical=self._last_action.copy(),
            lane_changes=self._lane_changes,
        )


def _highway_config(scenario: Scenario, split: str) -> dict:
    """The highway-env config of a split, with scenario keys checked against the env's own defaults."""
    if scenario.env_id not in gym.registry:
        ids = [k for k in gym.registry if k.startswith(("highway", "merge", "drive-drail"))]
        raise ScenarioError(scenario.source, f"unknown highway-env id '{scenario.env_id}'{did_you_mean(scenario.env_id, ids)}", key="env_id")
    env_cls = load_env_creator(gym.spec(scenario.env_id).entry_point)
    check_simulator_settings(scenario, env_cls.default_config(), RESERVED_CONFIG_KEYS, scenario.env_id)
    return {
        **scenario.env_config_for(split),
        # The adapter computes the spec observation; highway-env's is reduced to a cheap no-op.
        "observation": {"type": "AttributesObservation", "attributes": ["time"]},
        "action": {
            "type": "ContinuousAction",
            "acceleration_range": spec.ACCEL_RANGE_MPS2,
            "steering_range": spec.STEER_RANGE_RAD,
            "longitudinal": True,
            "lateral": True,
            "clip": True,
        },
        "simulation_frequency": scenario.simulation_frequency_hz,
        "policy_frequency": scenario.policy_frequency_hz,
        "duration": scenario.episode_seconds,
        "offscreen_rendering": True,
        "show_trajectories": False,
        "controlled_vehicles": 1,
    }


def make_env(scenario: Scenario, seed: int = 0, split: str = "train") -> HighwayAdapter:
    """The adapter for a highway-env scenario (see :class:`HighwayAdapter` for seeds and splits)."""
    return HighwayAdapter(scenario, seed=seed, split=split)
