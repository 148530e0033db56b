"""Batched simulator building blocks against highway-env's own functions, on random states.

Each test draws random states, evaluates highway-env's implementation object by object and
the batched one on whole arrays, and compares (float64: agreement to ~1e-9).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from highway_env import utils
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.controller import ControlledVehicle
from highway_env.vehicle.kinematics import Vehicle
from highway_env.vehicle.objects import Obstacle

from drive_drail.scenario import load_scenario
from drive_drail.sim.batched import behavior, collision, physics, spawn
from drive_drail.sim.batched.road import road_from_network
from drive_drail.sim.batched.scene_exchange import check_road, write_scene
from drive_drail.sim.batched.spawn import scene_family
from drive_drail.sim.batched.vehicles import empty_state
from drive_drail.sim.highway import HighwayAdapter, RampMergeEnv
from drive_drail.sim.stop_env import StopEnv

SCENARIOS = ["lane_change", "merge", "stop"]


@pytest.fixture(scope="module")
def merge_adapter():
    adapter = HighwayAdapter(load_scenario("merge"))
    adapter.reset(seed=0)
    return adapter


def test_constants_are_highway_env_constants():
    assert (behavior.ACC_MAX_MPS2, behavior.COMFORT_ACC_MAX_MPS2, behavior.COMFORT_ACC_MIN_MPS2) == (IDMVehicle.ACC_MAX, IDMVehicle.COMFORT_ACC_MAX, IDMVehicle.COMFORT_ACC_MIN)
    assert (behavior.DISTANCE_WANTED_M, behavior.TIME_WANTED_S, behavior.DELTA) == (IDMVehicle.DISTANCE_WANTED, IDMVehicle.TIME_WANTED, IDMVehicle.DELTA)
    assert list(behavior.DELTA_RANGE) == list(IDMVehicle.DELTA_RANGE)
    assert (behavior.POLITENESS, behavior.LANE_CHANGE_MIN_ACC_GAIN_MPS2) == (IDMVehicle.POLITENESS, IDMVehicle.LANE_CHANGE_MIN_ACC_GAIN)
    assert (behavior.LANE_CHANGE_MAX_BRAKING_IMPOSED_MPS2, behavior.LANE_CHANGE_DELAY_S) == (IDMVehicle.LANE_CHANGE_MAX_BRAKING_IMPOSED, IDMVehicle.LANE_CHANGE_DELAY)
    assert (behavior.KP_HEADING, behavior.KP_LATERAL, behavior.TAU_PURSUIT_S) == (ControlledVehicle.KP_HEADING, ControlledVehicle.KP_LATERAL, ControlledVehicle.TAU_PURSUIT)
    assert behavior.MAX_STEERING_ANGLE_RAD == ControlledVehicle.MAX_STEERING_ANGLE
    assert (physics.MAX_SPEED_MPS, physics.MIN_SPEED_MPS) == (Vehicle.MAX_SPEED, Vehicle.MIN_SPEED)


def test_spawn_defaults_are_the_environments_defaults():
    from highway_env.envs.highway_env import HighwayEnvFast

    for env_id, cls in (("highway-fast-v0", HighwayEnvFast), ("drive-drail-highway/merge-ramp-v0", RampMergeEnv), ("drive-drail-highway/stop-v0", StopEnv)):
        defaults = cls.default_config()
        for key, value in spawn.DEFAULTS[env_id].items():
            assert defaults[key] == value, (env_id, key)


@pytest.mark.parametrize("name", SCENARIOS)
def test_roads_match_highway_env_and_closest_lane(name):
    scenario = load_scenario(name)
    adapter = HighwayAdapter(scenario)
    adapter.reset(seed=1)
    lanes = scene_family(scenario).lanes
    check_road(lanes, adapter.hw_env)  # raises on any difference
    net = adapter.road.network
    rng = np.random.default_rng(0)
    x = rng.uniform(-20, 480, 300)
    y = rng.uniform(-4, 18, 300)
    h = rng.uniform(-0.6, 0.6, 300)
    ours = lanes.closest_lane(torch.tensor(x), torch.tensor(y), torch.tensor(h)).numpy()
    theirs = [lanes.index(net.get_closest_lane_index(np.array([a, b]), c)) for a, b, c in zip(x, y, h)]
    np.testing.assert_array_equal(ours, theirs)
    for i in range(lanes.count):  # next lanes follow RoadNetwork.next_lane
        lane = net.get_lane(lanes.name(i))
        end = lane.position(lane.length - 1.0, 0.0)
        assert lanes.name(int(lanes.next_lane[i])) == net.next_lane(lanes.name(i), position=end)


def _random_vehicles(adapter, rng, count):
    road = adapter.road
    out = []
    for _ in range(count):
        lane_index = ("a", "b", int(rng.integers(2))) if rng.random() < 0.6 else ("k", "b", 0)
        lane = road.network.get_lane(lane_index)
        s = rng.uniform(0, lane.length)
        v = IDMVehicle(road, lane.position(s, rng.normal(0, 1.0)), lane.heading_at(s) + rng.normal(0, 0.1), rng.uniform(-1, 35))
        v.DELTA = rng.uniform(3.5, 4.5)
        v.target_speed = rng.uniform(0, 40)
        v.action = {"steering": rng.uniform(-1.0, 1.0), "acceleration": rng.uniform(-6, 6)}
        out.append(v)
    return out


def _load(adapter, vehicles):
    """A 1-scene batched state holding ``vehicles`` (replacing the road's vehicles)."""
    hw = adapter.hw_env
    hw.road.vehicles = list(vehicles)
    hw.controlled_vehicles = [vehicles[0]]
    lanes = road_from_network(hw.road.network)
    objects = [o for o in hw.road.objects if o.solid]
    st = empty_state(1, len(vehicles), len(objects))
    write_scene(st, 0, lanes, hw)
    return st, lanes


def test_bicycle_step_matches_vehicle_step(merge_adapter):
    rng = np.random.default_rng(1)
    vehicles = _random_vehicles(merge_adapter, rng, 40)
    vehicles[3].crashed = True
    vehicles[5].speed = 45.0
    vehicles[7].impact = np.array([0.3, -0.2])
    st, lanes = _load(merge_adapter, vehicles)
    physics.bicycle_step(st, lanes, 1 / 15)
    for v in vehicles:
        Vehicle.step(v, 1 / 15)  # the bicycle model (IDMVehicle.step adds the timer, checked below)
        v.timer += 1 / 15
    n = len(vehicles)  # slot n holds the (unmoved) obstacle
    np.testing.assert_allclose(st.x_m[0, :n].numpy(), [v.position[0] for v in vehicles], rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.y_m[0, :n].numpy(), [v.position[1] for v in vehicles], rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.heading_rad[0, :n].numpy(), [v.heading for v in vehicles], rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.speed_mps[0, :n].numpy(), [v.speed for v in vehicles], rtol=0, atol=1e-12)
    np.testing.assert_allclose(st.timer_s[0, :n].numpy(), [v.timer for v in vehicles], rtol=0, atol=1e-12)
    assert st.crashed[0, :n].tolist() == [v.crashed for v in vehicles]
    assert [lanes.name(int(i)) for i in st.lane[0, :n]] == [v.lane_index for v in vehicles]


def test_controller_idm_and_neighbours_match(merge_adapter):
    rng = np.random.default_rng(2)
    vehicles = _random_vehicles(merge_adapter, rng, 30)
    st, lanes = _load(merge_adapter, vehicles)
    road = merge_adapter.road
    n = len(vehicles)
    targets = [lanes.index(v.lane_index) for v in vehicles]
    steer = behavior.steering_control(st, lanes, torch.tensor([targets])).numpy()[0]
    np.testing.assert_allclose(steer, [v.steering_control(v.lane_index) for v in vehicles], rtol=0, atol=1e-10)

    proj = behavior.project_on_lanes(st, lanes)
    b = torch.zeros(n, dtype=torch.int64)
    me = torch.arange(n)
    for lane_index in [("a", "b", 0), ("a", "b", 1), ("k", "b", 0), ("b", "c", 2)]:
        nb = behavior.neighbours(proj, b, me, torch.full((n,), lanes.index(lane_index)))
        expect = [road.neighbour_vehicles(v, lane_index) for v in vehicles]
        slot = {id(o): k for k, o in enumerate(vehicles + [o for o in road.objects if o.solid])}
        assert nb.front.tolist() == [slot[id(f)] if f is not None else -1 for f, _ in expect]
        assert nb.rear.tolist() == [slot[id(r)] if r is not None else -1 for _, r in expect]

        # IDM: every vehicle evaluating its neighbours with its own DELTA (including obstacles and None)
        delta = st.delta[0, :n]
        acc = behavior.idm_acceleration(st, lanes, b, nb.rear, me, delta).numpy()
        ref = [v.acceleration(ego_vehicle=r, front_vehicle=v) for v, (f, r) in zip(vehicles, expect)]
        np.testing.assert_allclose(acc, ref, rtol=1e-12, atol=1e-9)
        acc = behavior.idm_acceleration(st, lanes, b, me, nb.front, delta).numpy()
        ref = [v.acceleration(ego_vehicle=v, front_vehicle=f) for v, (f, r) in zip(vehicles, expect)]
        np.testing.assert_allclose(acc, ref, rtol=1e-12, atol=1e-9)


def test_mobil_matches(merge_adapter):
    rng = np.random.default_rng(3)
    road = merge_adapter.road
    agree = decided = 0
    for _ in range(10):
        vehicles = []
        for _ in range(16):
            lane_index = ("a", "b", int(rng.integers(2)))
            lane = road.network.get_lane(lane_index)
            s = rng.uniform(0, 120)
            v = IDMVehicle(road, lane.position(s, 0.0), 0.0, rng.uniform(15, 30))
            v.DELTA = rng.uniform(3.5, 4.5)
            vehicles.append(v)
        st, lanes = _load(merge_adapter, vehicles)
        proj = behavior.project_on_lanes(st, lanes)
        n = len(vehicles)
        b, me = torch.zeros(n, dtype=torch.int64), torch.arange(n)
        cur = behavior.neighbours(proj, b, me, st.lane[0, :n])
        other = torch.tensor([lanes.index(("a", "b", 1 - v.lane_index[2])) for v in vehicles])
        new = behavior.neighbours(proj, b, me, other)
        ours = behavior.mobil(st, lanes, b, me, new, cur).tolist()
        theirs = [v.mobil(("a", "b", 1 - v.lane_index[2])) for v in vehicles]
        agree += sum(a == t for a, t in zip(ours, theirs))
        decided += sum(theirs)
    assert agree == 160 and decided > 0


def test_polygon_intersection_matches_utils():
    rng = np.random.default_rng(4)
    k = 2000
    xa, ya = rng.uniform(-7, 7, k), rng.uniform(-3, 3, k)
    ha, hb = rng.uniform(-0.5, 0.5, k), rng.uniform(-0.5, 0.5, k)
    va, vb = rng.uniform(0, 30, k), rng.uniform(0, 30, k)
    length, width = 5.0, 2.0
    dt = 0.1
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    box_a = collision._corners(t(xa), t(ya), t(ha), t(np.full(k, length)), t(np.full(k, width)))
    box_b = collision._corners(t(np.zeros(k)), t(np.zeros(k)), t(hb), t(np.full(k, length)), t(np.full(k, width)))
    disp = lambda v, h: torch.stack([t(v * np.cos(h) * dt), t(v * np.sin(h) * dt)], dim=1)  # noqa: E731
    inter, will, trans = collision.are_polygons_intersecting(box_a, box_b, disp(va, ha), disp(vb, hb))
    hits = 0
    for i in range(k):
        a = Vehicle(None, [xa[i], ya[i]], ha[i], va[i])
        b = Vehicle(None, [0.0, 0.0], hb[i], vb[i])
        ri, rw, rt = utils.are_polygons_intersecting(a.polygon(), b.polygon(), a.velocity * dt, b.velocity * dt)
        assert (bool(inter[i]), bool(will[i])) == (ri, rw)
        if rw:
            np.testing.assert_allclose(trans[i].numpy(), rt, atol=1e-12)
        hits += ri
    assert 100 < hits < k - 100  # both outcomes are exercised


def test_collisions_mark_crashes_and_impacts_like_road_step(merge_adapter):
    road = merge_adapter.road
    lane = road.network.get_lane(("a", "b", 0))
    # a chain: 0 hits 1 (moving), 2 overlaps 1, 3 clear; every vehicle checks collisions
    vehicles = [IDMVehicle(road, lane.position(s, lat), h, v) for s, lat, h, v in [(50, 0, 0, 30), (54.5, 0.3, 0.05, 10), (58.0, 1.0, -0.1, 12), (90, 0, 0, 20)]]
    st, lanes = _load(merge_adapter, vehicles)
    collision.handle_collisions(st, 1 / 15)
    for i, v in enumerate(vehicles):
        for other in vehicles[i + 1 :] + [o for o in road.objects]:
            v.handle_collisions(other, 1 / 15)
    assert st.crashed[0, : len(vehicles)].tolist() == [v.crashed for v in vehicles]
    assert st.has_impact[0, : len(vehicles)].tolist() == [v.impact is not None for v in vehicles]
    for i, v in enumerate(vehicles):
        if v.impact is not None:
            np.testing.assert_allclose([float(st.impact_x_m[0, i]), float(st.impact_y_m[0, i])], v.impact, atol=1e-12)
    assert any(v.crashed for v in vehicles) and not vehicles[3].crashed


def test_obstacle_collision_pushes_the_vehicle_only(merge_adapter):
    road = merge_adapter.road
    obstacle = next(o for o in road.objects if isinstance(o, Obstacle))
    v = IDMVehicle(road, obstacle.position - np.array([3.2, 0.0]), 0.0, 20.0)
    st, lanes = _load(merge_adapter, [v])
    collision.handle_collisions(st, 1 / 15)
    v.handle_collisions(obstacle, 1 / 15)
    assert bool(st.has_impact[0, 0]) and v.impact is not None
    np.testing.assert_allclose([float(st.impact_x_m[0, 0]), float(st.impact_y_m[0, 0])], v.impact, atol=1e-12)
    assert not bool(st.has_impact[0, 1])  # obstacles never move


@pytest.mark.parametrize("name", SCENARIOS)
def test_spawner_is_deterministic_per_seed_and_draws_valid_scenes(name):
    family = scene_family(load_scenario(name))
    a = family.spawn(np.array([5, 6, 7]))
    b = family.spawn(np.array([7, 100, 5]))
    for field, t in a.tensors().items():
        assert torch.equal(t[0], getattr(b, field)[2]), field  # seed 5 alike in both batches
        assert torch.equal(t[2], getattr(b, field)[0]), field
    many = family.spawn(np.arange(300))
    assert not torch.equal(many.x_m[0], many.x_m[1])
    assert bool(many.valid[:, 0].all()) and not bool(many.is_idm[:, 0].any())
    # every placed IDM vehicle sits on a lane centre, with highway-env's timer rule
    idm = many.is_idm
    lane = many.lane
    lanes = family.lanes
    s = many.x_m - lanes.x_start_m[lane]
    r = lanes.lateral_m(lane, s, many.y_m)
    assert float(torch.abs(r[idm]).max()) < 1e-9
    timer = torch.remainder((many.x_m + many.y_m) * np.pi, 1.0)
    assert torch.equal(many.timer_s[idm], timer[idm])
    assert float(many.delta[idm].min()) >= 3.5 and float(many.delta[idm].max()) <= 4.5
