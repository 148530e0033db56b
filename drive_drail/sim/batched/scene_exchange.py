"""Scene exchange between highway-env and the batched simulator.

:func:`import_scene` copies a live highway-env scene (the road check and every vehicle's
and obstacle's full state: position, heading, speed, lane, target lane, target speed,
MOBIL timer, IDM exponent DELTA, stored action, pending impact, crashed and collision
flags) into one scene of a :class:`BatchedHighwayEnv`, so both simulators continue from
identical states; :func:`export_scene` writes a batched scene back into a highway-env
scene with the same objects. The differential tests rely on it, and so does checking a
policy on identical starts (:func:`import_highway_starts`).

Slot order is highway-env's: ego, ``road.vehicles`` (without the ego), solid ``road.objects``.
"""

from __future__ import annotations

import numpy as np
import torch
from highway_env.envs.common.abstract import AbstractEnv
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.kinematics import Vehicle
from highway_env.vehicle.objects import Landmark, Obstacle

from drive_drail.sim.batched.env import BatchedHighwayEnv
from drive_drail.sim.batched.road import LaneTable, road_from_network
from drive_drail.sim.batched.vehicles import FLOAT_FIELDS, VehicleState
from drive_drail.sim.highway import HighwayAdapter


def _hw_env(source: HighwayAdapter | AbstractEnv) -> AbstractEnv:
    return source.hw_env if isinstance(source, HighwayAdapter) else source


def scene_objects(hw: AbstractEnv) -> tuple[list, list]:
    """(vehicles with the ego first, solid obstacles) of a highway-env scene, in slot order."""
    ego = hw.vehicle
    vehicles = [ego] + [v for v in hw.road.vehicles if v is not ego]
    objects = [o for o in hw.road.objects if not isinstance(o, Landmark) and o.solid and o.collidable]
    return vehicles, objects


def check_road(lanes: LaneTable, hw: AbstractEnv) -> None:
    """Raise ``ValueError`` unless the highway-env road is the batched env's road."""
    theirs = road_from_network(hw.road.network)
    ours = lanes.to("cpu", torch.float64)
    same = theirs.edges == ours.edges and all(
        torch.equal(getattr(theirs, k), getattr(ours, k)) if not getattr(theirs, k).is_floating_point() else torch.allclose(getattr(theirs, k), getattr(ours, k), rtol=0, atol=1e-9)
        for k, v in theirs.__dict__.items()
        if isinstance(v, torch.Tensor)
    )
    if not same:
        raise ValueError("the highway-env scene's road differs from the batched environment's road (another scenario or split?)")


def write_scene(state: VehicleState, row: int, lanes: LaneTable, hw: AbstractEnv) -> None:
    """Copy the highway-env scene ``hw`` into row ``row`` of ``state`` (padding the unused slots)."""
    vehicles, objects = scene_objects(hw)
    n, m = state.n_vehicles, state.x_m.shape[1]
    if len(vehicles) > n or len(objects) > m - n:
        raise ValueError(f"scene has {len(vehicles)} vehicles and {len(objects)} obstacles; the batched env holds {n} and {m - n}")
    table = road_from_network(hw.road.network)
    values: dict[str, list] = {k: [] for k in state.tensors()}
    pad_v = n - len(vehicles)
    slots = vehicles + [None] * pad_v + objects + [None] * (m - n - len(objects))
    for o in slots:
        if o is None:
            row_values = dict(x_m=1.0e7, y_m=0.0, heading_rad=0.0, speed_mps=0.0, length_m=5.0, width_m=2.0, target_speed_mps=0.0, timer_s=0.0, delta=4.0,
                              steer_rad=0.0, accel_mps2=0.0, impact_x_m=0.0, impact_y_m=0.0, lane=0, target_lane=0, valid=False, is_vehicle=False,
                              is_idm=False, lane_change=False, check_collisions=False, crashed=False, has_impact=False)  # fmt: skip
        else:
            if isinstance(o, Vehicle) and type(o) not in (Vehicle, IDMVehicle):
                raise ValueError(f"the batched simulator models highway-env's Vehicle and IDMVehicle, not {type(o).__name__}")
            if not isinstance(o, Vehicle) and not isinstance(o, Obstacle):
                raise ValueError(f"unsupported road object {type(o).__name__}")
            if getattr(o, "route", None):
                raise ValueError("vehicles with planned routes are not modelled by the batched simulator")
            idm = isinstance(o, IDMVehicle)
            lane = table.index(o.lane_index)
            impact = getattr(o, "impact", None) if isinstance(o, Vehicle) else None
            action = getattr(o, "action", {"steering": 0.0, "acceleration": 0.0})
            row_values = dict(
                x_m=float(o.position[0]), y_m=float(o.position[1]), heading_rad=float(o.heading), speed_mps=float(o.speed),
                length_m=float(o.LENGTH), width_m=float(o.WIDTH), target_speed_mps=float(getattr(o, "target_speed", 0.0)),
                timer_s=float(getattr(o, "timer", 0.0)), delta=float(o.DELTA) if idm else 4.0,
                steer_rad=float(action["steering"]), accel_mps2=float(action["acceleration"]),
                impact_x_m=float(impact[0]) if impact is not None else 0.0, impact_y_m=float(impact[1]) if impact is not None else 0.0,
                lane=lane, target_lane=table.index(o.target_lane_index) if idm else lane, valid=True, is_vehicle=isinstance(o, Vehicle),
                is_idm=idm, lane_change=bool(getattr(o, "enable_lane_change", False)), check_collisions=bool(o.check_collisions),
                crashed=bool(o.crashed), has_impact=impact is not None,
            )  # fmt: skip
        for k, v in row_values.items():
            values[k].append(v)
    for k, t in state.tensors().items():
        t[row] = torch.as_tensor(values[k], dtype=t.dtype, device=t.device)


def import_scene(env: BatchedHighwayEnv, scene: int, source: HighwayAdapter | AbstractEnv) -> None:
    """Load a live highway-env scene into scene ``scene`` of ``env`` (road checked, every object's state).

    From a :class:`HighwayAdapter`, the episode bookkeeping (start, goal, steps, lane changes,
    stop timer, episode seed) is copied too, so both continue the same episode; from a bare
    highway-env environment a new episode starts at the imported state.
    """
    hw = _hw_env(source)
    check_road(env.lanes, hw)
    write_scene(env.state, scene, env.lanes, hw)
    env.ego_idm[scene] = bool(env.state.is_idm[scene, 0])
    if isinstance(source, HighwayAdapter):
        env.x_start[scene] = source._x_start
        env.x_goal[scene] = source._x_goal
        env.policy_steps[scene] = source.policy_steps
        env.lane_changes[scene] = source._lane_changes
        env.stopped_s[scene] = source._stopped_s
        env.last_lane[scene] = env.lanes.index(source._last_lane)
        env.last_action[scene] = source._last_action
        env.episode_seed[scene] = source.episode_seed if source.episode_seed is not None else -1
    else:
        env.start_episodes(np.array([scene]))


def export_scene(env: BatchedHighwayEnv, scene: int, target: HighwayAdapter | AbstractEnv) -> None:
    """Write scene ``scene`` of ``env`` into a highway-env scene holding the same objects in the same order."""
    hw = _hw_env(target)
    check_road(env.lanes, hw)
    vehicles, objects = scene_objects(hw)
    st = env.state
    n = st.n_vehicles
    valid = st.valid[scene].cpu().numpy()
    if int(valid[:n].sum()) != len(vehicles) or int(valid[n:].sum()) != len(objects):
        raise ValueError("the target highway-env scene holds other objects than the batched scene")
    table = env.lanes
    rows = {k: getattr(st, k)[scene].cpu().numpy() for k in (*FLOAT_FIELDS, "lane", "target_lane", "crashed", "has_impact")}
    for slot, o in zip([i for i in range(n) if valid[i]] + [n + i for i in range(len(objects))], vehicles + objects):
        o.position = np.array([rows["x_m"][slot], rows["y_m"][slot]], dtype=np.float64)
        o.heading = float(rows["heading_rad"][slot])
        o.speed = float(rows["speed_mps"][slot])
        o.crashed = bool(rows["crashed"][slot])
        o.lane_index = table.name(int(rows["lane"][slot]))
        o.lane = hw.road.network.get_lane(o.lane_index)
        if isinstance(o, Vehicle):
            o.action = {"steering": float(rows["steer_rad"][slot]), "acceleration": float(rows["accel_mps2"][slot])}
            o.impact = np.array([rows["impact_x_m"][slot], rows["impact_y_m"][slot]]) if rows["has_impact"][slot] else None
        if isinstance(o, IDMVehicle):
            o.target_lane_index = table.name(int(rows["target_lane"][slot]))
            o.target_speed = float(rows["target_speed_mps"][slot])
            o.timer = float(rows["timer_s"][slot])


def import_highway_starts(env: BatchedHighwayEnv, scenes: np.ndarray, seeds: np.ndarray, adapter: HighwayAdapter | None = None) -> HighwayAdapter:
    """Start scene ``scenes[i]`` from highway-env's own initial scene of episode seed ``seeds[i]``.

    Builds (or reuses) one adapter for the env's scenario split, resets it with each seed and
    imports the scene: identical starts for checking a policy in both simulators.
    """
    adapter = adapter or HighwayAdapter(env.scenario, split=env.split)
    for scene, seed in zip(np.asarray(scenes).tolist(), np.asarray(seeds).tolist()):  # setup, not stepping
        adapter.reset(seed=int(seed))
        import_scene(env, int(scene), adapter)
    return adapter
