"""Closed-loop evaluation on real scenarios: MetaDrive's ScenarioEnv replays a ScenarioNet folder.

The policy drives the logged self-driving car (``metadata.sdc_id``) from its logged initial
state; every other agent replays its logged trajectory (``reactive_traffic=False``). This
is how a policy trained on Waymo / nuPlan / nuScenes / Argoverse pairs is checked in closed
loop on the very scenarios those pairs came from.

Safety first: MetaDrive loads scenario files with plain ``pickle``, which runs code. So
MetaDrive never opens a file here: every scenario (and the folder's index files, where it
has them) is loaded once with the project's restricted unpickler
(:mod:`drive_drail.logs.safe_pickle`, via the ScenarioNet reader), and the loaded dicts are
handed to ScenarioEnv through MetaDrive's online data manager (:class:`PreloadedScenarioEnv`).
A file holding anything but numpy arrays and builtin containers raises
:class:`drive_drail.logs.base.LogError` naming it. A single scenario ``.pkl`` replays as well
as a dataset folder.

Observation and action are the spec's, as everywhere:

- the scene holds the ego and every replayed VEHICLE (pedestrians and cyclists are not
  vehicles in the spec, as in the ScenarioNet reader); states in MetaDrive's frame
  (right-handed, y left), velocity along the heading as in the other adapters;
- lane context comes from the scenario's own ``map_features`` through the ScenarioNet
  reader's :func:`~drive_drail.logs.scenarionet.build_lane_map` and
  :func:`~drive_drail.logs.scenarionet.lane_context`, so it is computed exactly as for the
  pairs converted from that log (ScenarioEnv shifts the map; positions are shifted back
  by the ego's start offset first);
- actions go through :func:`drive_drail.sim.metadrive.physical_to_metadrive` with the
  ego's limits; ScenarioEnv's 0.1 s decisions (5 physics steps of 0.02 s) match the logs'
  10 Hz, so a policy acts at 10 Hz.

Per-episode metrics (:class:`ReplayMetrics`): MetaDrive's outcome (``arrive_dest``,
``crash``, ``out_of_road``, ``route_completion`` along the logged ego route) and the
distance to the logged ego trajectory (ADE / FDE over the steps driven).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from drive_drail import spec
from drive_drail.logs.base import MOVING_MPS, LogError
from drive_drail.logs.safe_pickle import safe_load
from drive_drail.logs.scenarionet import build_lane_map, lane_context, scenario_files
from drive_drail.sim.metadrive import NullObservation, VehicleLimits, check_engine_free, physical_to_metadrive
from drive_drail.sim.rows import scene_from_rows
from drive_drail.sim.metadrive.assets import state_only_engine

Policy = Callable[[np.ndarray], np.ndarray]
"""A policy: spec observation ``[OBS_DIM]`` -> spec action in [-1, 1]^2, shape ``[2]``."""


@runtime_checkable
class ScenarioPolicy(Protocol):
    """A policy told which scenario it drives, such as the logged actions of that scenario's sdc
    (:class:`drive_drail.evaluate.policies.LoggedActionsPolicy`)."""

    def start_scenario(self, path: Path, sd: dict) -> None:
        """Called before the first ``act`` of each episode with the scenario's file and its safely loaded dict."""
        ...

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Spec observation ``[OBS_DIM]`` -> unit action ``[2]``."""
        ...


PHYSICS_DT_S = 0.02
DECISION_REPEAT = 5
"""ScenarioEnv's defaults: 5 physics steps of 0.02 s per decision = the logs' 0.1 s."""
DECISION_HZ = 1.0 / (PHYSICS_DT_S * DECISION_REPEAT)
"""The rate a replayed policy acts at (the logs' 10 Hz) [Hz]."""


@dataclass(frozen=True)
class ReplayMetrics:
    """The outcome of one closed-loop replay episode."""

    scenario_id: str
    applicable: bool
    """The logged sdc drives (faster than :data:`MOVING_MPS` at some step); a parked one's scene
    measures nothing and aggregates leave it out."""
    steps: int
    """Policy steps driven (0.1 s each)."""
    success: bool
    """MetaDrive's ``arrive_dest`` without crash or off-road."""
    crashed: bool
    offroad: bool
    route_completion: float
    """Fraction of the logged ego route driven, MetaDrive's ``route_completion`` clipped to [0, 1]."""
    ade_m: float
    """Mean distance from the logged ego position at the same step [m]."""
    fde_m: float
    """Distance from the logged ego position at the last step driven [m]."""
    mean_speed_mps: float


def _check_folder(folder: Path) -> list[dict]:
    """Load every scenario of a folder (or one scenario file) with the restricted unpickler (raises
    LogError); returns ``[{"path", "sd"}]``, the scenario dicts in dataset order."""
    scenarios = []
    for path in scenario_files(folder):
        sd = safe_load(path)
        if not isinstance(sd, dict) or not isinstance(sd.get("metadata"), dict) or "sdc_id" not in sd["metadata"]:
            raise LogError(path, "not a ScenarioNet scenario (no metadata.sdc_id)", column="metadata.sdc_id")
        if str(sd["metadata"]["sdc_id"]) not in {str(k) for k in sd.get("tracks", {})}:
            raise LogError(path, f"sdc_id {sd['metadata']['sdc_id']!r} is not a track", column="metadata.sdc_id")
        scenarios.append({"path": path, "sd": sd})
    return scenarios


def preloaded_scenario_env_class():
    """:class:`PreloadedScenarioEnv`, built on first use (importing MetaDrive is slow)."""
    from metadrive.envs import ScenarioEnv
    from metadrive.envs.base_env import BaseEnv
    from metadrive.manager.scenario_curriculum_manager import ScenarioCurriculumManager
    from metadrive.manager.scenario_data_manager import ScenarioOnlineDataManager
    from metadrive.manager.scenario_light_manager import ScenarioLightManager
    from metadrive.manager.scenario_map_manager import ScenarioMapManager
    from metadrive.manager.scenario_traffic_manager import ScenarioTrafficManager
    from metadrive.scenario.scenario_description import ScenarioDescription

    class PreloadedScenarioEnv(ScenarioEnv):
        """ScenarioEnv fed scenario dicts that were loaded safely: ``set_scenario(sd)`` before each reset.

        ScenarioEnv's own data manager reads ``data_directory`` with plain ``pickle`` (its dataset
        index when it starts, each scenario at reset); MetaDrive's online data manager takes the
        data from the caller instead. ``ScenarioOnlineEnv`` would still build the reading manager
        first, so this registers the managers of ``ScenarioEnv.setup_engine`` with the online one.
        """

        def __init__(self, config: dict):
            super().__init__(config)
            self.lazy_init()  # the engine (and its data manager) exist before the first set_scenario

        def setup_engine(self) -> None:
            BaseEnv.setup_engine(self)
            self.engine.register_manager("data_manager", ScenarioOnlineDataManager())
            self.engine.register_manager("map_manager", ScenarioMapManager())
            if not self.config["no_traffic"]:
                self.engine.register_manager("traffic_manager", ScenarioTrafficManager())
            if not self.config["no_light"]:
                self.engine.register_manager("light_manager", ScenarioLightManager())
            self.engine.register_manager("curriculum_manager", ScenarioCurriculumManager())

        def set_scenario(self, sd: dict) -> None:
            # A deep copy: MetaDrive re-centres the scenario in place, and the caller reads the log after.
            self.engine.data_manager.set_scenario(ScenarioDescription(copy.deepcopy(sd)))

    return PreloadedScenarioEnv


def _scenario_env_config(n: int) -> dict:
    return {
        "num_scenarios": n,
        "start_scenario_index": 0,
        "sequential_seed": True,
        "use_render": False,
        "image_observation": False,
        "agent_observation": NullObservation,
        "reactive_traffic": False,
        "horizon": None,
        "physics_world_step_size": PHYSICS_DT_S,
        "decision_repeat": DECISION_REPEAT,
        "log_level": logging.ERROR,
        "vehicle_config": {
            "lidar": {"num_lasers": 0, "distance": 50.0},
            "side_detector": {"num_lasers": 0},
            "lane_line_detector": {"num_lasers": 0},
            "show_navi_mark": False,
            "show_dest_mark": False,
        },
    }


def _scene_columns(env, lane_map, offset_xy: np.ndarray) -> dict[str, np.ndarray]:
    """Record-format columns of the ego (row 0) and every vehicle, with lanes from the log's map."""
    from metadrive.component.vehicle.base_vehicle import BaseVehicle

    ego = env.agent
    vehicles = [ego] + [o for o in env.engine.get_objects().values() if o is not ego and isinstance(o, BaseVehicle)]
    n = len(vehicles)
    xy = np.empty((n, 2))
    heading = np.empty(n)
    speed = np.empty(n)
    length, width = np.empty(n), np.empty(n)
    for i, v in enumerate(vehicles):
        xy[i] = v.position
        heading[i] = v.heading_theta
        vel = v.velocity
        speed[i] = float(vel[0]) * math.cos(heading[i]) + float(vel[1]) * math.sin(heading[i])
        length[i], width[i] = v.LENGTH, v.WIDTH
    lane_index, lane_count, lane_offset, lane_heading, _on_ramp = lane_context(lane_map, xy - offset_xy, heading)
    return {
        "x_m": xy[:, 0],
        "y_m": xy[:, 1],
        "vx_mps": speed * np.cos(heading),
        "vy_mps": speed * np.sin(heading),
        "heading_rad": heading,
        "length_m": length,
        "width_m": width,
        "lane_index": lane_index,
        "lane_count": lane_count,
        "lane_offset_m": lane_offset,
        "lane_heading_rad": lane_heading,
    }


def replay_evaluate(
    policy: Policy | ScenarioPolicy,
    folder: str | Path,
    max_steps: int | None = None,
    scenarios: list[int] | None = None,
    progress: bool = False,
) -> list[ReplayMetrics]:
    """Drive ``policy`` as the sdc of every scenario of a ScenarioNet ``folder``; others replay the log.

    ``policy``: a callable, or a :class:`ScenarioPolicy` told each scenario first;
    ``max_steps``: policy steps per episode (default: the scenario's length minus one);
    ``scenarios``: indices into the folder's scenarios (default: all). Returns one
    :class:`ReplayMetrics` per episode, in order; ``progress``: a bar over the scenarios. Runs MetaDrive headless in this process
    (one MetaDrive engine per process: no other MetaDrive adapter may be open).
    """
    folder = Path(folder)
    loaded = _check_folder(folder)
    indices = list(range(len(loaded))) if scenarios is None else list(scenarios)
    for i in indices:
        if not 0 <= i < len(loaded):
            raise ValueError(f"scenario index {i} out of range: {folder} holds {len(loaded)} scenarios")

    check_engine_free(None)  # one MetaDrive engine per process: refuse clearly if an adapter holds it
    with state_only_engine():
        env = preloaded_scenario_env_class()(_scenario_env_config(len(loaded)))
    results = []
    act = policy.act if isinstance(policy, ScenarioPolicy) else policy
    from tqdm import tqdm

    try:
        for i in tqdm(indices, desc="replay", unit="scenario", disable=None if progress else True):
            sd, path = loaded[i]["sd"], loaded[i]["path"]
            sdc = sd["tracks"][next(k for k in sd["tracks"] if str(k) == str(sd["metadata"]["sdc_id"]))]["state"]
            log_xy = np.asarray(sdc["position"], dtype=np.float64)[:, :2]
            log_valid = np.asarray(sdc["valid"], dtype=bool)
            log_speed = np.hypot(*np.asarray(sdc["velocity"], dtype=np.float64)[:, :2].T)
            applicable = bool(np.any(log_valid & (log_speed > MOVING_MPS)))
            lane_map = build_lane_map(sd.get("map_features", {}), path)
            if isinstance(policy, ScenarioPolicy):
                policy.start_scenario(path, sd)
            env.set_scenario(sd)
            with state_only_engine():
                env.reset(seed=i)
            ego = env.agent
            limits = VehicleLimits.of(ego, PHYSICS_DT_S)
            offset = np.asarray(ego.position, dtype=np.float64) - log_xy[0]  # ScenarioEnv re-centres the map
            horizon = int(sd.get("length", len(log_xy))) - 1 if max_steps is None else int(max_steps)

            errors, speeds, info, steps = [], [], {}, 0
            terminated = False
            while steps < horizon and not terminated:
                obs = spec.observe(scene_from_rows(_scene_columns(env, lane_map, offset)))
                action_unit = np.asarray(act(obs), dtype=np.float64).reshape(spec.ACTION_DIM)
                md_action = physical_to_metadrive(spec.action_to_physical(action_unit), limits)
                _, _, terminated, _, info = env.step(md_action)
                steps += 1
                speeds.append(float(ego.speed))
                if steps < len(log_xy) and log_valid[steps]:
                    errors.append(float(np.hypot(*(np.asarray(ego.position) - offset - log_xy[steps]))))
            crashed, offroad = bool(info.get("crash", False)), bool(info.get("out_of_road", False))
            results.append(
                ReplayMetrics(
                    scenario_id=str(sd["metadata"].get("scenario_id", sd.get("id", path.stem))),
                    applicable=applicable,
                    steps=steps,
                    success=bool(info.get("arrive_dest", False)) and not crashed and not offroad,
                    crashed=crashed,
                    offroad=offroad,
                    route_completion=float(np.clip(info.get("route_completion", 0.0), 0.0, 1.0)),
                    ade_m=float(np.mean(errors)) if errors else float("nan"),
                    fde_m=errors[-1] if errors else float("nan"),
                    mean_speed_mps=float(np.mean(speeds)) if speeds else 0.0,
                )
            )
    finally:
        env.close()
    return results


def metrics_table(results: list[ReplayMetrics]):
    """The per-episode metrics as a pandas DataFrame (one row per episode)."""
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in results])
