"""Closed-loop evaluation: metrics, bootstrap aggregation, policy sources, the runner and storage."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from drive_drail import spec
from drive_drail.errors import UserError
from drive_drail.evaluate.aggregate import BootstrapConfig, aggregate, bootstrap_mean_ci
from drive_drail.evaluate.metrics import (
    HARD_BRAKE_MPS2,
    TTC_HORIZON_S,
    EpisodeTrace,
    displacement_errors,
    episode_metrics,
    ttc_ahead_s,
)
from drive_drail.evaluate.policies import PolicySpec, parse_policy
from drive_drail.evaluate.rollout import run_episode
from drive_drail.evaluate.runner import RESULT_COLUMNS, evaluate, read_results, write_results
from drive_drail.models.policy import ActorConfig, DeterministicActor
from drive_drail.scenario import ScenarioError, load_scenario
from drive_drail.sim import make_env


def vehicle(x: float, y: float = 0.0, vx: float = 20.0, lane: int = 0, length: float = 5.0, width: float = 2.0) -> spec.Vehicle:
    return spec.Vehicle(x_m=x, y_m=y, vx_mps=vx, vy_mps=0.0, heading_rad=0.0, length_m=length, width_m=width, lane=lane)


def scene(ego: spec.Vehicle, *others: spec.Vehicle) -> spec.Scene:
    return spec.Scene(ego=ego, others=list(others), lane=spec.LaneContext(count=2, offset_m=0.0, heading_rad=0.0))


# ---------------------------------------------------------------- metrics


def test_ttc_to_the_closing_leader_in_the_ego_corridor():
    ego = vehicle(0.0, vx=25.0)
    leader = vehicle(35.0, vx=15.0)  # bumper gap 30 m, closing at 10 m/s
    assert ttc_ahead_s(scene(ego, leader)) == pytest.approx(3.0)
    # the nearest conflict wins; a vehicle one lane over (4 m) and one behind do not count
    near = vehicle(25.0, vx=20.0)  # gap 20 m, closing 5 m/s -> 4 s
    assert ttc_ahead_s(scene(ego, leader, near, vehicle(20.0, y=4.0, vx=0.0), vehicle(-10.0, vx=40.0))) == pytest.approx(3.0)
    assert ttc_ahead_s(scene(ego, vehicle(20.0, y=4.0, vx=0.0))) == np.inf
    assert ttc_ahead_s(scene(ego, vehicle(30.0, vx=30.0))) == np.inf  # leader pulls away
    assert ttc_ahead_s(scene(ego, vehicle(4.0, y=1.0, vx=25.0))) == 0.0  # bodies overlap
    assert ttc_ahead_s(scene(ego)) == np.inf


def test_ttc_is_measured_in_the_ego_frame():
    # ego heading 90 deg (driving along +y): a vehicle at +y is ahead, one at +x is beside
    ego = spec.Vehicle(0.0, 0.0, 0.0, 20.0, np.pi / 2, 5.0, 2.0, 0)
    ahead = spec.Vehicle(0.0, 25.0, 0.0, 10.0, np.pi / 2, 5.0, 2.0, 0)
    beside = spec.Vehicle(10.0, 0.0, 0.0, 0.0, np.pi / 2, 5.0, 2.0, 0)
    assert ttc_ahead_s(scene(ego, ahead, beside)) == pytest.approx(2.0)


def trace(speed: list[float], completion: list[float] | None = None, dt: float = 0.2, info: dict | None = None) -> EpisodeTrace:
    n = len(speed)
    x = np.cumsum(np.asarray(speed) * dt)
    return EpisodeTrace(
        dt_s=dt,
        speed_mps=np.asarray(speed, dtype=float),
        lane_index=np.zeros(n, dtype=int),
        x_m=x,
        y_m=np.zeros(n),
        ttc_s=np.full(n, np.inf),
        route_completion=np.asarray(completion if completion is not None else np.linspace(0, 1, n)),
        final_info=info or {"success": True, "crashed": False, "offroad": False, "lane_changes": 2},
    )


def test_episode_metrics_from_a_known_trace():
    # 0.2 s steps; two separate hard brakes (-5 m/s^2 for two steps, then again for one)
    v = [20.0, 20.0, 19.0, 18.0, 18.0, 17.0, 17.0]
    m = episode_metrics(trace(v, completion=[0, 0.2, 0.5, 1.0, 1.0, 1.0, 1.0]))
    accel = np.diff(v) / 0.2
    jerk = np.abs(np.diff(accel) / 0.2)
    assert m["hard_brakes"] == 2
    assert (accel < HARD_BRAKE_MPS2).sum() == 3
    assert m["mean_abs_jerk_mps3"] == pytest.approx(jerk.mean())
    assert m["max_abs_jerk_mps3"] == pytest.approx(jerk.max())
    assert m["time_to_goal_s"] == pytest.approx(0.6)
    assert m["mean_speed_mps"] == pytest.approx(np.mean(v))
    assert m["min_speed_mps"] == 17.0
    assert m["steps"] == 6 and m["time_s"] == pytest.approx(1.2)
    assert m["lane_changes"] == 2  # the adapter's count
    assert m["min_ttc_s"] == TTC_HORIZON_S  # nothing ever closing in: capped
    assert m["success"] == 1.0 and m["collision"] == 0.0
    assert np.isnan(m["ade_m"])
    # never reaching the goal fraction: NaN time to goal
    assert np.isnan(episode_metrics(trace([10.0] * 4, completion=[0, 0.1, 0.2, 0.3]))["time_to_goal_s"])


def test_displacement_errors_hold_an_early_end_in_place():
    ref = np.stack([np.arange(5.0), np.zeros(5)], axis=1)
    assert displacement_errors(ref, ref) == (0.0, 0.0)
    ade, fde = displacement_errors(ref + [0.0, 1.0], ref)
    assert ade == pytest.approx(1.0) and fde == pytest.approx(1.0)
    # a crash after 2 samples stays at x=1 while the reference drives on to x=4
    ade, fde = displacement_errors(ref[:2], ref)
    assert fde == pytest.approx(3.0)
    assert ade == pytest.approx(np.mean([0, 0, 1, 2, 3]))


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_seeded_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(3.0, 1.0, 20), rng.normal(3.0, 1.0, 2000)
    cfg = BootstrapConfig(n_boot=1000, seed=7)
    (n, mean, lo, hi), = bootstrap_mean_ci(small, cfg)
    assert n == 20 and lo < mean < hi and mean == pytest.approx(small.mean())
    (_, _, lo2, hi2), = bootstrap_mean_ci(large, cfg)
    assert hi2 - lo2 < 0.3 * (hi - lo)
    np.testing.assert_array_equal(bootstrap_mean_ci(small, cfg), bootstrap_mean_ci(small, cfg))
    assert not np.array_equal(bootstrap_mean_ci(small, cfg), bootstrap_mean_ci(small, BootstrapConfig(n_boot=1000, seed=8)))


def test_bootstrap_handles_nan_and_constant_columns():
    x = np.array([[1.0, np.nan, 5.0], [0.0, 2.0, 5.0], [1.0, 4.0, 5.0], [1.0, np.nan, 5.0]])
    out = bootstrap_mean_ci(x, BootstrapConfig(n_boot=500))
    assert out[0, 0] == 4 and out[0, 1] == pytest.approx(0.75)
    assert out[1, 0] == 2 and out[1, 1] == pytest.approx(3.0) and 2.0 <= out[1, 2] <= out[1, 3] <= 4.0
    assert out[2, 1:].tolist() == [5.0, 5.0, 5.0]
    assert np.isnan(bootstrap_mean_ci(np.full((3, 1), np.nan))[0, 1])


def test_aggregate_groups_policy_scenario_split_and_is_stable_under_additions():
    rows = []
    for policy, p in (("a", 0.9), ("b", 0.2)):
        for split in ("eval", "dense"):
            for seed in range(30):
                rows.append({"policy": policy, "scenario": "s", "split": split, "seed": seed, "success": float(seed < p * 30), "min_ttc_s": 1.0 + seed})
    table = pd.DataFrame(rows)
    agg = aggregate(table)
    assert len(agg) == 2 * 2 * 2
    a = agg[(agg.policy == "a") & (agg.split == "eval") & (agg.metric == "success")].iloc[0]
    assert a["n"] == 30 and a["mean"] == pytest.approx(27 / 30) and a["ci_low"] < a["mean"] <= a["ci_high"] <= 1.0
    # adding a policy does not move another group's interval
    more = pd.concat([table, table[table.policy == "b"].assign(policy="c")])
    agg2 = aggregate(more)
    pd.testing.assert_frame_equal(agg2[agg2.policy != "c"].reset_index(drop=True), agg.reset_index(drop=True))


def test_rates_get_wilson_intervals_that_admit_what_few_episodes_cannot_rule_out():
    """Four failed episodes: the bootstrap would say 0% [0%, 0%]; a rate's interval must not claim certainty."""
    table = pd.DataFrame({"policy": "p", "scenario": "s", "split": "eval", "seed": range(4),
                          "success": 0.0, "collision": 1.0, "min_ttc_s": [1.0, 2.0, 3.0, 4.0]})
    agg = aggregate(table).set_index("metric")
    assert agg.loc["success", "ci_low"] == 0.0 and agg.loc["success", "ci_high"] == pytest.approx(0.490, abs=1e-3)
    assert agg.loc["collision", "ci_low"] == pytest.approx(0.510, abs=1e-3) and agg.loc["collision", "ci_high"] == 1.0
    assert 1.0 <= agg.loc["min_ttc_s", "ci_low"] < agg.loc["min_ttc_s", "ci_high"] <= 4.0  # still the bootstrap
    from drive_drail.evaluate.aggregate import wilson

    lo, hi = wilson(27, 30)
    assert lo == pytest.approx(0.7438, abs=1e-4) and hi == pytest.approx(0.9654, abs=1e-4)  # worked by hand


# ---------------------------------------------------------------- policy sources


def test_parse_policy_baselines_paths_and_errors(tmp_path):
    assert parse_policy("expert") == PolicySpec(label="expert", kind="expert")
    assert parse_policy("random").kind == "random"
    c = parse_policy("constant:0.5,-0.25")
    assert c.kind == "constant" and c.action == (0.5, -0.25) and c.source == "constant:0.5,-0.25"
    actor = tmp_path / "run" / "actor.pt"
    actor.parent.mkdir()
    DeterministicActor(ActorConfig(hidden_sizes=(8,))).save(actor)
    p = parse_policy(f"mine={actor.parent}")
    assert p.label == "mine" and p.kind == "artifact" and p.path == str(actor.parent.resolve())
    with pytest.raises(UserError, match="no such file"):
        parse_policy(str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match="constant:ACCEL,STEER"):
        parse_policy("constant:2,0")


# ---------------------------------------------------------------- closed loop, real simulator


@pytest.fixture(scope="module")
def stop_short():
    """The stop scenario cut to 3 s (15 policy steps): fast episodes."""
    return dataclasses.replace(load_scenario("stop"), episode_seconds=3.0)


def test_run_episode_keeps_the_first_runner_api(stop_short):
    env = make_env(stop_short, split="eval")
    try:
        m = run_episode(env, parse_policy_obj(), seed=stop_short.eval_seeds[0])
    finally:
        env.close()
    assert m["seed"] == stop_short.eval_seeds[0]
    assert m["steps"] == stop_short.max_policy_steps and m["time_s"] == pytest.approx(3.0)
    assert 0.0 < m["route_completion"] < 1.0 and m["mean_speed_mps"] > 0


def parse_policy_obj():
    class Hold:
        def act(self, obs):
            assert obs.shape == (spec.OBS_DIM,)
            return np.zeros(2)

    return Hold()


def test_evaluate_every_policy_source_and_store_the_table(tmp_path, stop_short):
    torch.manual_seed(0)
    actor_path = tmp_path / "actor.pt"
    DeterministicActor(ActorConfig(hidden_sizes=(16,))).save(actor_path)
    from drive_drail.deploy.export import export_policy

    export_policy(actor_path, tmp_path / "export", build_engine=False)
    policies = ["expert", "random", "constant", f"torch={actor_path}", f"onnx={tmp_path / 'export'}"]
    table = evaluate(policies, [stop_short], episodes=2, split="heldout", workers=1)

    assert list(table.columns) == list(RESULT_COLUMNS)
    assert len(table) == 5 * 2
    assert list(dict.fromkeys(table.policy)) == ["expert", "random", "constant", "torch", "onnx"]
    assert set(table.split) == {"eval"} and sorted(set(table.seed)) == list(stop_short.eval_seeds[:2])
    assert table.set_index("policy").loc["onnx", "policy_kind"].tolist() == ["artifact", "artifact"]
    # ADE/FDE against the expert from the same seed: none for the expert itself, finite for the rest
    assert table[table.policy == "expert"].ade_m.isna().all()
    assert table[table.policy != "expert"][["ade_m", "fde_m"]].notna().all().all()
    # the torch actor and its fp32 ONNX export drive the same episodes
    torch_rows = table[table.policy == "torch"].reset_index(drop=True)
    onnx_rows = table[table.policy == "onnx"].reset_index(drop=True)
    for metric in ("success", "collision", "offroad", "steps", "route_completion", "mean_speed_mps", "min_speed_mps", "ade_m"):
        np.testing.assert_allclose(torch_rows[metric], onnx_rows[metric], atol=1e-4, err_msg=metric)

    out = tmp_path / "results"
    write_results(table, out, command="drive-drail evaluate test")
    # appending: a rerun of the same episodes replaces rows, new episodes add rows
    again = evaluate(["expert", "constant"], [stop_short], episodes=3, split="eval", workers=1)
    write_results(again, out, command="drive-drail evaluate again")
    stored, runs = read_results([out])
    assert len(stored) == 10 + 2  # seeds 0-1 replaced for expert/constant, seed 2 added for both
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), pd.read_parquet(out / "results.parquet"), check_dtype=False)
    assert [r["command"] for r in runs] == ["drive-drail evaluate test", "drive-drail evaluate again"]
    assert runs[0]["seeds"] == {"stop": {"eval": list(stop_short.eval_seeds[:2])}}
    assert runs[0]["scenarios"]["stop"]["overrides"] == {"episode_seconds": 3.0}
    assert "highway-env" in runs[0]["versions"]
    assert not list(out.glob(".*.tmp"))
    json.loads((out / "runs.json").read_text())


def test_expert_is_the_ceiling_and_constant_the_floor():
    stop = load_scenario("stop")
    table = evaluate(["expert", "constant"], [stop], episodes=2, split="eval", workers=1, reference=False)
    success = table.groupby("policy").success.mean()
    assert success["expert"] == 1.0  # stops behind the stalled vehicle
    assert success["constant"] == 0.0  # holds its speed into it
    assert table[table.policy == "constant"].collision.all()
    assert (table[table.policy == "expert"].min_ttc_s.to_numpy() > table[table.policy == "constant"].min_ttc_s.to_numpy()).all()


def test_unknown_split_and_bad_episodes_are_user_errors(stop_short):
    with pytest.raises(ScenarioError, match="unknown split"):
        evaluate(["constant"], [stop_short], episodes=1, split="foggy", workers=1)
    with pytest.raises(UserError, match="--episodes"):
        evaluate(["constant"], [stop_short], episodes=0)
    with pytest.raises(UserError, match="labelled 'constant'"):
        evaluate(["constant", "constant=random"], [stop_short], episodes=1)
