"""A scenario's MetaDrive config: MetaDrive's own keys checked, the adapter's keys split off, sensors off."""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np

from drive_drail.scenario import Scenario, ScenarioError, check_simulator_settings, did_you_mean
from drive_drail.sim.metadrive.lanes import ramp_spawn_lane

ENV_IDS = ("MetaDriveEnv",)
"""Scenario ``env_id`` values this adapter runs (MetaDrive's procedural-map environment)."""

ADAPTER_KEYS: dict[str, tuple[object, str]] = {
    "ego_on_ramp": (False, "start the ego on the first on-ramp ('r' block) of the map instead of the first block"),
    "stall_distance_m": ([60.0, 90.0], "stop: uniform range of the distance from the ego to the stalled vehicle [m]"),
}
"""Settings the adapter understands on top of MetaDrive's own config keys: key -> (default, doc)."""

RESERVED_CONFIG_KEYS = {
    "use_render": "the adapter runs MetaDrive headless (see sim/metadrive/assets.py)",
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


def metadrive_config(scenario: Scenario, split: str) -> tuple[dict, dict]:
    """``(MetaDriveEnv config, adapter settings)`` of a split, with scenario keys checked.

    Scenario ``env_config`` keys are MetaDrive's own (``MetaDriveEnv.default_config()``)
    or the adapter's (:data:`ADAPTER_KEYS`); reserved keys raise.
    """
    if scenario.env_id not in ENV_IDS:
        raise ScenarioError(scenario.source, f"unknown MetaDrive environment '{scenario.env_id}'{did_you_mean(scenario.env_id, ENV_IDS)} (available: {', '.join(ENV_IDS)})", key="env_id")
    from metadrive.envs import MetaDriveEnv

    check_simulator_settings(scenario, MetaDriveEnv.default_config(), RESERVED_CONFIG_KEYS,
                             f"MetaDrive's {scenario.env_id} or the adapter", extra=ADAPTER_KEYS)
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
