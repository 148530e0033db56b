"""Initial scenes of the three highway scenarios, drawn like highway-env draws them, for many seeds at once.

Each spawner follows its highway-env environment's reset step by step (same roads, same
distributions, same rejection rules, same derived quantities such as the MOBIL timer
``(x + y) pi mod 1`` and the IDM exponent ``DELTA ~ U(3.5, 4.5)``):

- ``highway-fast-v0`` (``HighwayEnv._create_vehicles`` + ``HighwayEnvFast``): the ego at
  25 m/s on a random lane, then each IDM vehicle on a random lane, ``(12 + v) spacing
  exp(-5/40 lanes) U(0.9, 1.1)`` ahead of the frontmost vehicle; traffic does not check
  collisions among itself;
- ``drive-drail-highway/merge-ramp-v0`` (``RampMergeEnv._make_vehicles``): the ego on the ramp,
  IDM traffic on the two main lanes, rejection-sampled for spacing (20 tries each);
- ``drive-drail-highway/stop-v0`` (``StopEnv._reset``): the ego, the stalled vehicle ahead in its
  lane, IDM traffic (no lane changes) on the other lanes.

What differs from highway-env: the random numbers. highway-env draws from one
``np.random.Generator`` in sequence; here draw k of the scene with episode seed s is a
pure function of (s, k) (a SplitMix64 counter hash), so a batch of seeds is drawn at once
and a seed gives the same scene whatever batch it is in. Seed s therefore gives a
different scene here than in highway-env, from the same distribution; to replay
highway-env's own scene for a seed, import it (``scene_exchange``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from drive_drail.scenario import Scenario, ScenarioError, did_you_mean
from drive_drail.sim.batched import behavior, road
from drive_drail.sim.batched.vehicles import VehicleState, empty_state

STALLED_LENGTH_M = 4.5
STALLED_WIDTH_M = 1.8
"""``stop_env.StalledVehicle`` size [m]."""

_IGNORED = {
    # rewards and rendering: no effect on the simulation or on the adapter's episode logic
    "collision_reward", "right_lane_reward", "high_speed_reward", "lane_change_reward", "reward_speed_range",
    "normalize_reward", "merging_speed_reward", "screen_width", "screen_height", "centering_position", "scaling",
    "show_trajectories", "render_agent", "offscreen_rendering", "manual_control", "real_time_rendering",
    "observation", "action", "simulation_frequency", "policy_frequency", "duration", "offroad_terminal",
}  # fmt: skip
_FIXED = {
    "other_vehicles_type": "highway_env.vehicle.behavior.IDMVehicle",
    "controlled_vehicles": 1,
    "neighbour_vehicles_connected_lanes": False,
}
"""Settings the batched simulator models only at these values."""

DEFAULTS: dict[str, dict] = {
    "highway-fast-v0": {"lanes_count": 3, "vehicles_count": 20, "vehicles_density": 1, "ego_spacing": 1.5, "initial_lane_id": None},
    "drive-drail-highway/merge-ramp-v0": {
        "vehicles_count": 6, "speed_limit_mps": 30.0, "traffic_span_m": [0.0, 220.0], "traffic_speed_mps": [25.0, 30.0],
        "vehicles_spacing_m": 25.0, "ego_ramp_position_m": [70.0, 110.0], "ego_speed_mps": [20.0, 24.0], "goal_x_m": 370.0,
    },
    "drive-drail-highway/stop-v0": {
        "lanes_count": 2, "road_length_m": 1000.0, "speed_limit_mps": 20.0, "ego_start_x_m": 50.0, "ego_speed_mps": [15.0, 20.0],
        "ego_lane_id": None, "obstacle_distance_m": [90.0, 140.0], "vehicles_count": 4, "vehicles_spacing_m": 25.0,
        "traffic_span_m": [-60.0, 200.0],
    },
}  # fmt: skip
"""The highway-env environments' own defaults for the settings that shape a scene."""


# --------------------------------------------------------------------------------------
# Counter-based random numbers (SplitMix64)
# --------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class SeedStream:
    """Uniform numbers per scene: the k-th draw of scene s depends only on (seed_s, k)."""

    def __init__(self, seeds: np.ndarray):
        with np.errstate(over="ignore"):
            self._base = _mix(np.asarray(seeds, dtype=np.uint64) * _GOLDEN + np.uint64(0x5EED))
        self._counter = 0

    def uniform(self, low: float, high: float, shape: tuple[int, ...] = ()) -> np.ndarray:
        """``U(low, high)`` of shape ``[S, *shape]``."""
        count = int(np.prod(shape)) if shape else 1
        ctr = np.arange(self._counter + 1, self._counter + 1 + count, dtype=np.uint64)
        self._counter += count
        with np.errstate(over="ignore"):
            z = _mix(self._base[:, None] + ctr[None, :] * _GOLDEN)
        u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return (low + (high - low) * u).reshape((len(self._base), *shape))

    def integers(self, n: int | np.ndarray, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Uniform integers in ``[0, n)``, shape ``[S, *shape]`` (``n`` may be ``[S]``)."""
        u = self.uniform(0.0, 1.0, shape)
        n = np.asarray(n).reshape((-1,) + (1,) * len(shape)) if np.ndim(n) else n
        return np.minimum(np.floor(u * n), np.asarray(n) - 1).astype(np.int64)


# --------------------------------------------------------------------------------------
# Scenario settings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneFamily:
    """A scenario split's road and spawner: what the batched env needs to start episodes."""

    env_id: str
    config: dict
    """The environment settings after defaults and the split's overrides."""
    lanes: road.LaneTable
    n_vehicles: int
    """Vehicle slots (ego + traffic capacity)."""
    n_objects: int
    spawn: Callable[[np.ndarray], VehicleState]
    """Seeds ``[S]`` -> initial states ``[S, n_vehicles + n_objects]`` (CPU, float64)."""
    on_ramp_lanes: tuple[int, ...] = ()
    """LaneTable indices of the on-ramp (merge: ``RampMergeEnv.ON_RAMP_LANES``)."""


def scene_family(scenario: Scenario, split: str = "train") -> SceneFamily:
    """The road and spawner of one split; unknown or unmodelled settings raise :class:`ScenarioError`."""
    if scenario.env_id not in DEFAULTS:
        raise ScenarioError(scenario.source, f"the batched simulator models {', '.join(DEFAULTS)}, not '{scenario.env_id}'", key="env_id")
    overrides = scenario.env_config_for(split)
    defaults = DEFAULTS[scenario.env_id]
    for key, value in overrides.items():
        if key in _IGNORED or key in defaults:
            continue
        if key in _FIXED:
            if value != _FIXED[key]:
                raise ScenarioError(scenario.source, f"the batched simulator only models {key} = {_FIXED[key]!r}", key=f"env_config.{key}")
            continue
        raise ScenarioError(scenario.source, f"not a setting the batched simulator models for {scenario.env_id}{did_you_mean(key, list(defaults))}", key=f"env_config.{key}")
    cfg = {**defaults, **{k: v for k, v in overrides.items() if k in defaults}}
    if scenario.env_id == "highway-fast-v0":
        lanes = road.straight_road(int(cfg["lanes_count"]), 10000.0, 30.0)
        return SceneFamily(scenario.env_id, cfg, lanes, 1 + int(cfg["vehicles_count"]), 0, lambda seeds: _spawn_highway(seeds, cfg, lanes))
    if scenario.env_id == "drive-drail-highway/merge-ramp-v0":
        lanes, obstacles = road.merge_road(float(cfg["speed_limit_mps"]))
        ramp = tuple(lanes.index(li) for li in (("j", "k", 0), ("k", "b", 0), ("b", "c", 2)))
        return SceneFamily(scenario.env_id, cfg, lanes, 1 + int(cfg["vehicles_count"]), len(obstacles), lambda seeds: _spawn_merge(seeds, cfg, lanes, obstacles), ramp)
    lanes = road.straight_road(int(cfg["lanes_count"]), float(cfg["road_length_m"]), float(cfg["speed_limit_mps"]))
    return SceneFamily(scenario.env_id, cfg, lanes, 1 + int(cfg["vehicles_count"]), 1, lambda seeds: _spawn_stop(seeds, cfg, lanes))


# --------------------------------------------------------------------------------------
# Spawners
# --------------------------------------------------------------------------------------


def _finish(st: VehicleState, lanes: road.LaneTable) -> VehicleState:
    """Derived fields every highway-env object computes at construction: lane, target lane, timer."""
    lane = lanes.closest_lane(st.x_m, st.y_m, st.heading_rad)
    st.lane[:] = torch.where(st.valid, lane, torch.zeros_like(lane))
    st.target_lane[:] = st.lane
    # IDMVehicle.__init__: timer = (sum(position) * pi) % LANE_CHANGE_DELAY
    st.timer_s[:] = torch.where(st.is_idm, torch.remainder((st.x_m + st.y_m) * np.pi, behavior.LANE_CHANGE_DELAY_S), torch.zeros_like(st.x_m))
    return st


def _put(st: VehicleState, slot: slice | int, **values) -> None:
    for name, value in values.items():
        getattr(st, name)[:, slot] = torch.as_tensor(value, dtype=getattr(st, name).dtype)


def _spawn_highway(seeds: np.ndarray, cfg: dict, lanes: road.LaneTable) -> VehicleState:
    rng = SeedStream(seeds)
    s, v, n_lanes = len(seeds), int(cfg["vehicles_count"]), int(cfg["lanes_count"])
    st = empty_state(s, 1 + v, 0)
    shrink = np.exp(-5 / 40 * n_lanes)  # Vehicle.create_random's density factor for this road
    ego_lane = rng.integers(n_lanes) if cfg["initial_lane_id"] is None else np.full(s, int(cfg["initial_lane_id"]))
    offset = cfg["ego_spacing"] * (12 + 1.0 * 25.0) * shrink
    x_ego = 3 * offset + offset * rng.uniform(0.9, 1.1)
    lane = rng.integers(n_lanes, (v,))
    speed = rng.uniform(0.7 * 30.0, 0.8 * 30.0, (v,))
    offsets = 1 / cfg["vehicles_density"] * (12 + 1.0 * speed) * shrink * rng.uniform(0.9, 1.1, (v,))
    x = x_ego[:, None] + np.cumsum(offsets, axis=1)  # each one ahead of the frontmost so far
    delta = rng.uniform(*behavior.DELTA_RANGE, (v,))
    _put(st, 0, x_m=x_ego, y_m=ego_lane * road.LANE_WIDTH_M, speed_mps=25.0, valid=True, is_vehicle=True, check_collisions=True)
    _put(st, slice(1, None), x_m=x, y_m=lane * road.LANE_WIDTH_M, speed_mps=speed, target_speed_mps=speed, delta=delta,
         valid=True, is_vehicle=True, is_idm=True, lane_change=True, check_collisions=False)  # fmt: skip
    return _finish(st, lanes)


def _place_with_spacing(rng: SeedStream, count: int, lane_choices: Callable[[tuple], np.ndarray], span: tuple[float, float], spacing: float, tries: int = 20):
    """Rejection sampling of the merge and stop resets: each vehicle takes the first of ``tries``
    (lane, x) draws at least ``spacing`` from every vehicle already placed on that lane, or is
    not placed. Returns lane ``[S, count]``, x ``[S, count]``, placed ``[S, count]``."""
    lane = lane_choices((count, tries))
    x = rng.uniform(span[0], span[1], (count, tries))
    s = lane.shape[0]
    placed = np.zeros((s, count), dtype=bool)
    lane_out = np.zeros((s, count), dtype=np.int64)
    x_out = np.zeros((s, count))
    rows = np.arange(s)
    for k in range(count):  # sequential by construction: vehicle k sees vehicles < k (reset only)
        clash = (lane[:, k, :, None] == lane_out[:, None, :k]) & placed[:, None, :k] & (np.abs(x[:, k, :, None] - x_out[:, None, :k]) < spacing)
        ok = ~clash.any(axis=2)  # [S, tries]
        first = np.argmax(ok, axis=1)
        placed[:, k] = ok.any(axis=1)
        lane_out[:, k] = lane[rows, k, first]
        x_out[:, k] = x[rows, k, first]
    return lane_out, x_out, placed


def _spawn_merge(seeds: np.ndarray, cfg: dict, lanes: road.LaneTable, obstacles: list[tuple[float, float]]) -> VehicleState:
    rng = SeedStream(seeds)
    s, v = len(seeds), int(cfg["vehicles_count"])
    st = empty_state(s, 1 + v, len(obstacles))
    ramp = lanes.index(("j", "k", 0))
    s_ego = rng.uniform(*cfg["ego_ramp_position_m"])
    _put(st, 0, x_m=float(lanes.x_start_m[ramp]) + s_ego, y_m=float(lanes.y_start_m[ramp]), speed_mps=rng.uniform(*cfg["ego_speed_mps"]),
         valid=True, is_vehicle=True, check_collisions=True)  # fmt: skip
    lane, x, placed = _place_with_spacing(rng, v, lambda shape: rng.integers(2, shape), tuple(cfg["traffic_span_m"]), float(cfg["vehicles_spacing_m"]))
    speed = rng.uniform(*cfg["traffic_speed_mps"], (v,))
    delta = rng.uniform(*behavior.DELTA_RANGE, (v,))
    _put(st, slice(1, 1 + v), x_m=np.where(placed, x, st.x_m[:, 1:1 + v].numpy()), y_m=lane * road.LANE_WIDTH_M, speed_mps=speed,
         target_speed_mps=speed, delta=delta, valid=placed, is_vehicle=placed, is_idm=placed, lane_change=placed, check_collisions=placed)  # fmt: skip
    for k, (ox, oy) in enumerate(obstacles):
        _put(st, 1 + v + k, x_m=ox, y_m=oy, length_m=2.0, width_m=2.0, valid=True, check_collisions=True)
    return _finish(st, lanes)


def _spawn_stop(seeds: np.ndarray, cfg: dict, lanes: road.LaneTable) -> VehicleState:
    rng = SeedStream(seeds)
    s, v, n_lanes = len(seeds), int(cfg["vehicles_count"]), int(cfg["lanes_count"])
    st = empty_state(s, 1 + v, 1)
    ego_lane = rng.integers(n_lanes) if cfg["ego_lane_id"] is None else np.full(s, int(cfg["ego_lane_id"]))
    x0 = float(cfg["ego_start_x_m"])
    _put(st, 0, x_m=x0, y_m=ego_lane * road.LANE_WIDTH_M, speed_mps=rng.uniform(*cfg["ego_speed_mps"]), valid=True, is_vehicle=True, check_collisions=True)
    x_obstacle = x0 + rng.uniform(*cfg["obstacle_distance_m"])
    _put(st, 1 + v, x_m=x_obstacle, y_m=ego_lane * road.LANE_WIDTH_M, length_m=STALLED_LENGTH_M, width_m=STALLED_WIDTH_M, valid=True, check_collisions=True)
    if n_lanes > 1 and v > 0:

        def other_lane(shape: tuple) -> np.ndarray:  # rng.choice(other_lanes)
            k = rng.integers(n_lanes - 1, shape)
            return np.where(k < ego_lane.reshape(-1, 1, 1), k, k + 1)

        span = (x0 + cfg["traffic_span_m"][0], x0 + cfg["traffic_span_m"][1])
        lane, x, placed = _place_with_spacing(rng, v, other_lane, span, float(cfg["vehicles_spacing_m"]))
        speed = rng.uniform(0.8, 1.0, (v,)) * cfg["speed_limit_mps"]
        delta = rng.uniform(*behavior.DELTA_RANGE, (v,))
        _put(st, slice(1, 1 + v), x_m=np.where(placed, x, st.x_m[:, 1:1 + v].numpy()), y_m=lane * road.LANE_WIDTH_M, speed_mps=speed,
             target_speed_mps=speed, delta=delta, valid=placed, is_vehicle=placed, is_idm=placed, lane_change=False, check_collisions=placed)  # fmt: skip
    return _finish(st, lanes)
