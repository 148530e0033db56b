"""A highway-env environment for the stop task: halt behind a stalled vehicle in the ego lane.

A straight multi-lane road; a stalled vehicle (an immovable highway-env ``Obstacle`` the
size of a car) blocks the ego's lane some distance ahead. The ego must come to a full
stop behind it without touching it and stay stopped. IDM traffic cruises on the other
lanes (lane changes disabled, so the blocked lane stays the ego's problem).

Registered with gymnasium as ``drive-drail-highway/stop-v0`` by :func:`register` (idempotent;
the highway adapter calls it). Frame: highway-env's (x along the road, y to the right).
"""

from __future__ import annotations

import gymnasium as gym
from highway_env.envs.common.abstract import AbstractEnv
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.objects import Obstacle

ENV_ID = "drive-drail-highway/stop-v0"


class StalledVehicle(Obstacle):
    """An immovable, car-sized obstacle (highway-env treats ``Obstacle`` as static and solid)."""

    LENGTH = 4.5  # [m]
    WIDTH = 1.8  # [m]


class StopEnv(AbstractEnv):
    """Straight road, a stalled vehicle ahead in the ego lane, IDM traffic on the other lanes.

    The adapter reads the obstacle from ``self.stop_obstacle`` and the ego from ``self.vehicle``.
    Reward, termination and truncation are the adapter's (this env's are neutral).
    """

    stop_obstacle: StalledVehicle | None = None

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config.update(
            {
                "lanes_count": 2,
                "road_length_m": 1000.0,
                "speed_limit_mps": 20.0,
                "ego_start_x_m": 50.0,
                "ego_speed_mps": [15.0, 20.0],  # uniform range of the ego's initial speed
                "ego_lane_id": None,  # None: a random lane
                "obstacle_distance_m": [90.0, 140.0],  # uniform range, ego centre to obstacle centre
                "vehicles_count": 4,  # IDM traffic on the lanes other than the ego's
                "vehicles_spacing_m": 25.0,  # minimum gap between traffic centres on one lane
                "traffic_span_m": [-60.0, 200.0],  # traffic placed this far behind / ahead of the ego [m]
                "duration": 1e9,  # the adapter owns the time limit
            }
        )
        return config

    def _reset(self) -> None:
        cfg = self.config
        net = RoadNetwork.straight_road_network(
            cfg["lanes_count"], length=cfg["road_length_m"], speed_limit=cfg["speed_limit_mps"]
        )
        self.road = Road(network=net, np_random=self.np_random, record_history=cfg["show_trajectories"])
        rng = self.np_random

        lanes = cfg["lanes_count"]
        ego_id = int(rng.integers(lanes)) if cfg["ego_lane_id"] is None else int(cfg["ego_lane_id"])
        ego_lane = net.get_lane(("0", "1", ego_id))
        x0 = float(cfg["ego_start_x_m"])
        ego = self.action_type.vehicle_class(
            self.road, ego_lane.position(x0, 0.0), ego_lane.heading_at(x0), float(rng.uniform(*cfg["ego_speed_mps"]))
        )
        self.road.vehicles.append(ego)
        self.vehicle = ego

        x_obstacle = x0 + float(rng.uniform(*cfg["obstacle_distance_m"]))
        self.stop_obstacle = StalledVehicle(self.road, ego_lane.position(x_obstacle, 0.0), ego_lane.heading_at(x_obstacle))
        self.road.objects.append(self.stop_obstacle)

        # Traffic on the other lanes, rejection-sampled to keep a minimum spacing.
        other_lanes = [i for i in range(lanes) if i != ego_id]
        taken: dict[int, list[float]] = {i: [] for i in other_lanes}
        for _ in range(cfg["vehicles_count"] if other_lanes else 0):
            for _try in range(20):
                lane_id = int(rng.choice(other_lanes))
                x = x0 + float(rng.uniform(*cfg["traffic_span_m"]))
                if all(abs(x - p) >= cfg["vehicles_spacing_m"] for p in taken[lane_id]):
                    break
            else:
                continue
            taken[lane_id].append(x)
            lane = net.get_lane(("0", "1", lane_id))
            speed = float(rng.uniform(0.8, 1.0)) * cfg["speed_limit_mps"]
            v = IDMVehicle(self.road, lane.position(x, 0.0), lane.heading_at(x), speed, enable_lane_change=False)
            v.randomize_behavior()
            self.road.vehicles.append(v)

    def _reward(self, action) -> float:
        return 0.0

    def _is_terminated(self) -> bool:
        return bool(self.vehicle.crashed)

    def _is_truncated(self) -> bool:
        return self.time >= self.config["duration"]


def register() -> None:
    """Register :data:`ENV_ID` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="drive_drail.sim.stop_env:StopEnv")

