"""What every simulator adapter provides; learning code sees only this.

An adapter is a ``gymnasium.Env`` whose observation is the spec observation
(``Box(-inf, inf, (OBS_DIM,), float32)``) and whose action is the spec action in
``[-1, 1]^2`` (:func:`drive_drail.spec.action_to_physical` gives m/s^2 and rad).
The environment reward is 0: imitation learning supplies its own. The episode's
task outcome travels in ``info`` under the keys below, so evaluation and training
logs read the same fields from either simulator.
"""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym

from drive_drail import spec

# info keys set on every step (floats / bools)
INFO_CRASHED = "crashed"  # ego collided with a vehicle or an obstacle
INFO_OFFROAD = "offroad"  # ego left the drivable road
INFO_SUCCESS = "success"  # the scenario's success criterion holds (set at episode end)
INFO_ROUTE_COMPLETION = "route_completion"  # fraction of the route driven, in [0, 1]
INFO_SPEED_MPS = "speed_mps"
INFO_LANE_INDEX = "lane_index"
INFO_TIME_S = "time_s"


class DrivingEnv(Protocol):
    """The adapter interface (a gymnasium.Env with these extras)."""

    observation_space: gym.spaces.Box
    action_space: gym.spaces.Box

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple: ...

    def step(self, action_unit) -> tuple: ...

    def scene(self) -> spec.Scene:
        """The current scene snapshot (the observation is ``spec.observe(self.scene())``)."""
        ...

    def close(self) -> None: ...
