"""What every simulator adapter provides; learning code sees only this.

An adapter is a ``gymnasium.Env`` whose observation is the spec observation
(``Box(-inf, inf, (OBS_DIM,), float32)``) and whose action is the spec action in
``[-1, 1]^2`` (:func:`drive_drail.spec.action_to_physical` gives m/s^2 and rad).
The environment reward is 0: imitation learning supplies its own. The episode's
task outcome travels in ``info`` under the keys below, so evaluation and training
logs read the same fields from either simulator.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from drive_drail import spec, tasks
from drive_drail.scenario import Scenario, ScenarioError

# info keys set on every step (floats / bools)
INFO_CRASHED = "crashed"  # ego collided with a vehicle or an obstacle
INFO_OFFROAD = "offroad"  # ego left the drivable road
INFO_SUCCESS = "success"  # the scenario's success criterion holds (set at episode end)
INFO_ROUTE_COMPLETION = "route_completion"  # fraction of the route driven, in [0, 1]
INFO_SPEED_MPS = "speed_mps"
INFO_LANE_INDEX = "lane_index"
INFO_TIME_S = "time_s"


class SpecAdapter(gym.Env):
    """What every concrete adapter sets up the same way: the scenario it runs, the spec spaces,
    and the two clocks (``policy_dt_s``, ``sim_dt_s`` [s])."""

    metadata = {"render_modes": []}
    render_mode: str | None = None
    """``"rgb_array"`` (where the adapter's metadata lists it): :meth:`render` returns the frame."""
    simulator: ClassVar[str]
    """The ``simulator`` value of the scenarios this adapter runs."""
    label: ClassVar[str]
    """Names the adapter in errors."""

    def __init__(self, scenario: Scenario, split: str):
        super().__init__()
        if scenario.simulator != self.simulator:
            raise ScenarioError(scenario.source, f"the {self.label} adapter cannot run simulator '{scenario.simulator}'", key="simulator")
        self.scenario = scenario
        self.split = split
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (spec.ACTION_DIM,), np.float32)
        self.policy_dt_s = 1.0 / scenario.policy_frequency_hz
        self.sim_dt_s = 1.0 / scenario.simulation_frequency_hz

    def render(self):
        """gymnasium's render: the current frame ``[H, W, 3]`` uint8 with ``render_mode="rgb_array"``, else None."""
        if self.render_mode is None:
            return None
        if self.render_mode not in self.metadata["render_modes"]:
            raise ScenarioError(self.scenario.source, f"the {self.label} adapter cannot render {self.render_mode!r} "
                                f"(it renders: {', '.join(self.metadata['render_modes']) or 'nothing'})", key="simulator")
        return self.render_rgb()

    def render_rgb(self) -> np.ndarray:
        """The current frame, ``[H, W, 3]`` uint8 (adapters that render implement this)."""
        raise NotImplementedError


def step_info(
    scenario,
    *,
    final: bool,
    crashed: bool,
    offroad: bool,
    route_completion: float,
    speed_mps: float,
    lane_index: int,
    time_s: float,
    merged: bool | None = None,
    gap_m: float | None = None,
    stopped_s: float | None = None,
    arrived: bool = False,
    **extras,
) -> dict:
    """The info dict of one step, with the task's success rule applied (:mod:`drive_drail.tasks`,
    the rule the batched simulator applies to its ``[B]`` arrays too). ``success`` is True only
    on the ``final`` step of a successful episode."""
    info = {
        INFO_CRASHED: crashed,
        INFO_OFFROAD: offroad,
        INFO_SUCCESS: False,
        INFO_ROUTE_COMPLETION: route_completion,
        INFO_SPEED_MPS: speed_mps,
        INFO_LANE_INDEX: lane_index,
        INFO_TIME_S: time_s,
        **extras,
    }
    if scenario.task == "stop":
        info["gap_m"], info["stopped_s"] = gap_m, stopped_s
    elif scenario.task == "merge":
        info["merged"] = merged
    m = tasks.Measurements.one(crashed=crashed, offroad=offroad, route_completion=route_completion, arrived=arrived,
                               merged=merged, gap_m=gap_m, stopped_s=stopped_s)
    info[INFO_SUCCESS] = bool(final and tasks.task(scenario.task).success(scenario.success, m)[0])
    return info
