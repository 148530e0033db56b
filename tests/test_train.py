"""Real, short training runs in highway-env: checkpoints, resume after a kill, repeatability."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from drive_drail import spec
from drive_drail.errors import ArgumentError
from drive_drail.models.policy import DeterministicActor
from drive_drail.pairs.convert import ConvertConfig, convert_file
from drive_drail.record import record_episodes
from drive_drail.train import checkpoint
from drive_drail.train.adversarial import TrainingDiverged, _check_finite, build_ppo, train
from drive_drail.train.config import PolicyConfig, PPOConfig, TrainConfig


@pytest.fixture(scope="module")
def stop_demos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demos")
    log = record_episodes("stop", n_episodes=2, seed=0, out_path=folder / "log.parquet", progress=False)
    convert_file(str(log), str(folder / "pairs.parquet"), "auto", ConvertConfig(action_hz=5.0))
    return str(folder / "pairs.parquet")


def small(demos, out, **kw):
    """A small run; ``kw`` in the flat setting names (``n_steps``, ``gamma``), which still read."""
    base = dict(scenario="stop", algo="drail", demos=demos, steps=128, n_envs=1, n_steps=32, batch_size=32,
                ppo_epochs=2, bc_epochs=2, disc_hidden=64, policy_hidden=(32, 32), torch_threads=1, out=str(out))
    return TrainConfig.from_mapping({**base, **kw})


def test_training_run_writes_checkpoint_metrics_and_an_actor_that_acts(stop_demos, tmp_path):
    run = train(small(stop_demos, tmp_path / "run"), progress=False)
    latest = checkpoint.latest(run)
    assert latest is not None and latest.name == "it-000004"
    assert {"ppo.zip", "disc.pt", "state.pt", "normalizer.npz", "actor.pt"} <= {p.name for p in latest.iterdir()}
    metrics = pd.read_csv(run / "metrics.csv")
    for col in ("disc/loss", "disc/d_expert", "disc/d_agent", "charts/reward_mean", "losses/policy_loss", "bc/train_mse"):
        assert col in metrics.columns
    bc = pd.read_csv(run / "bc.csv")  # BC's losses per epoch
    assert bc["epoch"].tolist() == [1, 2] and np.isfinite(bc[["train_mse", "val_mse"]].to_numpy()).all()
    assert bc["train_mse"].iloc[-1] == pytest.approx(metrics["bc/train_mse"].dropna().iloc[0])
    from drive_drail.evaluate.report import LEARNING_PANELS  # every learning-curve panel of the report finds its columns
    assert all(col in metrics.columns for _, cols in LEARNING_PANELS for col in cols)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert {"disc/d_expert", "disc/d_agent", "charts/reward_mean", "losses/policy_loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("disc/d_agent")] == metrics.dropna(subset=["disc/d_agent"])["global_step"].tolist()
    assert metrics["global_step"].iloc[-1] == 128
    assert np.isfinite(metrics["disc/loss"].dropna()).all()
    actor = DeterministicActor.load(run / "actor.pt")
    action = actor.act(np.zeros(spec.OBS_DIM, np.float32))
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)


def test_same_seed_same_run(stop_demos, tmp_path):
    a = train(small(stop_demos, tmp_path / "a", steps=64), progress=False)
    b = train(small(stop_demos, tmp_path / "b", steps=64), progress=False)
    sa = DeterministicActor.load(a / "actor.pt").state_dict()
    sb = DeterministicActor.load(b / "actor.pt").state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train(small(stop_demos, tmp_path / "c", steps=64, seed=1), progress=False)
    sc = DeterministicActor.load(c / "actor.pt").state_dict()
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_the_bc_term_comes_from_the_scenario_unless_set(stop_demos, tmp_path):
    import json

    from drive_drail.scenario import load_scenario

    measured = load_scenario("stop").training.bc_coef
    assert measured and measured > 0  # stop's file carries its measured lambda_BC
    runs = {"scenario": small(stop_demos, tmp_path / "a", steps=32), "set": small(stop_demos, tmp_path / "b", steps=32, bc_coef=0.0)}
    for name, config in runs.items():
        train(config, progress=False)
    saved = {name: json.loads((tmp_path / d / "config.json").read_text())["ppo"]["bc_coef"] for name, d in (("scenario", "a"), ("set", "b"))}
    assert saved == {"scenario": measured, "set": 0.0}  # config.json holds the value used, resolved
    assert "losses/bc_loss" in pd.read_csv(tmp_path / "a" / "metrics.csv").columns
    assert "losses/bc_loss" not in pd.read_csv(tmp_path / "b" / "metrics.csv").columns


def test_saved_config_round_trips_and_an_old_run_keeps_its_input_label(tmp_path):
    from drive_drail.train.config import FLAT_NAMES

    config = TrainConfig(scenario="stop", algo="drail", demos="pairs.parquet", out=str(tmp_path))
    saved = config.to_dict()
    assert TrainConfig.from_dict(saved) == config and config.disc.label_injection == "film"
    assert saved["ppo"]["epochs"] == config.ppo.epochs and "ppo_epochs" not in saved  # config.json is nested by section
    flat_name = {path: name for name, path in FLAT_NAMES.items()}
    flat = {flat_name.get(path, path): value for path, value in config.settings().items()}  # a config.json of before the sections
    assert TrainConfig.from_dict(flat) == config
    old = {k: v for k, v in flat.items() if k != "label_injection"}  # saved before FiLM existed
    assert TrainConfig.from_dict(old).disc.label_injection == "input"
    assert TrainConfig.from_dict({k: v for k, v in old.items() if k != "bc_coef"}).ppo.bc_coef == 0.0  # trained before the BC term
    with pytest.raises(ArgumentError, match="'ppo.epochs' given twice"):
        TrainConfig.from_dict({**saved, "ppo_epochs": 3})


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(stop_demos, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "stop", "--algo", "gail", "--demos", stop_demos,
            "--steps", "4096", "--n-envs", "1", "--n-steps", "32", "--bc-epochs", "1", "--out", str(out), "--quiet",
            "--checkpoint-interval-s", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        latest = checkpoint.latest(out)
        if latest is not None and latest.name >= "it-000003":
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint.latest(out)
    assert killed_at is not None and proc.returncode != 0
    done_before = int(killed_at.name.split("-")[1])
    assert done_before < 4096 // 32

    # Resume with a new, smaller total (--steps) so the test stays short.
    total = (done_before + 2) * 32
    resume = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "stop", "--out", str(out),
                             "--resume", "--steps", str(total), "--quiet"], capture_output=True, text=True, timeout=1200)
    assert resume.returncode == 0, resume.stderr
    final = checkpoint.latest(out)
    assert int(final.name.split("-")[1]) == done_before + 2
    metrics = pd.read_csv(out / "metrics.csv")
    steps = metrics["global_step"].to_numpy()
    assert (np.diff(steps[1:]) > 0).all()  # no duplicated rows from the killed iteration
    assert steps[-1] == total
    DeterministicActor.load(out / "actor.pt").act(np.zeros(spec.OBS_DIM, np.float32))


def test_nan_in_the_policy_stops_training_with_a_clear_message(stop_demos, tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv
    from drive_drail.scenario import load_scenario
    from drive_drail.sim import make_env

    env = DummyVecEnv([lambda: make_env(load_scenario("stop"))])
    model = build_ppo(small(stop_demos, tmp_path), env, seed=0)
    _check_finite(model, 3, {"losses/policy_loss": 0.1})  # healthy: no error
    with pytest.raises(TrainingDiverged, match="losses/value_loss is nan at iteration 3"):
        _check_finite(model, 3, {"losses/value_loss": float("nan")})
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="NaN/inf at iteration 7"):
        _check_finite(model, 7, {})
    env.close()


def test_training_in_the_batched_simulator(stop_demos, tmp_path):
    """`--sim batched`: the same loop trains on many scenes at once; the actor then acts in highway-env."""
    from drive_drail.evaluate.rollout import run_episode
    from drive_drail.scenario import load_scenario
    from drive_drail.sim import make_env

    run = train(small(stop_demos, tmp_path / "run", sim="batched", n_envs=16, n_steps=8, steps=256), progress=False)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["global_step"].iloc[-1] == 256
    assert np.isfinite(metrics["disc/loss"].dropna()).all()
    actor = DeterministicActor.load(run / "actor.pt")
    env = make_env(load_scenario("stop"), split="eval")
    result = run_episode(env, actor, seed=load_scenario("stop").eval_seeds[0])
    env.close()
    assert result["steps"] > 0


def test_ledger_separates_truncation_failure_and_goal():
    """Time limits are bootstrapped, failures become absorbing states, a reached goal is neither."""
    from drive_drail.train.rollout import EpisodeLedger

    ledger = EpisodeLedger(n_envs=4)
    ledger.start_rollout()
    ledger.record(0, np.zeros(4, dtype=bool), [{"speed_mps": 10.0}] * 4)
    final = np.arange(3.0)
    ledger.record(1, np.array([True, True, True, False]), [
        {"TimeLimit.truncated": True, "terminal_observation": final, "speed_mps": 20.0},
        {"success": True, "speed_mps": 10.0},
        {"crashed": True, "speed_mps": 30.0},
        {"speed_mps": 25.0},
    ])  # fmt: skip
    assert [(s, e) for s, e, _ in ledger.truncated] == [(1, 0)] and ledger.truncated[0][2] is final
    assert ledger.terminated == [(1, 2)]
    assert [e["success"] for e in ledger.episodes] == [0.0, 1.0, 0.0]
    assert [e["crashed"] for e in ledger.episodes] == [0.0, 0.0, 1.0]
    assert [e["length"] for e in ledger.episodes] == [2.0, 2.0, 2.0]
    assert [e["mean_speed_mps"] for e in ledger.episodes] == [15.0, 10.0, 20.0]
    ledger.start_rollout()  # episodes run across rollouts: env 3's length keeps counting
    ledger.record(0, np.array([False, False, False, True]), [{"speed_mps": 25.0}] * 4)
    assert [e["length"] for e in ledger.episodes] == [3.0]


def test_rollout_values_and_log_probs_match_the_policy(tmp_path):
    """The rollout's batched V and log pi equal the policy's own per-step evaluation, and actions
    are the mean plus exploration noise of the policy's std."""
    from stable_baselines3.common.utils import obs_as_tensor

    from rollout_factories import collected_model

    model = collected_model(TrainConfig(scenario="stop", n_envs=1, ppo=PPOConfig(n_steps=16, batch_size=16),
                                          policy=PolicyConfig(init_action_std=(0.5, 0.5))))
    buf = model.rollout_buffer
    assert buf.full and model.num_timesteps == 16
    obs = obs_as_tensor(buf.observations[:, 0], "cpu")
    with torch.no_grad():
        dist = model.policy.get_distribution(obs)
        log_prob = dist.log_prob(torch.as_tensor(buf.actions[:, 0]))
        values = model.policy.predict_values(obs)[:, 0]
        mean = dist.distribution.mean
    np.testing.assert_allclose(buf.log_probs[:, 0], log_prob.numpy(), atol=1e-5)
    np.testing.assert_allclose(buf.values[:, 0], values.numpy(), atol=1e-5)
    z = (buf.actions[:, 0] - mean.numpy()) / 0.5  # the noise actually drawn: ~N(0, 1), not zero
    assert 0.3 < z.std() < 2.0 and np.abs(z).max() > 0.1
    assert (buf.episode_starts[0, 0] == 1.0) and (buf.rewards == 0).all()


def test_metrics_log_appends_grows_columns_and_drops_a_cut_line(tmp_path):
    from drive_drail.train.metrics import MetricsLog

    path = tmp_path / "metrics.csv"
    log = MetricsLog(path)
    log.write(0, {"bc/loss": 0.5})
    log.write(256, {"losses/policy_loss": 0.1})  # a new column: the header grows
    log.write(512, {"losses/policy_loss": 0.2})  # same columns: appended
    table = pd.read_csv(path)
    assert list(table.columns) == ["global_step", "bc/loss", "losses/policy_loss"]
    assert table.global_step.tolist() == [0, 256, 512] and table["losses/policy_loss"].iloc[-1] == 0.2
    with path.open("a") as f:
        f.write("76")  # a kill in the middle of the next row
    resumed = MetricsLog(path)
    resumed.truncate_after(512)
    resumed.write(768, {"losses/policy_loss": 0.3})
    assert pd.read_csv(path).global_step.tolist() == [0, 256, 512, 768]
    fresh = MetricsLog(path, fresh=True)  # a new run in the folder does not inherit old rows
    fresh.write(256, {"losses/policy_loss": 0.4})
    assert pd.read_csv(path).global_step.tolist() == [256]


class _RunsShell:
    """A pickle payload that runs a shell command when unpickled (what a crafted checkpoint carries)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("victim", ["state.pt", "disc.pt"])
def test_resume_refuses_a_crafted_checkpoint_without_running_it(stop_demos, tmp_path, victim):
    run = train(small(stop_demos, tmp_path / "run", steps=64), progress=False)
    marker = tmp_path / "pwned"
    target = checkpoint.latest(run) / victim
    payload = torch.load(target, weights_only=True)
    payload["config" if victim == "state.pt" else "model"] = _RunsShell(marker)
    torch.save(payload, target)
    before = target.read_bytes()
    result = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--out", str(run), "--resume",
                             "--scenario", "stop", "--steps", "128", "--quiet"], capture_output=True, text=True, timeout=600)
    assert not marker.exists(), "unpickling a checkpoint ran code"
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and victim in lines[0] and "Traceback" not in result.stderr
    assert target.read_bytes() == before


def test_checkpoint_state_round_trips_rng_and_return_std(stop_demos, tmp_path):
    import random

    run = train(small(stop_demos, tmp_path / "run", steps=64, reward_norm=True), progress=False)
    payload = checkpoint.safe_load(checkpoint.latest(run) / "state.pt")
    restored = checkpoint.RunningStd.from_dict(payload["ret_std"])
    assert restored.count > 0 and restored.ret is not None and restored.std > 0
    np_state = checkpoint._numpy_rng_from_plain(payload["numpy_rng"])
    np.random.set_state(np_state)
    a = np.random.rand(3)
    np.random.set_state(np_state)
    assert np.array_equal(a, np.random.rand(3))
    random.setstate(payload["python_rng"])


def test_sigterm_checkpoints_and_stops_cleanly_and_the_run_resumes(stop_demos, tmp_path):
    """A scheduler's SIGTERM, long before the 30 s checkpoint interval: the run checkpoints, says so, exits 143."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "stop", "--algo", "gail", "--demos", stop_demos,
            "--steps", "8192", "--n-envs", "1", "--n-steps", "32", "--ppo-batch", "32", "--bc-epochs", "1", "--out", str(out),
            "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while checkpoint.latest(out) is None and time.time() < deadline:  # the first iteration is checkpointed at once
        time.sleep(0.1)
    assert checkpoint.latest(out) is not None
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 143, stderr
    assert len(stderr.strip().splitlines()) == 1 and "--resume" in stderr and "Traceback" not in stderr
    stopped_at = int(checkpoint.latest(out).name.split("-")[1])
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["global_step"].iloc[-1] == stopped_at * 32  # nothing after the checkpoint was lost
    assert not list((out / "checkpoints").glob(".it-*"))
    contradicts = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "merge", "-o", str(out),
                                  "--resume", "--quiet"], capture_output=True, text=True, timeout=600)
    assert contradicts.returncode == 2 and "--scenario merge contradicts" in contradicts.stderr
    for flags, says in ((["--gamma", "0.5"], "--gamma 0.5 contradicts"), (["--policy-hidden", "8"], "--policy-hidden 8 contradicts"),
                        (["--no-reward-norm"], "--reward-norm False contradicts")):
        refused = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "-o", str(out), "--resume", "--quiet", *flags],
                                 capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr  # every setting, not only the four named
    resume = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "-o", str(out),  # settings from the run;
                             "--resume", "--steps", str((stopped_at + 1) * 32), "--device", "cpu", "--quiet"],  # another machine's device
                            capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr


def test_an_empty_latest_pointer_is_named_not_a_missing_state_file(stop_demos, tmp_path):
    run = train(small(stop_demos, tmp_path / "run", steps=32), progress=False)
    (run / "checkpoints" / "latest").write_text("")
    proc = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "-o", str(run), "--resume", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "checkpoints/latest: names no checkpoint" in proc.stderr and "state.pt" not in proc.stderr


def test_a_runs_config_json_given_to_config_trains_the_same_run(stop_demos, tmp_path):
    """`train --config FILE` reaches every TrainConfig field; a run's own config.json reproduces it bit for bit."""
    first = train(small(stop_demos, tmp_path / "a", steps=64, gamma=0.95, policy_hidden=(16, 16)), progress=False)
    proc = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--config", str(first / "config.json"),
                           "-o", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    again = checkpoint.load_config(tmp_path / "b")
    assert again.ppo.gamma == 0.95 and again.policy.hidden == (16, 16) and again.out == str(tmp_path / "b")
    sa = DeterministicActor.load(first / "actor.pt").state_dict()
    sb = DeterministicActor.load(tmp_path / "b" / "actor.pt").state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_config_file_values_yield_to_flags_given(tmp_path):
    from drive_drail.cli import _train_settings, build_parser

    (tmp_path / "c.yaml").write_text("scenario: merge\nsteps: 5000\nent_coef: 0.01\ninit_action_std: [0.2, 0.05]\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.yaml"), "--steps", "64", "--no-bc-warm-start"])
    settings = _train_settings(args)
    assert settings == {"scenario": "merge", "steps": 64, "ppo.ent_coef": 0.01, "policy.init_action_std": (0.2, 0.05),
                        "bc.warm_start": False}
    assert TrainConfig.from_settings(settings).n_envs == TrainConfig().n_envs  # flags not given keep the config default


def test_a_config_file_names_settings_by_section_by_path_or_by_the_flat_names():
    from drive_drail.errors import UserError
    from drive_drail.train.config import checked_settings

    forms = [{"ppo": {"epochs": 3}, "disc": {"lr": 1e-3}}, {"ppo.epochs": 3, "disc.lr": 1e-3}, {"ppo_epochs": 3, "disc_lr": 1e-3}]
    assert all(checked_settings(form, "c.yaml") == {"ppo.epochs": 3, "disc.lr": 1e-3} for form in forms)
    with pytest.raises(UserError, match=r"c.yaml: unknown key 'ppo.epoch' \(training settings: .*ppo.epochs"):
        checked_settings({"ppo": {"epoch": 3}}, "c.yaml")
    with pytest.raises(UserError, match=r"c.yaml: key 'ppo.epochs' must be an integer, got 2.5"):
        checked_settings({"ppo": {"epochs": 2.5}}, "c.yaml")
    with pytest.raises(UserError, match=r"c.yaml: key 'ppo_epochs' sets the same setting as 'ppo.epochs'"):
        checked_settings({"ppo": {"epochs": 3}, "ppo_epochs": 4}, "c.yaml")


@pytest.mark.parametrize("content, says", [
    ("scenario: stop\ngama: 0.9\n", "unknown key 'gama'"),
    ("gamma: fast\n", "key 'gamma' must be a number"),
    ("n_envs: 2.5\n", "key 'n_envs' must be an integer"),
    ("reward_norm: 1\n", "key 'reward_norm' must be true or false"),
    ("init_action_std: [0.1]\n", "key 'init_action_std' must be a list of 2 numbers"),
    ("policy_hidden: [64, true]\n", "key 'policy_hidden' must be a list of integers"),
    ("- scenario\n", "expected a mapping"),
    ("scenario: [unclosed\n", "not a YAML or JSON file (line"),
    ("scenario: stop\ndemos: x.parquet\ngamma: 1.5\n", "key 'gamma' must lie in [0, 1)"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_key(tmp_path, content, says):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--config", str(path), "-o", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and says in line and "Traceback" not in line, line
    assert str(path) in line
    assert not (tmp_path / "run").exists() and path.read_bytes() == before


def test_demos_without_the_scenarios_manoeuvre_warn_in_one_line(stop_demos):
    import warnings

    from drive_drail.errors import DriveDrailWarning
    from drive_drail.train.demos import load_demos

    with pytest.warns(DriveDrailWarning, match=r"no pair is labelled 'merge', the scenario's manoeuvre \(labels found: .*stop"):
        load_demos(stop_demos, None, 5.0, 0.5, scenario_task="merge")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_demos(stop_demos, None, 5.0, 0.5, scenario_task="stop")  # the stop demos do stop


def test_a_saved_config_with_an_unknown_setting_is_refused_by_name():
    saved = {**TrainConfig(scenario="stop", demos="p.parquet").to_dict(), "learnin_rate": 1e-4}
    with pytest.raises(ArgumentError, match=r"unknown training setting .learnin_rate.*learning_rate"):
        TrainConfig.from_dict(saved)


def test_a_repeated_single_valued_train_flag_is_an_error_not_the_last_value():
    done = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "stop", "--scenario", "merge",
                           "--demos", "x.parquet", "--out", "nowhere"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--scenario given twice ('stop', then 'merge')" in done.stderr and "Traceback" not in done.stderr


def test_every_config_field_has_a_train_flag_that_sets_it():
    from dataclasses import fields

    from drive_drail.cli import _train_settings, build_parser

    args = build_parser().parse_args(["train", "--gamma", "0.9", "--policy-hidden", "32", "16", "--init-action-std", "0.2", "0.05",
                                      "--unshared", "--no-reward-norm", "--ppo-lr", "3e-5", "--algo", "gail", "--bc-coef", "0.5"])
    assert _train_settings(args) == {"ppo.gamma": 0.9, "policy.hidden": (32, 16), "policy.init_action_std": (0.2, 0.05),
                                     "disc.fused": False, "reward.norm": False, "ppo.learning_rate": 3e-5, "algo": "gail",
                                     "ppo.bc_coef": 0.5}
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    from drive_drail.train.config import flag_names, setting_fields

    flags = {path: flag_names(f)[-1] for path, f in setting_fields().items()}
    assert len(flags) == len([f for f in fields(TrainConfig) if f.name not in ("ppo", "policy", "disc", "reward", "bc")]) + sum(
        len(fields(getattr(TrainConfig(), s))) for s in ("ppo", "policy", "disc", "reward", "bc"))
    assert [name for name, flag in flags.items() if flag not in help_text] == []


@pytest.mark.parametrize("flags, says", [
    (["--ppo-lr", "0"], "--ppo-lr must be a positive finite number, got 0.0"),
    (["--gae-lambda", "1.5"], "--gae-lambda must lie in [0, 1], got 1.5"),
    (["--policy-hidden", "64", "-1"], "--policy-hidden must be a positive finite number, got -1"),
])
def test_a_config_value_out_of_range_is_refused_under_its_flag(tmp_path, flags, says):
    proc = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "stop", "--demos", "x.parquet",
                           "-o", str(tmp_path / "run"), *flags], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(says) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run").exists()


def test_device_cuda_where_torch_sees_no_gpu_is_refused_in_one_line_before_any_work(tmp_path):
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU for torch, on any machine
    proc = subprocess.run([sys.executable, "-m", "drive_drail.cli", "train", "--scenario", "stop", "--demos", "x.parquet",
                           "-o", str(tmp_path / "run"), "--device", "cuda"], capture_output=True, text=True, timeout=120, env=hidden)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--device is cuda, but" in lines[0], proc.stderr
    assert lines[0].endswith("use auto or cpu") and not (tmp_path / "run").exists()
    assert TrainConfig(scenario="stop", demos="x", device="auto").torch_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("slot_shared", [False, True])
def test_the_lane_features_take_their_own_std_floor_and_the_rest_the_shared_one(stop_demos, slot_shared):
    from drive_drail import spec
    from drive_drail.train.demos import LANE_FEATURES, load_demos

    shared = load_demos(stop_demos, None, 5.0, 0.5, slot_shared=slot_shared)
    lane = load_demos(stop_demos, None, 5.0, 0.5, slot_shared=slot_shared, lane_min_std=1e-3)
    idx = [spec.OBS_NAMES.index(name) for name in LANE_FEATURES]
    true_std = shared.obs[:, idx].std(axis=0)
    assert (true_std < 0.5).any()  # the stop demos keep their lane: the shared floor binds
    np.testing.assert_allclose(shared.obs_std[idx], np.maximum(true_std, 0.5), rtol=1e-5)
    np.testing.assert_allclose(lane.obs_std[idx], np.maximum(true_std, 1e-3), rtol=1e-5)
    others = np.setdiff1d(np.arange(spec.OBS_DIM), idx)
    np.testing.assert_array_equal(lane.obs_std[others], shared.obs_std[others])
    np.testing.assert_array_equal(lane.obs_mean, shared.obs_mean)


def test_a_wandb_tracked_run_logs_the_csv_metrics_offline_and_a_resume_continues_the_same_run(stop_demos, tmp_path, monkeypatch):
    import json

    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default: no network, no login
    run = train(small(stop_demos, tmp_path / "run", steps=64, tracker="wandb"), progress=False)
    run_id = (run / "wandb_id.txt").read_text().strip()
    offline = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1
    log = (offline[0] / f"run-{run_id}.wandb").read_bytes()  # W&B's record log: history keys and JSON values, as `wandb sync` uploads them
    metrics = pd.read_csv(run / "metrics.csv")
    for column in ("disc/d_agent", "charts/reward_mean", "losses/policy_loss", "bc/train_mse"):
        assert column.encode() in log and json.dumps(float(metrics[column].dropna().iloc[-1])).encode() in log, column
    train(small(stop_demos, tmp_path / "run", steps=128, tracker="wandb"), resume=True, progress=False, steps=128)
    assert (run / "wandb_id.txt").read_text().strip() == run_id  # the resumed run logs under the same W&B id
    latest = max((run / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}.wandb"), key=lambda p: p.stat().st_mtime).read_bytes()
    resumed = pd.read_csv(run / "metrics.csv")
    assert resumed["global_step"].iloc[-1] == 128 and json.dumps(float(resumed["disc/d_agent"].iloc[-1])).encode() in latest


def test_none_is_a_value_only_where_the_default_is_none():
    from drive_drail.train.config import ConfigError

    with pytest.raises(ConfigError, match=r"^steps must be a positive finite number, got None$"):
        TrainConfig(steps=None)
    with pytest.raises(ConfigError, match=r"^ppo.epochs must be a positive finite number, got None$"):
        TrainConfig(ppo={"epochs": None})
    config = TrainConfig(lane_std_floor=None, ppo={"bc_coef": None})  # None: the shared floor, the scenario's lambda_BC
    assert config.lane_std_floor is None and config.ppo.bc_coef is None
