"""drive-drail sweep: a grid of training runs on a local Ray instance, gathered into one table."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from drive_drail.errors import UserError
from drive_drail.pairs.convert import ConvertConfig, convert_file
from drive_drail.record import record_episodes
from drive_drail.train.sweep import read_sweep

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("demos")
    log = record_episodes("stop", n_episodes=2, seed=0, out_path=folder / "log.parquet", progress=False)
    convert_file(str(log), str(folder / "pairs.parquet"), "auto", ConvertConfig(action_hz=5.0))
    return str(folder / "pairs.parquet")


def sweep_file(tmp_path, demos, **grid) -> str:
    spec = {"out": str(tmp_path / "sweep"),
            "base": {"scenario": "stop", "demos": demos, "sim": "batched", "steps": 256, "n_envs": 16,
                     "ppo": {"n_steps": 8, "batch_size": 64, "epochs": 1}, "bc": {"epochs": 1}, "disc": {"epochs": 1, "batch": 64}},
            "grid": grid or {"algo": ["drail", "gail"], "seed": [0]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_trials_are_the_grid_named_after_what_they_vary_and_bad_values_are_refused(tmp_path):
    path = sweep_file(tmp_path, "pairs.parquet", algo=["drail", "gail"], seed=[0, 1])
    out, trials = read_sweep(path)
    assert out == tmp_path / "sweep"
    assert [name for name, _ in trials] == ["algo-drail_seed-0", "algo-drail_seed-1", "algo-gail_seed-0", "algo-gail_seed-1"]
    assert trials[3][1]["algo"] == "gail" and trials[3][1]["seed"] == 1 and trials[3][1]["steps"] == 256
    with pytest.raises(UserError, match=r"sweep.yaml: key grid.'seed' must be an integer, got 'zero'"):
        read_sweep(sweep_file(tmp_path, "p", seed=["zero"]))
    with pytest.raises(UserError, match=r"unknown key grid.'sed'"):
        read_sweep(sweep_file(tmp_path, "p", sed=[0]))
    with pytest.raises(UserError, match=r"sweep.yaml: trial 'ppo.gamma-1.5': ppo.gamma must lie in \[0, 1\), got 1.5"):
        read_sweep(sweep_file(tmp_path, "p", **{"ppo.gamma": [0.9, 1.5]}))  # every trial checked before any runs
    _, flat = read_sweep(sweep_file(tmp_path, "p", gamma=[0.9, 0.95]))  # a flat name of earlier versions reads as its path
    assert [name for name, _ in flat] == ["ppo.gamma-0.9", "ppo.gamma-0.95"] and flat[0][1]["ppo.epochs"] == 1


def test_a_sweep_trains_on_ray_gathers_one_table_and_a_rerun_resumes_and_reuses(tmp_path, demos):
    path = sweep_file(tmp_path, demos)
    cli = [sys.executable, "-m", "drive_drail.cli", "sweep", path, "--cpus", "2", "--quiet"]
    first = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table["trial"].tolist() == ["algo-drail", "algo-gail"]
    assert (table["status"] == "trained").all() and (table["global_step"] == 256).all()
    assert "charts/episode_success" in table.columns or "charts/reward_mean" in table.columns
    for trial in table["trial"]:
        assert (tmp_path / "sweep" / trial / "actor.pt").is_file()
    # A killed trial: its final actor is gone, its checkpoint is left; the rerun resumes it and reuses the other.
    (tmp_path / "sweep" / "algo-gail" / "actor.pt").unlink()
    again = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table.set_index("trial")["status"].to_dict() == {"algo-drail": "reused", "algo-gail": "resumed"}
    assert (tmp_path / "sweep" / "algo-gail" / "actor.pt").is_file()


def test_a_failing_trial_is_a_row_and_an_exit_2_while_the_others_finish(tmp_path, demos):
    path = sweep_file(tmp_path, demos, algo=["gail"], seed=[0])
    spec = yaml.safe_load(open(path))
    spec["cases"] = [{"demos": demos}, {"demos": str(tmp_path / "missing.parquet")}]
    open(path, "w").write(yaml.safe_dump(spec))
    done = subprocess.run([sys.executable, "-m", "drive_drail.cli", "sweep", path, "--cpus", "2", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "1 of 2 trials failed" in done.stderr and "Traceback" not in done.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table["status"].tolist() == ["trained", "failed"] and "missing.parquet" in table["error"].iloc[1]
    shutil.rmtree(tmp_path / "sweep")
