"""Scripted MetaDrive experts: MetaDrive's own IDM policy driving the adapter's ego.

MetaDrive's ``IDMPolicy`` (a port of highway-env's IDM with PID lane tracking, tuned
for MetaDrive's 10 Hz decisions) is bound to the ego each episode. Each policy step it
reads the road (neighbours by the lidar's broad-phase query, lanes from the ego's
navigation) and returns MetaDrive's ``[steering, throttle_brake]``; the expert turns that
into the spec action with the ego's own limits
(:func:`drive_drail.sim.metadrive.metadrive_to_spec_unit`), clipped to the spec ranges.
The adapter applies it exactly like a learned policy's action, so the expert is
realisable by a policy acting at the same rate, and ``info['action_physical']`` is the
action the car executed.

- longitudinal: IDM toward ``cruise_kmh`` behind the object ahead within ``look_ahead_m``
  (vehicles, the stalled vehicle, traffic objects); its brake demand is clipped to the
  spec's -5 m/s^2 like any policy's;
- lateral: ``lane_change=True``: MetaDrive's overtaking rule (change lanes when the
  neighbouring lane is faster by 10 km/h and the gaps exceed 15 m) and its mandatory
  change where the road loses a lane, which is how it leaves an on-ramp's acceleration
  lane (it creeps at 5 km/h until the gap is safe); ``lane_change=False``: lane keeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drive_drail.scenario import ScenarioError, did_you_mean
from drive_drail.sim.metadrive import MetaDriveAdapter, metadrive_to_spec_unit


@dataclass
class MetaDriveExpert:
    """A scripted expert for the MetaDrive adapter. ``act(env)`` returns a spec action in [-1, 1]^2."""

    name: str
    lane_change: bool
    """Allow IDM's lane changes (overtaking, leaving a lane that ends)."""
    cruise_kmh: float
    """IDM's desired speed [km/h] (MetaDrive's traffic cruises at 30 km/h)."""
    look_ahead_m: float = 50.0
    """Range within which IDM reacts to objects ahead [m]. MetaDrive's traffic uses 30 m, tuned for
    its full 16 m/s^2 brake; the spec's -5 m/s^2 floor needs a longer view at the expert's speeds."""

    def __post_init__(self) -> None:
        self._policy = None
        self._ego = None

    def reset(self, env: MetaDriveAdapter) -> None:
        """Start a new episode (call after ``env.reset``)."""
        from metadrive.policy.idm_policy import IDMPolicy

        class _ExpertIDM(IDMPolicy):
            NORMAL_SPEED = self.cruise_kmh
            MAX_LONG_DIST = self.look_ahead_m

        self._policy = _ExpertIDM(control_object=env.ego, random_seed=int(env.episode_seed or 0))
        self._policy.enable_lane_change = self.lane_change
        self._ego = env.ego

    def act(self, env: MetaDriveAdapter) -> np.ndarray:
        """The expert's action for the current state: ``[accel, steer]`` in [-1, 1], shape ``[2]``."""
        if self._policy is None or self._ego is not env.ego:
            self.reset(env)
        md_action = np.asarray(self._policy.act(), dtype=np.float64)
        return metadrive_to_spec_unit(md_action, env.limits).astype(np.float32)


EXPERTS = {
    "metadrive_idm": dict(lane_change=True, cruise_kmh=40.0),
    "metadrive_idm_merge": dict(lane_change=True, cruise_kmh=35.0),
    "metadrive_idm_keep": dict(lane_change=False, cruise_kmh=35.0, look_ahead_m=30.0),
}
"""Expert name (a scenario's ``expert``) -> settings."""


def make_expert(name: str, source: str = "<memory>") -> MetaDriveExpert:
    """The named expert; an unknown name raises :class:`ScenarioError` naming the scenario file."""
    if name not in EXPERTS:
        raise ScenarioError(source, f"unknown MetaDrive expert '{name}'{did_you_mean(name, EXPERTS)} (available: {', '.join(EXPERTS)})", key="expert")
    return MetaDriveExpert(name=name, **EXPERTS[name])
