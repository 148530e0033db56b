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
