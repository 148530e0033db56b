"""The batched environment's episode logic and vector-env interfaces, against the highway adapter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from drive_drail import spec
from drive_drail.experts.highway import make_expert
from drive_drail.scenario import ScenarioError, load_scenario
from drive_drail.sim import base
from drive_drail.sim.batched.env import BatchedHighwayEnv
from drive_drail.sim.batched.scene_exchange import export_scene, import_highway_starts, import_scene
from drive_drail.sim.batched.vec_env import BatchedVectorEnv, make_batched_vec_env
from drive_drail.sim.highway import HighwayAdapter
from drive_drail.train.envs import DeclaredSeeds, FixedObsNormalizer

INFO_KEYS = (base.INFO_CRASHED, base.INFO_OFFROAD, base.INFO_SUCCESS, base.INFO_ROUTE_COMPLETION, base.INFO_SPEED_MPS, base.INFO_LANE_INDEX, base.INFO_TIME_S)
EXTRA_KEYS = {"lane_change": ("lane_changes",), "merge": ("lane_changes", "merged"), "stop": ("lane_changes", "gap_m", "stopped_s")}


def short(name: str, seconds: float) -> object:
    return dataclasses.replace(load_scenario(name), episode_seconds=seconds)


@pytest.mark.parametrize("name,seconds,seed", [("lane_change", 4.0, 1), ("merge", 8.0, 0), ("stop", 10.0, 0)])
def test_episode_logic_matches_adapter_under_the_expert(name, seconds, seed):
    """The expert drives highway-env; its actions drive the batched copies of the same scenes.

    Observations, terminated/truncated and every info key agree at every step.
    """
    scenario = short(name, seconds)
    seeds = [seed]
    env = BatchedHighwayEnv(scenario, 2, autoreset=False)
    env.reset()
    expert = make_expert(scenario.expert)
    outcomes = set()
    for k, seed in enumerate(seeds):
        adapter = HighwayAdapter(scenario)
        obs, _ = adapter.reset(seed=seed)
        expert.reset(adapter)
        import_scene(env, k, adapter)
        np.testing.assert_array_equal(env.observe()[k], obs)
        while True:
            action = expert.act(adapter)
            obs, _, terminated, truncated, info = adapter.step(action)
            batch_action = np.zeros((2, 2))
            batch_action[k] = action
            r = env.step(batch_action)
            np.testing.assert_array_equal(r.obs[k], obs)
            assert (bool(r.terminated[k]), bool(r.truncated[k])) == (terminated, truncated)
            for key in INFO_KEYS + EXTRA_KEYS[name]:
                assert r.info[key][k] == pytest.approx(info[key], abs=1e-9), key
            np.testing.assert_allclose(r.info["action_physical"][k], info["action_physical"], atol=1e-12)
            if terminated or truncated:
                outcomes.add((terminated, truncated, info[base.INFO_SUCCESS]))
                break
    assert outcomes  # both episodes ended


def test_crash_terminates_and_offroad_terminates():
    scenario = load_scenario("stop")
    env = BatchedHighwayEnv(scenario, 2, autoreset=False)
    env.reset(np.array([3, 4]))
    ended = np.zeros(2, dtype=bool)
    for _ in range(scenario.max_policy_steps):
        # scene 0: full throttle into the stalled vehicle; scene 1: steer hard off the road
        r = env.step(np.array([[1.0, 0.0], [0.0, 1.0]]))
        ended |= r.terminated
        if ended.all():
            break
    assert ended.all()
    assert env.state.crashed[0, 0] and not r.info[base.INFO_SUCCESS].any()


def test_autoreset_follows_declared_seeds_and_returns_final_observation():
    scenario = short("lane_change", 1.0)  # 5 policy steps
    b, offset = 3, 7
    env = BatchedHighwayEnv(scenario, b, seed_offset=offset)
    seeds = list(scenario.train_seeds)
    declared = [DeclaredSeeds(HighwayAdapter(scenario), seeds, w, b, offset) for w in range(b)]
    expected = [d.reset()[1]["episode_seed"] for d in declared]  # the trainer's seed schedule
    nxt = [d.reset()[1]["episode_seed"] for d in declared]
    obs, info = env.reset()
    assert info["episode_seed"].tolist() == expected
    for t in range(scenario.max_policy_steps):
        r = env.step(np.zeros((b, 2)))
    assert r.truncated.all() and not r.terminated.any()
    assert r.final_obs.shape == (b, spec.OBS_DIM)
    assert r.final_info["episode_seed"].tolist() == expected
    # the returned observation is the next episode's first (DeclaredSeeds: episode 1 of worker w)
    assert env.episode_seed.tolist() == nxt
    fresh = BatchedHighwayEnv(scenario, b)
    np.testing.assert_array_equal(r.obs, fresh.reset(np.array(nxt))[0])
    assert not np.array_equal(r.obs, r.final_obs)


@pytest.mark.parametrize("name", ["lane_change", "merge", "stop"])
def test_observing_some_scenes_equals_their_rows_of_the_whole_batch(name):
    """The autoreset observes only the scenes it restarted: their rows must be what observing every scene gives."""
    env = BatchedHighwayEnv(load_scenario(name), 16)
    env.reset()
    rng = np.random.default_rng(3)
    for _ in range(4):
        env.step(rng.uniform(-0.5, 0.5, (16, 2)))
    scenes = np.array([11, 2, 7, 3])
    np.testing.assert_array_equal(env.observe(scenes), env.observe()[scenes])
    assert env.observe(np.array([], dtype=np.int64)).shape == (0, spec.OBS_DIM)


def test_sb3_vec_env_conventions_and_normalisation():
    scenario = short("merge", 0.6)  # 3 policy steps
    mean = np.linspace(-0.1, 0.1, spec.OBS_DIM).astype(np.float32)
    std = np.linspace(0.5, 2.0, spec.OBS_DIM).astype(np.float32)
    venv = make_batched_vec_env(scenario, 4, mean, std, seed=2)
    raw = BatchedHighwayEnv(scenario, 4, seed_offset=2)
    obs = venv.reset()
    raw_obs, _ = raw.reset()
    normaliser = FixedObsNormalizer.__new__(FixedObsNormalizer)
    normaliser.mean, normaliser.std = mean, std
    np.testing.assert_array_equal(obs, normaliser.observation(raw_obs))
    assert obs.dtype == np.float32 and obs.shape == (4, spec.OBS_DIM)
    for _ in range(3):
        venv.step_async(np.zeros((4, 2), np.float32))
        obs, rewards, dones, infos = venv.step_wait()
        r = raw.step(np.zeros((4, 2)))
    assert dones.all() and len(infos) == 4
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] == bool(r.truncated[i] and not r.terminated[i])
        np.testing.assert_array_equal(info["terminal_observation"], normaliser.observation(r.final_obs[i]))
        assert all(k in info for k in INFO_KEYS)
    np.testing.assert_array_equal(obs, normaliser.observation(r.obs))


def test_sb3_ppo_runs_on_the_batched_vec_env():
    scenario = short("stop", 1.0)
    venv = make_batched_vec_env(scenario, 4, np.zeros(spec.OBS_DIM), np.ones(spec.OBS_DIM), seed=0)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64


def test_gymnasium_vector_env_api():
    scenario = short("lane_change", 0.4)  # 2 policy steps
    venv = BatchedVectorEnv(BatchedHighwayEnv(scenario, 3))
    obs, info = venv.reset(seed=40)
    assert info["episode_seed"].tolist() == [40, 41, 42] and info["_episode_seed"].all()
    assert venv.observation_space.shape == (3, spec.OBS_DIM) and venv.single_action_space.shape == (2,)
    obs, rew, term, trunc, info = venv.step(np.zeros((3, 2), np.float32))
    assert "final_obs" not in info
    obs, rew, term, trunc, info = venv.step(np.zeros((3, 2), np.float32))
    done = term | trunc
    assert done.all() and info["_final_obs"].all()
    assert info["final_obs"][0].shape == (spec.OBS_DIM,) and info["final_info"]["episode_seed"].tolist() == [40, 41, 42]
    obs, info = venv.reset(options={"reset_mask": np.array([True, False, False])})
    assert obs.shape == (3, spec.OBS_DIM)


def test_scene_export_round_trip_and_identical_starts():
    scenario = load_scenario("merge")
    env = BatchedHighwayEnv(scenario, 2, autoreset=False)
    env.reset()
    adapter = import_highway_starts(env, np.array([0, 1]), np.array([11, 12]))
    np.testing.assert_array_equal(env.observe()[1], adapter.reset(seed=12)[0])
    for _ in range(5):
        env.step(np.zeros((2, 2)))
    export_scene(env, 1, adapter)  # the adapter holds seed 12's objects
    np.testing.assert_array_equal(spec.observe(adapter.scene()), env.observe()[1])
    other = BatchedHighwayEnv(scenario, 1, autoreset=False)
    other.reset()
    import_scene(other, 0, adapter)
    for field, t in other.state.tensors().items():
        assert torch.equal(t[0], getattr(env.state, field)[1]), field


def test_float32_precision_stays_close_to_float64():
    scenario = load_scenario("lane_change")
    runs = []
    for dtype in (torch.float64, torch.float32):
        env = BatchedHighwayEnv(scenario, 8, dtype=dtype, autoreset=False)
        env.reset(np.arange(8))
        for _ in range(25):  # 5 s
            env.step(np.tile([0.1, 0.0], (8, 1)))
        runs.append(torch.stack([env.state.x_m, env.state.y_m], dim=2).double())
    err = torch.linalg.norm(runs[0] - runs[1], dim=2)[runs[0][..., 0] < 1e6]
    assert float((err < 0.5).double().mean()) >= 0.95


def test_unmodelled_settings_are_refused_with_the_key():
    scenario = dataclasses.replace(load_scenario("lane_change"), env_config={"lanes_count": 3, "vehicles_countt": 5})
    with pytest.raises(ScenarioError, match="vehicles_countt"):
        BatchedHighwayEnv(scenario, 2)
    scenario = dataclasses.replace(load_scenario("merge"), env_config={"other_vehicles_type": "highway_env.vehicle.behavior.LinearVehicle"})
    with pytest.raises(ScenarioError, match="other_vehicles_type"):
        BatchedHighwayEnv(scenario, 2)


def test_batched_score_from_highway_starts_agrees_with_highway_env():
    """score_in_batched_sim from highway-env's own initial scenes gives each episode's outcome as
    highway-env does (same starts, faithful dynamics); its own starts are another draw of the seed."""
    from drive_drail.evaluate.batched import score_in_batched_sim

    scenario = dataclasses.replace(load_scenario("lane_change"), episode_seconds=6.0)
    seeds = list(scenario.eval_seeds[:4])

    def act(obs: np.ndarray) -> np.ndarray:  # brake gently, straight
        return np.tile([-0.1, 0.0], (len(obs), 1))

    adapter, highway = HighwayAdapter(scenario, split="eval"), {"success": [], "collision": []}
    for seed in seeds:
        adapter.reset(seed=seed)
        while True:
            _, _, terminated, truncated, info = adapter.step(act(np.zeros((1, spec.OBS_DIM)))[0])
            if terminated or truncated:
                break
        highway["success"].append(info[base.INFO_SUCCESS])
        highway["collision"].append(info[base.INFO_CRASHED])
    adapter.close()
    same = score_in_batched_sim(scenario, act, seeds, highway_starts=True)
    assert 0 < sum(highway["collision"]) < len(seeds)  # both outcomes occur, so agreement means something
    np.testing.assert_array_equal(same["success"], highway["success"])
    np.testing.assert_array_equal(same["collision"], highway["collision"])
    own = score_in_batched_sim(scenario, act, seeds)
    assert set(own) == {"success", "collision", "offroad"} and own["success"].shape == (4,)


def test_several_policies_scored_from_one_set_of_starts_equal_separate_runs():
    from drive_drail.evaluate.batched import score_in_batched_sim, score_policies_in_batched_sim

    scenario = dataclasses.replace(load_scenario("stop"), episode_seconds=4.0)
    seeds = list(scenario.eval_seeds[:6])
    acts = {"brake": lambda obs: np.tile([-0.6, 0.0], (len(obs), 1)), "swerve": lambda obs: np.tile([0.4, 0.9], (len(obs), 1))}
    together = score_policies_in_batched_sim(scenario, acts, seeds, highway_starts=True)
    for name, act in acts.items():
        alone = score_in_batched_sim(scenario, act, seeds, highway_starts=True)
        for key in alone:
            np.testing.assert_array_equal(together[name][key], alone[key])
    assert together["swerve"]["offroad"].all() and not together["brake"]["offroad"].any()  # each played its own policy
