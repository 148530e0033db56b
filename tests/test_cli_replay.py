"""`drive-drail replay`: a trained actor drives the logged ego of a constructed ScenarioNet folder."""

import subprocess
import sys

import numpy as np
import pandas as pd

from drive_drail.models.policy import ActorConfig, DeterministicActor

from log_factories import make_scenarionet
from terminal import stderr_on_a_terminal


def test_replay_cli_writes_per_scenario_metrics(tmp_path):
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=2)
    actor = DeterministicActor(ActorConfig(hidden_sizes=(16, 16)))
    actor.save(tmp_path / "actor.pt")
    out = tmp_path / "replay.csv"
    argv = [sys.executable, "-m", "drive_drail.cli", "replay", str(folder), "--policy", str(tmp_path / "actor.pt"), "--max-steps", "20"]
    proc = subprocess.run([*argv, "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out)
    assert len(table) == 2
    assert "scenario/s" not in proc.stderr  # no bar into a pipe or a log file
    status, stderr = stderr_on_a_terminal([*argv, "-o", str(tmp_path / "replay2.csv")], timeout_s=300)
    assert status == 0, stderr[-2000:]
    assert "2/2" in stderr and "scenario" in stderr  # on a terminal the progress bar counted both scenarios
    assert np.isfinite(table.select_dtypes("number").to_numpy(dtype=float)).any(axis=1).all()


def test_replay_cli_baselines_log_and_constant_and_no_expert(tmp_path):
    folder = make_scenarionet(tmp_path / "sn", n_scenarios=1)
    base = [sys.executable, "-m", "drive_drail.cli", "replay", str(folder), "--max-steps", "30", "--quiet"]
    tables = {}
    for name in ("log", "constant"):
        out = tmp_path / f"{name}.csv"
        proc = subprocess.run([*base, "--policy", name, "-o", str(out)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        tables[name] = pd.read_csv(out)
    assert tables["log"]["applicable"].all() and tables["log"]["steps"].eq(30).all()
    # The constant policy holds 15 m/s straight, as the logged sdc (offset 0.4 m, no lane change) does.
    assert abs(tables["constant"]["mean_speed_mps"].iloc[0] - 15.0) < 1.0
    proc = subprocess.run([*base, "--policy", "expert", "-o", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "'log'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.csv").exists()
