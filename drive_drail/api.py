"""The pipeline as Python functions, for notebooks and scripts: ``from drive_drail import convert, train, ...``.

Each is a thin front to the module that does the work, with the CLI's defaults; heavy imports
(torch, highway-env) happen on the first call, not on ``import drive_drail``.

    pairs, meta = convert("expert_log.parquet", "pairs.parquet")
    run = train(scenario="lane_change", demos="pairs.parquet", sim="batched", steps=500_000, n_envs=128, ppo={"n_steps": 16})
    policy = load_policy(run)                     # .act(obs [OBS_DIM] or [B, OBS_DIM]) -> unit actions
    table = evaluate([f"drail={run}", "expert"], "lane_change", episodes=20)
    manifest = export(run, "deploy/")
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Sequence


def convert(src: str | Path, out: str | Path, fmt: str = "auto", **settings: Any):
    """A driving log -> a Parquet file of expert pairs; returns ``(pairs DataFrame, metadata)``.

    ``settings``: :class:`drive_drail.pairs.convert.ConvertConfig` fields (``action_hz``, ``egos``, ``smooth_s``).
    """
    from drive_drail.pairs.convert import ConvertConfig, convert_file

    return convert_file(str(src), str(out), fmt, ConvertConfig(**settings))


def train(resume: bool = False, progress: bool = True, **settings: Any) -> Path:
    """Train one run; returns its folder (``actor.pt``, ``metrics.csv``, ``config.json``, ``tb/``).

    ``settings``: :class:`drive_drail.train.config.TrainConfig` fields (``scenario``, ``algo``, ``demos``,
    ``steps``, ``sim``, ``out``, ...) and sections as mappings (``ppo={"n_steps": 16}``); the flat names of
    earlier versions (``n_steps=16``) read too. With ``resume`` only ``out`` (and optionally ``steps``) is
    read: the run continues with its saved settings.
    """
    from drive_drail.train.adversarial import train as train_run
    from drive_drail.train.config import TrainConfig

    if resume:
        return train_run(TrainConfig(out=settings["out"]), resume=True, progress=progress, steps=settings.get("steps"))
    return train_run(TrainConfig.from_mapping(settings), progress=progress)


def evaluate(policies: Sequence[str], scenarios: str | Sequence[str], episodes: int = 10, split: str | Sequence[str] = "eval",
             **options: Any):
    """Closed-loop episodes of every policy on every scenario split; returns the per-episode DataFrame.

    See :func:`drive_drail.evaluate.runner.evaluate` for the policy strings and ``options``. Worker
    processes start through a fork server: call it under ``if __name__ == "__main__":`` in scripts.
    """
    from drive_drail.evaluate.runner import evaluate as run_evaluation

    return run_evaluation(policies, scenarios, episodes=episodes, split=split, **options)


def export(checkpoint: str | Path, out: str | Path, **options: Any):
    """ONNX (and a TensorRT engine where TensorRT and a GPU exist) plus ``manifest.json``; returns the Manifest.

    ``options``: ``precision``, ``batch``, ``parity_obs``, ``build_engine``
    (:func:`drive_drail.deploy.export.export_policy`).
    """
    from drive_drail.deploy.export import export_policy

    return export_policy(checkpoint, out, **options)


def load_policy(path: str | Path, backend: str = "auto"):
    """A policy from a run folder, ``actor.pt`` or export folder: ``.act(obs) -> unit actions``."""
    from drive_drail.deploy.runtime import load_policy as load
    from drive_drail.evaluate.policies import resolve_artifact

    return load(resolve_artifact(path), backend=backend)


def make_package_callable(package: str, function: str) -> None:
    """Make the subpackage ``package`` callable as the function ``function`` of this module.

    ``from drive_drail import train`` finds this module's :func:`train`, but importing the
    subpackage ``drive_drail.train`` rebinds that name to the package itself. A callable package
    calls the same function, whichever of the two a user's import found.
    """

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return globals()[function](*args, **kwargs)

    sys.modules[package].__class__ = CallablePackage
