"""The highway-env adapter: spec observation, frame mirroring, exact action mapping, episode ends, experts."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from drive_drail import spec
from drive_drail.experts.highway import expert_success_rate, make_expert, run_episode
from drive_drail.scenario import ScenarioError, load_scenario
from drive_drail.sim import base, make_env
from drive_drail.sim.highway import HighwayAdapter, scene_from_rows
from drive_drail.sim.stop_env import ENV_ID as STOP_ENV_ID
from drive_drail.sim.stop_env import register as register_stop

INFO_KEYS = (
    base.INFO_CRASHED,
    base.INFO_OFFROAD,
    base.INFO_SUCCESS,
    base.INFO_ROUTE_COMPLETION,
    base.INFO_SPEED_MPS,
    base.INFO_LANE_INDEX,
    base.INFO_TIME_S,
)
# Neighbour feature offsets inside the observation.
N_FEAT = len(spec.NEIGHBOUR_FEATURES)
EGO_DIM = len(spec.EGO_FEATURES)
F = {f.name: i for i, f in enumerate(spec.NEIGHBOUR_FEATURES)}


def small(name: str, episode_seconds: float | None = None, **env_config) -> object:
    s = load_scenario(name)
    return dataclasses.replace(
        s,
        episode_seconds=episode_seconds or s.episode_seconds,
        env_config={**s.env_config, **env_config},
    )


def neighbours(obs: np.ndarray) -> np.ndarray:
    """``[K, F]`` raw (unnormalised) neighbour features."""
    scale = np.array([f.scale for f in spec.NEIGHBOUR_FEATURES])
    return obs[EGO_DIM:].reshape(spec.K_NEIGHBOURS, N_FEAT) * scale


@pytest.mark.parametrize("name", ["lane_change", "merge", "stop"])
def test_observation_is_spec_observe_of_scene(name):
    env = make_env(small(name, vehicles_count=6), seed=0, split="train")
    obs, info = env.reset(seed=3)
    assert obs.shape == (spec.OBS_DIM,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, spec.observe(env.scene()))
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        np.testing.assert_array_equal(obs, spec.observe(env.scene()))
        assert reward == 0.0
        assert all(k in info for k in INFO_KEYS)
    # The scene holds every vehicle and every solid obstacle on the road.
    solid = [o for o in env.road.objects if o.solid]
    assert len(env.scene().others) == len(env.road.vehicles) - 1 + len(solid)
    env.close()


def test_vehicle_in_lower_lane_id_appears_to_the_left():
    env = make_env(small("stop", lanes_count=2, ego_lane_id=1, vehicles_count=1, obstacle_distance_m=[90, 95]), seed=0)
    env.reset(seed=0)
    ego = env.ego
    other = next(v for v in env.road.vehicles if v is not ego)
    left_lane = env.road.network.get_lane(("0", "1", 0))  # lane id 0 = leftmost, at smaller y_hw
    other.position = left_lane.position(ego.position[0] + 20.0, 0.0)
    other.on_state_update()
    assert other.position[1] < ego.position[1]  # highway-env: left is -y

    obs = spec.observe(env.scene())
    assert obs[4] * spec.EGO_FEATURES[4].scale == 1  # ego lane index
    slot = neighbours(obs)[0]  # nearest: the vehicle we placed
    assert slot[F["present"]] == 1
    assert slot[F["dx"]] == pytest.approx(20.0)
    assert slot[F["dy"]] == pytest.approx(4.0)  # one lane width to the LEFT: dy > 0
    assert slot[F["dlane"]] == -1  # dlane + = to the right


def test_steering_left_turns_the_ego_left():
    env = make_env(small("lane_change", vehicles_count=2), seed=0)
    env.reset(seed=1)
    before = env.scene().ego
    for _ in range(3):
        env.step(np.array([0.0, 0.3]))  # + steer = left in the spec
    after = env.scene().ego
    assert after.heading_rad > before.heading_rad + 0.01
    assert after.y_m > before.y_m + 0.05
    assert after.vy_mps > 0
    assert env.ego.heading < 0  # highway-env's own frame: left turn = negative heading


def test_action_mapping_is_exact_end_to_end():
    env = make_env(small("lane_change", vehicles_count=2), seed=0)
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    dt = env.policy_dt_s
    actions = [np.array([1.0, -0.02]), np.array([-1.0, 0.02]), np.zeros(2), *(rng.uniform(-1, 1, (4, 2)) * [1, 0.02])]
    for action in [*actions, np.array([0.3, 1.0]), np.array([-0.3, -1.0])]:  # full steering last
        speed_before = env.ego.speed
        _, _, terminated, _, info = env.step(action)
        accel_mps2, steer_rad = spec.action_to_physical(action)
        applied = env.ego.action  # what highway-env's bicycle model integrated
        assert applied["acceleration"] == pytest.approx(accel_mps2, abs=1e-12)
        assert applied["steering"] == pytest.approx(-steer_rad, abs=1e-12)  # mirrored
        np.testing.assert_allclose(info["action_physical"], [accel_mps2, steer_rad], atol=1e-12)
        # The acceleration was held for the whole policy period.
        assert env.ego.speed - speed_before == pytest.approx(accel_mps2 * dt, abs=1e-9)
        assert not env.ego.crashed


def test_crash_terminates_and_time_limit_truncates():
    # Driving straight into the stalled vehicle: a termination (a crash), not a truncation.
    env = make_env(small("stop", episode_seconds=30, vehicles_count=0, obstacle_distance_m=[40, 41]), seed=0)
    env.reset(seed=0)
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(np.array([0.5, 0.0]))
        if terminated or truncated:
            break
    assert terminated and not truncated and info[base.INFO_CRASHED] and not info[base.INFO_SUCCESS]

    env = make_env(small("stop", episode_seconds=1.0, vehicles_count=0), seed=0)
    env.reset(seed=0)
    ends = [env.step(np.zeros(2))[2:4] for _ in range(5)]
    assert ends[:4] == [(False, False)] * 4 and ends[4] == (False, True)


def test_reset_seeds_come_from_the_split_and_replay_exactly():
    scenario = small("stop")
    train = make_env(scenario, seed=7, split="train")
    seen = {train.reset()[1]["episode_seed"] for _ in range(5)}
    assert seen <= set(scenario.train_seeds) and len(seen) == 5
    evaluation = make_env(scenario, seed=0, split="dense")
    assert [evaluation.reset()[1]["episode_seed"] for _ in range(3)] == list(scenario.eval_seeds[:3])

    obs_a, _ = train.reset(seed=11)
    obs_b, _ = evaluation.reset(seed=11)  # dense traffic: same seed, other scene
    obs_c, _ = make_env(scenario).reset(seed=11)
    np.testing.assert_array_equal(obs_a, obs_c)
    assert len(evaluation.road.vehicles) > len(train.road.vehicles)


def test_misspelled_env_config_key_names_the_key():
    scenario = small("stop")
    bad = dataclasses.replace(scenario, env_config={"vehicle_count": 3})
    with pytest.raises(ScenarioError, match=r"stop.yaml: key 'env_config.vehicle_count'.*did you mean 'vehicles_count'"):
        make_env(bad)
    reserved = dataclasses.replace(scenario, splits={"x": {"policy_frequency": 2}})
    with pytest.raises(ScenarioError, match=r"'splits.x.policy_frequency': reserved"):
        make_env(reserved, split="x")
    with pytest.raises(ScenarioError, match="'simulator': no adapter"):
        make_env(dataclasses.replace(scenario, simulator="carla"))
    with pytest.raises(ScenarioError, match="'simulator'"):
        HighwayAdapter(dataclasses.replace(scenario, simulator="metadrive"))


def test_stop_env_registers_idempotently():
    register_stop()
    register_stop()
    assert STOP_ENV_ID in gym.registry


def test_merge_ego_starts_on_the_ramp():
    env = make_env(small("merge", vehicles_count=2), seed=0)
    env.reset(seed=0)
    assert env.ego.lane_index == ("j", "k", 0)
    rows = env.frame_rows().columns
    assert rows["on_ramp"][0] and rows["lane_count"][0] == 1
    assert not rows["on_ramp"][1 : len(env.road.vehicles)].any()  # traffic is on the main road


def test_scene_batch_for_all_observes_every_vehicle():
    env = make_env(small("lane_change", vehicles_count=5), seed=0)
    obs, _ = env.reset(seed=4)
    columns = env.frame_rows().columns
    batch_obs = spec.observe_batch(env.scene_batch_for_all())
    assert batch_obs.shape == (len(env.road.vehicles), spec.OBS_DIM)
    np.testing.assert_array_equal(batch_obs[0], obs)
    for k in range(batch_obs.shape[0]):
        np.testing.assert_allclose(batch_obs[k], spec.observe(scene_from_rows(columns, k)), atol=1e-6)


def test_stop_expert_stops_before_the_obstacle_and_holds():
    scenario = small("stop", episode_seconds=9, ego_speed_mps=[10, 12], obstacle_distance_m=[40, 50], vehicles_count=2)
    env = HighwayAdapter(scenario, split="eval")
    info = run_episode(env, make_expert("idm_stop"), seed=scenario.eval_seeds[0])
    assert info["truncated"] and not info[base.INFO_CRASHED]
    assert 0.0 < info["gap_m"] <= scenario.success.stopped_before_m
    assert abs(info[base.INFO_SPEED_MPS]) < 0.5 and info["stopped_s"] >= 2.0
    assert info[base.INFO_SUCCESS]


def test_expert_success_rate_reports_each_seed():
    scenario = small("stop", episode_seconds=9, ego_speed_mps=[10, 12], obstacle_distance_m=[40, 50], vehicles_count=1)
    stats = expert_success_rate(scenario, n_episodes=2)
    assert stats["n_episodes"] == 2 and stats["seeds"] == list(scenario.eval_seeds[:2])
    assert stats["success_rate"] == 1.0 and stats["collision_rate"] == 0.0 and stats["failed_seeds"] == []


@pytest.mark.parametrize("name", ["merge", "lane_change"])
def test_experts_drive_their_scenario_without_crashing(name):
    scenario = small(name, episode_seconds=14, vehicles_count=4)
    env = HighwayAdapter(scenario, split="eval")
    info = run_episode(env, make_expert(scenario.expert), seed=scenario.eval_seeds[0])
    assert not info[base.INFO_CRASHED] and not info[base.INFO_OFFROAD]
    assert info[base.INFO_ROUTE_COMPLETION] > 0.2
    if name == "merge":
        assert info["merged"]  # 14 s from the ramp is enough to be on the main road


def test_every_scenario_is_a_gymnasium_id_and_renders_frames(monkeypatch):
    """`import drive_drail` registers drive-drail/<name>-v0; rgb_array frames are what RecordVideo records."""
    import gymnasium as gym

    import drive_drail  # noqa: F401 (registers)
    from drive_drail.scenario import list_scenarios

    monkeypatch.setenv("SDL_VIDEODRIVER", "offscreen")
    assert {f"drive-drail/{name}-v0" for name in list_scenarios()} <= set(gym.registry)
    env = gym.make("drive-drail/stop-v0", render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=5)
        assert obs.shape == (spec.OBS_DIM,) and env.unwrapped.scenario.name == "stop"
        obs, _, terminated, truncated, info = env.step(np.zeros(spec.ACTION_DIM, np.float32))
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.max() > 0
    finally:
        env.close()
    plain = gym.make("drive-drail/lane_change-v0")
    plain.reset(seed=0)
    assert plain.render() is None
    plain.close()
