"""The MetaDrive adapter: spec frame and lanes, the action map both ways, outcomes, experts, log parity.

Short real MetaDrive runs (headless, state-only). MetaDrive holds one engine per process,
so every test closes its adapter.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("metadrive")

from drive_drail import spec  # noqa: E402
from drive_drail.experts.metadrive import make_expert  # noqa: E402
from drive_drail.logs.simlog import SimLogReader  # noqa: E402
from drive_drail.pairs.convert import ConvertConfig, convert  # noqa: E402
from drive_drail.record import record_episodes  # noqa: E402
from drive_drail.scenario import ScenarioError, load_scenario, scenario_from_dict  # noqa: E402
from drive_drail.sim import base, make_env  # noqa: E402
from drive_drail.sim.metadrive import (  # noqa: E402
    MetaDriveAdapter,
    lane_frame,
    metadrive_to_physical,
    metadrive_to_spec_unit,
    physical_to_metadrive,
    spec_unit_to_metadrive,
)
from drive_drail.sim.metadrive.objects import heading_rad_of, kinematics, speed_mps  # noqa: E402


@pytest.fixture
def lane_change_env():
    env = make_env(load_scenario("metadrive_lane_change"), split="train")
    yield env
    env.close()


def test_make_env_dispatches_to_the_metadrive_adapter(lane_change_env):
    assert isinstance(lane_change_env, MetaDriveAdapter)
    obs, info = lane_change_env.reset(seed=3)
    assert obs.shape == (spec.OBS_DIM,) and obs.dtype == np.float32
    for key in (base.INFO_CRASHED, base.INFO_OFFROAD, base.INFO_SUCCESS, base.INFO_ROUTE_COMPLETION, base.INFO_SPEED_MPS, base.INFO_LANE_INDEX, base.INFO_TIME_S):
        assert key in info


def test_observation_is_spec_observe_of_the_scene(lane_change_env):
    env = lane_change_env
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs, spec.observe(env.scene()))
    for _ in range(5):
        obs, *_ = env.step(np.array([0.4, 0.02]))
        np.testing.assert_array_equal(obs, spec.observe(env.scene()))
    scene = env.scene()
    assert len(scene.others) >= 1  # traffic exists and is in the scene
    assert obs[spec.OBS_NAMES.index("ego_v_long")] * 40.0 == pytest.approx(env.ego.speed, abs=0.05)
    # The per-object read skips MetaDrive's wrappers: it must still give their numbers.
    for obj in env._objects():
        x, y, vx, vy, h = kinematics(obj)
        assert (x, y) == tuple(float(c) for c in obj.position) and h == float(obj.heading_theta)
        speed = float(obj.velocity[0]) * np.cos(h) + float(obj.velocity[1]) * np.sin(h)
        np.testing.assert_allclose([vx, vy], [speed * np.cos(h), speed * np.sin(h)], rtol=0, atol=1e-12)
        assert speed_mps(obj) == obj.speed
    # the heading's wrap to (-pi, pi], all the way round, for a vehicle and a traffic object
    from metadrive.component.static_object.traffic_object import TrafficCone

    cone = env.engine.spawn_object(TrafficCone, position=(30.0, 3.5), heading_theta=0.3)
    assert cone in env._objects()
    for obj in (env.ego, cone):
        for heading_rad in np.linspace(-2 * math.pi, 2 * math.pi, 49).tolist() + [math.pi, -math.pi]:
            obj.set_heading_theta(heading_rad)
            assert heading_rad_of(obj) == obj.heading_theta


def test_spec_frame_and_lane_conventions(lane_change_env):
    """Lane 0 is the leftmost lane (largest lateral position, y left) and offsets are + left."""
    env = lane_change_env
    env.reset(seed=0)
    ego = env.ego
    lanes = env.road_network.graph[ego.lane_index[0]][ego.lane_index[1]]
    heading = lanes[0].heading_theta_at(0.0)
    left = np.array([-math.sin(heading), math.cos(heading)])
    lateral = [float(np.dot(lane.position(5.0, 0.0), left)) for lane in lanes]
    assert lateral == sorted(lateral, reverse=True)  # id 0 leftmost, ids grow to the right
    assert heading == pytest.approx(0.0, abs=1e-6)  # the first block runs along +x
    # Steer left: heading grows (CCW), y grows, the offset from the lane centre grows (+ = left).
    start = env.frame_rows().columns
    for _ in range(8):
        env.step(spec.action_to_unit(np.array([2.0, 0.15])))
    rows = env.frame_rows().columns
    assert rows["heading_rad"][0] > 0.005 and rows["y_m"][0] > start["y_m"][0]
    assert rows["lane_index"][0] == start["lane_index"][0]  # still in its lane, only nudged left
    assert rows["lane_offset_m"][0] > start["lane_offset_m"][0] + 0.01
    assert rows["lane_count"][0] == len(lanes)


def test_action_map_round_trips_both_ways(lane_change_env):
    env = lane_change_env
    env.reset(seed=2)
    limits = env.limits
    rng = np.random.default_rng(0)
    md = rng.uniform(-1, 1, size=(500, 2))
    np.testing.assert_allclose(physical_to_metadrive(metadrive_to_physical(md, limits), limits), md, atol=1e-12)
    # Physical actions inside the car's range round trip; outside, they clip to its limits.
    phys = np.stack([rng.uniform(-limits.max_brake_mps2, limits.max_accel_mps2, 500), rng.uniform(-limits.max_spec_steer_rad, limits.max_spec_steer_rad, 500)], 1)
    np.testing.assert_allclose(metadrive_to_physical(physical_to_metadrive(phys, limits), limits), phys, atol=1e-7)
    clipped = metadrive_to_physical(physical_to_metadrive(np.array([[9.0, 1.4]]), limits), limits)[0]
    assert clipped == pytest.approx([limits.max_accel_mps2, limits.max_spec_steer_rad])
    # Zero acceleration is a vanishing brake, never MetaDrive's coasting brake (throttle_brake == 0).
    assert physical_to_metadrive(np.array([0.0, 0.0]), limits)[1] < 0.0
    # Spec unit actions the car can execute round trip through MetaDrive's action.
    unit = spec.action_to_unit(phys)
    inside = (spec.action_to_physical(unit)[:, 0] >= spec.ACCEL_RANGE_MPS2[0])
    back = metadrive_to_spec_unit(spec_unit_to_metadrive(unit, limits), limits)
    np.testing.assert_allclose(back[inside], unit[inside], atol=1e-7)
    # Limits are the ego's real ones: 40 deg steering, 4 wheels of 750-850 N on 1100 kg.
    assert limits.max_steering_rad == pytest.approx(math.radians(env.ego.config["max_steering"]))
    assert 2.7 < limits.max_accel_mps2 < 3.1


def test_commanded_accel_and_steer_match_the_measured_motion(lane_change_env):
    env = lane_change_env
    env.reset(seed=4)
    ego = env.ego

    def run(accel_mps2: float, steer_rad: float, steps: int) -> tuple[float, float, float]:
        v0, h0 = float(ego.speed), float(ego.heading_theta)
        for _ in range(steps):
            env.step(spec.action_to_unit(np.array([accel_mps2, steer_rad])))
        t = steps * env.policy_dt_s
        return (float(ego.speed) - v0) / t, (float(ego.heading_theta) - h0) / t, 0.5 * (v0 + float(ego.speed))

    accel, _, _ = run(2.0, 0.0, 10)
    assert accel == pytest.approx(2.0, abs=0.1)
    accel, _, _ = run(1.0, 0.0, 10)
    assert accel == pytest.approx(1.0, abs=0.1)
    accel, _, _ = run(-3.0, 0.0, 5)
    assert accel == pytest.approx(-3.0, abs=0.3)
    accel, _, _ = run(0.0, 0.0, 5)
    assert accel == pytest.approx(0.0, abs=0.1)
    # Steering: left is +, and the yaw rate is the SPEC's bicycle model's (highway-env's, on the
    # car's length), less the tyres' understeer (0.95-0.98 in steady state), not MetaDrive's own ~1.8x.
    run(0.0, 0.05, 3)  # past the steering transient
    _, yaw_rate, v = run(0.0, 0.05, 5)
    spec_bicycle = v * math.sin(math.atan(0.5 * math.tan(0.05))) / (ego.LENGTH / 2)
    assert 0.9 * spec_bicycle < yaw_rate < 1.02 * spec_bicycle
    assert run(0.3, -0.05, 5)[1] < 0.0


def test_unknown_and_reserved_config_keys_name_the_key():
    raw = {
        "name": "x", "simulator": "metadrive", "env_id": "MetaDriveEnv", "task": "stop", "expert": "metadrive_idm_keep",
        "policy_frequency_hz": 10, "simulation_frequency_hz": 50, "episode_seconds": 5,
        "train_seeds": [0, 1], "eval_seeds": [5], "success": {"stopped_before_m": 15, "max_final_speed_mps": 0.5, "hold_seconds": 2},
        "demos": {"episodes": 1},
    }  # fmt: skip
    bad = scenario_from_dict({**raw, "env_config": {"trafic_density": 0.1}}, source="bad.yaml")
    with pytest.raises(ScenarioError, match=r"bad.yaml: key 'env_config.trafic_density'.*did you mean 'traffic_density'"):
        make_env(bad)
    reserved = scenario_from_dict({**raw, "env_config": {"use_render": True}}, source="r.yaml")
    with pytest.raises(ScenarioError, match=r"r.yaml: key 'env_config.use_render': reserved"):
        make_env(reserved)
    with pytest.raises(ScenarioError, match="unknown MetaDrive expert"):
        make_expert("idm_mobil", "x.yaml")


def test_one_engine_per_process_is_enforced(lane_change_env):
    lane_change_env.reset(seed=0)
    with pytest.raises(RuntimeError, match="one engine per process"):
        make_env(load_scenario("metadrive_stop"))
    lane_change_env.close()
    other = make_env(load_scenario("metadrive_stop"))  # free again once closed
    try:
        assert other.reset()[0].shape == (spec.OBS_DIM,)
    finally:
        other.close()


@pytest.mark.parametrize("name", ["metadrive_stop", "metadrive_merge"])
def test_expert_episode_succeeds(name):
    """The scripted experts solve their scenarios (stop: full stop behind the stalled car; merge: off the ramp)."""
    scenario = load_scenario(name)
    env = make_env(scenario)
    expert = make_expert(scenario.expert, scenario.source)
    try:
        _, info = env.reset(seed=scenario.train_seeds[0])
        expert.reset(env)
        if name == "metadrive_stop":
            assert any(abs(v.vx_mps) < 1e-6 and v.lane == info[base.INFO_LANE_INDEX] for v in env.scene().others)
        else:
            assert env.frame_rows().columns["on_ramp"][0]
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(expert.act(env))
            done = terminated or truncated
        assert info[base.INFO_SUCCESS], info
        assert not info[base.INFO_CRASHED] and not info[base.INFO_OFFROAD]
        if name == "metadrive_stop":
            assert 0.0 < info["gap_m"] <= scenario.success.stopped_before_m and info[base.INFO_SPEED_MPS] < 0.5
        else:
            assert info["merged"] and info["arrive_dest"]
    finally:
        env.close()


def test_log_derived_observation_equals_the_adapter_observation(tmp_path):
    """Parity: record a MetaDrive expert episode, convert the log, and replay it in the adapter."""
    scenario = dataclasses.replace(load_scenario("metadrive_lane_change"), episode_seconds=3.0)
    path = record_episodes(scenario, n_episodes=1, seed=0, out_path=tmp_path / "md.parquet", progress=False)
    log = SimLogReader().read(path)
    assert log.frame_rate_hz == scenario.simulation_frequency_hz
    pairs = convert(log, ConvertConfig(action_hz=scenario.policy_frequency_hz, egos="all"))
    ego_pairs = pairs[pairs["track_id"] == 0].sort_values("frame")
    log_obs = ego_pairs[list(spec.OBS_NAMES)].to_numpy()
    assert len(ego_pairs) >= scenario.max_policy_steps - 2

    env = make_env(scenario)
    expert = make_expert(scenario.expert, scenario.source)
    sim_obs = []
    try:
        obs, _ = env.reset(seed=scenario.train_seeds[0])
        expert.reset(env)
        for _ in range(len(ego_pairs)):
            sim_obs.append(obs)
            obs, _, terminated, truncated, _ = env.step(expert.act(env))
            assert not terminated
    finally:
        env.close()
    frames = ego_pairs["frame"].to_numpy()
    np.testing.assert_array_equal(frames, np.arange(len(frames)) * scenario.frames_per_action)
    np.testing.assert_allclose(log_obs, np.array(sim_obs), atol=1e-4)
    # Every recorded vehicle carries lane context; the recorded ego is the adapter's.
    assert (log.tracks["lane_index"] >= 0).all()


def test_no_traffic_car_starts_on_top_of_the_ego():
    """On these held-out merge seeds MetaDrive places a car overlapping the ego on the on-ramp;
    the adapter removes it, so no episode ends in a crash at its first step."""
    env = make_env(load_scenario("metadrive_merge"), split="eval")
    try:
        for seed in (100008, 100010, 100011):
            env.reset(seed=seed)
            ego = env.ego
            for vehicle in env.engine.traffic_manager.traffic_vehicles:
                assert np.hypot(*(np.asarray(vehicle.position) - np.asarray(ego.position))) > (ego.LENGTH + vehicle.LENGTH) / 2
            *_, info = env.step(np.array([0.0, 0.0]))
            assert not info[base.INFO_CRASHED], seed
    finally:
        env.close()


@pytest.mark.parametrize("name", ["metadrive_lane_change", "metadrive_merge", "metadrive_stop"])
def test_lane_frames_equal_metadrives_lane_geometry(name):
    """The per-episode straight-lane shortcut gives lane_frame's numbers (and local_coordinates'
    distance along the lane) for points on and off every lane of the map, straight or not."""
    env = make_env(load_scenario(name), split="train")
    try:
        env.reset()
        frames, network = env._lane_frames, env.road_network
        rng = np.random.default_rng(0)
        straight = 0
        for lanes in (lanes for tos in network.graph.values() for lanes in tos.values()):
            for lane in lanes:
                straight += frames._straight(lane) is not None
                for _ in range(3):
                    x, y = (float(c) for c in lane.position(rng.uniform(0, lane.length), rng.uniform(-4, 4)))
                    fast, general = frames.frame(lane, x, y), lane_frame(lane, network, x, y)
                    assert fast[:2] == general[:2] and fast[3] == general[3]
                    assert fast[2] == pytest.approx(general[2], abs=1e-9)
                    assert frames.longitudinal_m(lane, x, y) == pytest.approx(lane.local_coordinates((x, y))[0], abs=1e-9)
        assert straight > 0
    finally:
        env.close()
