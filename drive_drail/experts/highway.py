"""Scripted highway-env experts: highway-env's own IDM and MOBIL models driving the adapter's ego.

Each policy step the expert copies the ego's state into a *shadow* ``IDMVehicle``, lets
highway-env's models decide with the shadow standing in for the ego on the road, and
returns the decision as a spec action in [-1, 1]^2. The adapter then applies it exactly
like a learned policy's action (held for one policy period), so the expert's physical
actions ``info['action_physical']`` are the ego's actual (accel_mps2, steer_rad) in the
simulator, and the expert is realisable by a policy acting at the same rate.

- longitudinal: IDM (``IDMVehicle.acceleration``) toward the lane speed limit, following
  the vehicle or obstacle ahead in the current lane (and in the target lane while
  changing lanes), never braking below standstill within one policy period;
- lateral, per expert: MOBIL lane changes (``idm_mobil``), a mandatory merge off the
  on-ramp when MOBIL's safety criterion holds (``idm_merge``), or lane keeping
  (``idm_stop``: the IDM treats the stalled vehicle as its leader and stops behind it);
- steering: highway-env's cascaded lane-tracking controller, with gains slowed to stay
  stable under a 5 Hz zero-order hold (highway-env tunes it for 15 Hz updates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from highway_env.vehicle.behavior import IDMVehicle
from tqdm import tqdm

from drive_drail import spec
from drive_drail.scenario import Scenario, ScenarioError, did_you_mean
from drive_drail.sim.base import INFO_CRASHED, INFO_OFFROAD, INFO_ROUTE_COMPLETION, INFO_SUCCESS
from drive_drail.sim.highway import HighwayAdapter

LANE_POLICIES = ("mobil", "merge", "keep")


class _ShadowDriver(IDMVehicle):
    """An IDM/MOBIL vehicle that only decides; its state is copied from the ego each policy step."""

    TAU_HEADING = 0.5  # [s] heading time constant (highway-env: 0.2 s at 15 Hz updates)
    TAU_LATERAL = 1.2  # [s] lateral position time constant (highway-env: 0.6 s)
    TAU_PURSUIT = 0.5 * TAU_HEADING  # [s]
    KP_HEADING = 1 / TAU_HEADING
    KP_LATERAL = 1 / TAU_LATERAL


@dataclass
class HighwayExpert:
    """A scripted expert for the highway adapter. ``act(env)`` returns a spec action in [-1, 1]^2."""

    name: str
    lane_policy: str
    """``mobil``: MOBIL lane changes; ``merge``: leave the on-ramp when safe, then MOBIL; ``keep``: no lane change."""

    SETTLED_OFFSET_M = 1.0
    """A new lane change is considered only within this distance of the lane centre [m]."""
    MERGE_BRAKING_IMPOSED_MPS2 = (3.0, 4.5)
    """Braking a merge may impose on the new follower at the start / end of the acceleration
    lane [m/s^2] (MOBIL uses 2 for optional lane changes; IDM traffic brakes up to 5)."""
    GAP_SEEK_BRAKE_MPS2 = 3.0
    """Strongest braking used to drop back into a gap [m/s^2]."""
    END_BRAKE_TRIGGER_MPS2 = 4.0
    """Brake for the end of the acceleration lane once stopping needs more than this [m/s^2]."""
    END_MARGIN_M = 3.0
    """Bumper gap kept to the end of the acceleration lane [m] (room to steer out from a standstill)."""

    def __post_init__(self) -> None:
        if self.lane_policy not in LANE_POLICIES:
            raise ValueError(f"lane_policy {self.lane_policy!r}: not one of {', '.join(LANE_POLICIES)}")
        self._shadow: _ShadowDriver | None = None
        self._road = None

    def reset(self, env: HighwayAdapter) -> None:
        """Start a new episode (call after ``env.reset``)."""
        ego = env.ego
        self._road = env.road
        speed_limit = ego.lane.speed_limit if ego.lane.speed_limit is not None else ego.speed
        self._shadow = _ShadowDriver(env.road, ego.position.copy(), ego.heading, ego.speed, target_speed=speed_limit)
        self._shadow.target_lane_index = ego.lane_index

    def act(self, env: HighwayAdapter) -> np.ndarray:
        """The expert's action for the current state: ``[accel, steer]`` in [-1, 1], shape ``[2]``."""
        if self._shadow is None or self._road is not env.road:
            self.reset(env)
        accel_mps2, steer_hw_rad = self._decide(env)
        # Never brake through zero speed within one held action (no reversing at a stop).
        accel_mps2 = float(spec.no_reverse_accel_mps2(accel_mps2, float(env.ego.speed), env.policy_dt_s))
        physical = np.array([accel_mps2, -steer_hw_rad])  # mirror highway-env's steering into the spec frame
        lo = np.array([spec.ACCEL_RANGE_MPS2[0], spec.STEER_RANGE_RAD[0]])
        hi = np.array([spec.ACCEL_RANGE_MPS2[1], spec.STEER_RANGE_RAD[1]])
        return spec.action_to_unit(np.clip(physical, lo, hi))

    def _decide(self, env: HighwayAdapter) -> tuple[float, float]:
        ego, road, shadow = env.ego, env.road, self._shadow
        shadow.position = ego.position.copy()
        shadow.heading, shadow.speed = ego.heading, ego.speed
        shadow.lane_index, shadow.lane = ego.lane_index, ego.lane
        shadow.crashed = ego.crashed
        # The shadow stands in for the ego while highway-env's models query the road.
        slot = next(i for i, v in enumerate(road.vehicles) if v is ego)
        road.vehicles[slot] = shadow
        try:
            shadow.follow_road()
            if self.lane_policy == "merge" and shadow.lane_index in env.on_ramp_lanes:
                accel = self._merge_accel(shadow, env)
            else:
                settled = abs(shadow.lane.local_coordinates(shadow.position)[1]) < self.SETTLED_OFFSET_M
                if self.lane_policy != "keep" and (settled or shadow.lane_index != shadow.target_lane_index):
                    shadow.change_lane_policy()  # MOBIL; no new decision before reaching the lane centre
                accel = self._idm_accel(shadow, shadow.lane_index)
                if shadow.lane_index != shadow.target_lane_index:
                    # While changing lanes, respect the leader of the target lane too.
                    accel = min(accel, self._idm_accel(shadow, shadow.target_lane_index))
            steer = shadow.steering_control(shadow.target_lane_index)
        finally:
            road.vehicles[slot] = ego
        shadow.timer += env.policy_dt_s  # the shadow is never stepped: advance MOBIL's decision timer
        return float(np.clip(accel, -shadow.ACC_MAX, shadow.ACC_MAX)), float(np.clip(steer, -shadow.MAX_STEERING_ANGLE, shadow.MAX_STEERING_ANGLE))

    @staticmethod
    def _idm_accel(shadow: _ShadowDriver, lane_index: tuple) -> float:
        """IDM acceleration behind the vehicle or obstacle ahead on ``lane_index``."""
        front, rear = shadow.road.neighbour_vehicles(shadow, lane_index)
        return float(shadow.acceleration(ego_vehicle=shadow, front_vehicle=front, rear_vehicle=rear))

    # ---------------------------------------------------------------- merging off the ramp

    def _merge_accel(self, shadow: _ShadowDriver, env: HighwayAdapter) -> float:
        """Gap acceptance on the on-ramp: adapt speed to a gap in the main lane, merge when it is safe.

        The gap is the one behind the nearest main-lane vehicle ahead, or behind a vehicle
        alongside/behind that the ego cannot cut in front of safely (MOBIL's criterion:
        the new follower would brake harder than ``MERGE_BRAKING_IMPOSED_MPS2``).
        The end of the acceleration lane is not a leader to follow (IDM would brake far
        too early); the ego brakes for it only when the braking needed to stop exceeds
        ``END_BRAKE_TRIGGER_MPS2``. Main roads run along +x, so gaps are x differences.
        """
        network = shadow.road.network
        accel_lane = next(li for li in env.on_ramp_lanes if len(network.graph[li[0]][li[1]]) > 1)
        target = (accel_lane[0], accel_lane[1], accel_lane[2] - 1)
        main = sorted(
            (
                (float(v.position[0] - shadow.position[0]), v)
                for v in shadow.road.vehicles
                if v is not shadow
                and v.lane_index not in env.on_ramp_lanes
                # on the target lane, or changing into it
                and target[2] in (v.lane_index[2], getattr(v, "target_lane_index", v.lane_index)[2])
            ),
            key=lambda dx_v: dx_v[0],
        )
        leader = next(((dx, v) for dx, v in main if dx >= 0), None)
        follower = next(((dx, v) for dx, v in reversed(main) if dx < 0), None)

        committed = shadow.target_lane_index not in env.on_ramp_lanes
        if committed and shadow.lane_index == accel_lane and any(abs(dx) < shadow.LENGTH + 1 for dx, _ in main):
            # Someone moved in alongside (a main-road lane change): abort and look for a new gap.
            shadow.target_lane_index, committed = accel_lane, False
        # MOBIL's safety criterion for the new follower, with the ego as its IDM leader; the
        # braking a merge may impose grows along the acceleration lane (urgency).
        lane = network.get_lane(accel_lane)
        progress = float(np.clip(lane.local_coordinates(shadow.position)[0] / lane.length, 0.0, 1.0))
        imposed_mps2 = self.MERGE_BRAKING_IMPOSED_MPS2[0] + progress * (self.MERGE_BRAKING_IMPOSED_MPS2[1] - self.MERGE_BRAKING_IMPOSED_MPS2[0])
        cut_in_ok = follower is None or (
            -follower[0] > shadow.LENGTH + 2
            and shadow.acceleration(ego_vehicle=follower[1], front_vehicle=shadow) >= -imposed_mps2
        )
        if not cut_in_ok and not committed:
            leader = follower  # drop back behind the vehicle we cannot cut in front of
        # IDM toward the speed limit behind the chosen main-lane leader (a negative gap brakes to drop back).
        accel = float(shadow.acceleration(ego_vehicle=shadow, front_vehicle=leader[1] if leader else None))
        accel = max(accel, -self.GAP_SEEK_BRAKE_MPS2)
        if not committed and shadow.lane_index == accel_lane and cut_in_ok and (leader is None or leader[0] > shadow.LENGTH + 2):
            shadow.target_lane_index = target
        # End of the acceleration lane: brake only when stopping is getting urgent.
        end = min((o for o in shadow.road.objects if o.lane_index == accel_lane), key=lambda o: o.position[0], default=None)
        if end is not None:
            room = float(end.position[0] - end.LENGTH / 2 - shadow.position[0] - shadow.LENGTH / 2) - self.END_MARGIN_M
            needed = max(shadow.speed, 0.0) ** 2 / (2 * max(room, 0.1))
            if needed > self.END_BRAKE_TRIGGER_MPS2:
                accel = min(accel, -needed)
            if room <= 0.0 and not committed:
                accel = min(accel, -self.GAP_SEEK_BRAKE_MPS2)  # wait at the end (act() stops at zero speed)
        return accel


EXPERTS: dict[str, str] = {"idm_mobil": "mobil", "idm_merge": "merge", "idm_stop": "keep"}
"""Expert name -> lane policy."""


def make_expert(name: str, source: str = "<scenario>") -> HighwayExpert:
    """The scripted expert called ``name`` (a scenario's ``expert`` key)."""
    if name not in EXPERTS:
        raise ScenarioError(source, f"unknown highway expert '{name}'{did_you_mean(name, EXPERTS)} (available: {', '.join(EXPERTS)})", key="expert")
    return HighwayExpert(name=name, lane_policy=EXPERTS[name])


def run_episode(env: HighwayAdapter, expert: HighwayExpert, seed: int) -> dict:
    """Play one episode of ``expert`` from episode seed ``seed``; return the final info (plus ``steps``)."""
    env.reset(seed=seed)
    expert.reset(env)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(expert.act(env))
        steps += 1
        if terminated or truncated:
            return {**info, "steps": steps, "terminated": terminated, "truncated": truncated}


def expert_success_rate(scenario: Scenario, n_episodes: int, split: str = "eval", progress: bool = False) -> dict:
    """Success of the scenario's expert over the first ``n_episodes`` seeds of ``split``.

    Returns ``{success_rate, collision_rate, offroad_rate, mean_route_completion, n_episodes, seeds, failed_seeds}``.
    """
    seeds = scenario.seeds_for(split)[:n_episodes]
    env = HighwayAdapter(scenario, split=split)
    expert = make_expert(scenario.expert, scenario.source)
    finals = []
    for seed in tqdm(seeds, desc=f"{scenario.name} expert", disable=None if progress else True):
        finals.append(run_episode(env, expert, seed))
    env.close()
    n = max(len(finals), 1)
    return {
        "success_rate": sum(f[INFO_SUCCESS] for f in finals) / n,
        "collision_rate": sum(f[INFO_CRASHED] for f in finals) / n,
        "offroad_rate": sum(f[INFO_OFFROAD] for f in finals) / n,
        "mean_route_completion": float(np.mean([f[INFO_ROUTE_COMPLETION] for f in finals])) if finals else 0.0,
        "n_episodes": len(finals),
        "seeds": list(seeds),
        "failed_seeds": [s for s, f in zip(seeds, finals) if not f[INFO_SUCCESS]],
    }
