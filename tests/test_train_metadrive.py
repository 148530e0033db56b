"""A short DRAIL run in MetaDrive through the same recorder, converter and trainer as highway-env."""

import numpy as np
import pandas as pd
import pytest

from drive_drail import spec
from drive_drail.models.policy import DeterministicActor
from drive_drail.pairs.convert import ConvertConfig, convert_file
from drive_drail.record import record_episodes
from drive_drail.scenario import load_scenario
from drive_drail.train import checkpoint
from drive_drail.train.adversarial import train
from drive_drail.train.config import BCConfig, DiscConfig, PolicyConfig, PPOConfig, TrainConfig


@pytest.mark.slow
def test_drail_in_metadrive_completes_and_resumes(tmp_path):
    scenario = load_scenario("metadrive_stop")
    log = record_episodes(scenario, n_episodes=1, seed=0, out_path=tmp_path / "log.parquet", progress=False)
    convert_file(str(log), str(tmp_path / "pairs.parquet"), "auto", ConvertConfig(action_hz=scenario.policy_frequency_hz))
    config = TrainConfig(scenario="metadrive_stop", algo="drail", demos=str(tmp_path / "pairs.parquet"), steps=64,
                         n_envs=2, ppo=PPOConfig(n_steps=16, batch_size=16, epochs=2), bc=BCConfig(epochs=2),
                         disc=DiscConfig(hidden=64), policy=PolicyConfig(hidden=(32, 32)), torch_threads=1, out=str(tmp_path / "run"))
    run = train(config, progress=False)
    assert checkpoint.latest(run).name == "it-000002"
    run = train(config, resume=True, steps=128, progress=False)
    assert checkpoint.latest(run).name == "it-000004"
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["global_step"].iloc[-1] == 128 and np.isfinite(metrics["disc/loss"].dropna()).all()
    action = DeterministicActor.load(run / "actor.pt").act(np.zeros(spec.OBS_DIM, np.float32))
    assert action.shape == (2,)
