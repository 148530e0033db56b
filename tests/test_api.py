"""The notebook API: ``from drive_drail import convert, train, evaluate, export, load_policy``, end to end."""

import numpy as np

from drive_drail import spec


def test_the_pipeline_runs_from_python(tmp_path):
    from drive_drail import convert, evaluate, export, load_policy, train
    from drive_drail.record import record_episodes

    log = record_episodes("stop", n_episodes=1, seed=0, out_path=tmp_path / "log.parquet", progress=False)
    pairs, meta = convert(log, tmp_path / "pairs.parquet", action_hz=5.0)
    assert len(pairs) > 10 and meta["format"] == "simlog"
    run = train(scenario="stop", demos=str(tmp_path / "pairs.parquet"), sim="batched", steps=64, n_envs=4,
                ppo={"n_steps": 16, "batch_size": 32, "epochs": 1}, bc={"epochs": 1}, policy={"hidden": (16, 16)},
                disc={"hidden": 32}, torch_threads=1,
                out=str(tmp_path / "run"), progress=False)
    action = load_policy(run).act(np.zeros(spec.OBS_DIM, np.float32))
    assert action.shape == (spec.ACTION_DIM,) and np.all(np.abs(action) <= 1)
    manifest = export(run, tmp_path / "deploy", build_engine=False)
    onnx = load_policy(tmp_path / "deploy")
    obs = np.random.default_rng(0).normal(size=(4, spec.OBS_DIM)).astype(np.float32)
    np.testing.assert_allclose(onnx.act(obs), load_policy(run).act(obs), atol=1e-5)
    assert manifest is not None
    table = evaluate([f"mine={run}"], "stop", episodes=1, workers=1, reference=False)
    assert list(table["policy"]) == ["mine"]


def test_train_and_evaluate_stay_callable_once_their_subpackages_are_imported(tmp_path):
    import pytest

    import drive_drail
    from drive_drail.errors import UserError
    import drive_drail.evaluate.runner  # noqa: F401  (rebinds drive_drail.evaluate to the subpackage)
    import drive_drail.train.config  # noqa: F401

    assert callable(drive_drail.train) and callable(drive_drail.evaluate)
    assert drive_drail.train.config.TrainConfig().algo == "drail"  # and still the packages
    with pytest.raises(UserError, match="^demos is required"):  # the trainer checks its settings; the API names the field
        drive_drail.train(scenario="stop", out=str(tmp_path / "run"))
    with pytest.raises(UserError, match="--episodes"):
        drive_drail.evaluate(["expert"], "stop", episodes=0)
    assert not (tmp_path / "run").exists()
