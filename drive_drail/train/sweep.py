"""Training sweeps on Ray: a grid of runs (scenario x algorithm x seed x settings), one table of results.

A sweep file (YAML or JSON) names the runs::

    out: runs/sweep                    # one run folder per trial below it
    base: {steps: 500000, sim: batched, n_envs: 128, ppo: {n_steps: 16}}
    cases:                             # optional: settings that vary together
      - {scenario: lane_change, demos: pairs/lane_change.parquet}
      - {scenario: stop, demos: pairs/stop.parquet}
    grid:                              # every combination, with every case
      algo: [drail, gail]
      seed: [0, 1, 2]

Every key is a training setting: a :class:`~drive_drail.train.config.TrainConfig` field or a section's
path (``ppo.epochs``; a section may also be a mapping in ``base`` and ``cases``), checked as ``train --config``
checks it. A trial is named after the values it varies (``scenario-stop_algo-drail_seed-0``).

Each trial is one Ray task of one CPU (torch and BLAS held to one thread) on a local instance or
a cluster (``address``). A trial decides for itself what to do with its folder: a finished run
(``actor.pt``) is reused, a checkpointed one resumes (``train --resume``), an empty one starts. So a
trial whose worker died is retried by Ray from its last checkpoint, and running a sweep again
finishes what a killed sweep left. A trial that raises is reported as failed, and the others go on.

The results gather into ``OUT/sweep.csv``: one row per trial with its settings, status, wall time and
the last value of every ``charts/`` metric of its ``metrics.csv``.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from drive_drail.errors import UserError
from drive_drail.train.config import ConfigError, TrainConfig, checked_settings, read_yaml

SWEEP_KEYS = ("out", "base", "cases", "grid")


def _checked(values: Any, where: str, path: str) -> dict[str, Any]:
    """A mapping of TrainConfig fields with checked values (``where`` names it in errors); ``out`` is the sweep's."""
    return checked_settings(values, path, where=f"{where}.", exclude=("out",))


def read_sweep(path: str | Path) -> tuple[Path, list[tuple[str, dict[str, Any]]]]:
    """``(out folder, [(trial name, TrainConfig settings)])`` of a sweep file, in grid order."""
    path = str(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or "out" not in data:
        raise UserError(f"{path}: a sweep file is a mapping with 'out' and at least one of 'base', 'cases', 'grid'")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (a sweep has {', '.join(SWEEP_KEYS)})")
    base = _checked(data.get("base") or {}, "base", path)
    cases = data.get("cases") or [{}]
    if not isinstance(cases, list):
        raise UserError(f"{path}: 'cases' must be a list of mappings")
    cases = [_checked(c, f"cases[{i}]", path) for i, c in enumerate(cases)]
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UserError(f"{path}: 'grid' must map training settings to non-empty lists of values")
    axes = {}
    for key, values in grid.items():  # keyed by the setting's path (a flat name of earlier versions reads too)
        checked = [_checked({key: v}, "grid", path) for v in values]
        if any(len(c) != 1 for c in checked):
            raise UserError(f"{path}: grid key {key!r} must name one setting (e.g. ppo.epochs), not a section")
        axes[next(iter(checked[0]))] = [next(iter(c.values())) for c in checked]
    varied = [k for c in cases for k in c if len(cases) > 1] + [k for k, v in axes.items() if len(v) > 1]
    varied = list(dict.fromkeys(varied))
    trials, names = [], set()
    for case in cases:
        for combo in itertools.product(*axes.values()):
            settings = {**base, **case, **dict(zip(axes, combo))}
            name = "_".join(f"{k}-{_slug(settings[k])}" for k in varied) or "run"
            if name in names:
                raise UserError(f"{path}: two trials would share the folder {name!r}; vary a setting that tells them apart")
            names.add(name)
            try:  # every trial's values in range before any trial runs
                TrainConfig.from_settings(settings)
            except ConfigError as exc:
                raise exc.under(f"{path}: trial {name!r}: {exc.field}") from None
            trials.append((name, settings))
    return Path(str(data["out"])), trials


def _slug(value: Any) -> str:
    text = Path(value).stem if isinstance(value, str) and ("/" in value or value.endswith((".parquet", ".yaml"))) else str(value)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


def run_trial(settings: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """One trial in this process, single-threaded: reuse a finished run, resume a checkpointed one,
    or start it. Returns its row of the sweep table (never raises for a failed run)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    from drive_drail.train import checkpoint
    from drive_drail.train.adversarial import train

    torch.set_num_threads(1)
    run = Path(run_dir)
    row: dict[str, Any] = {"run": str(run)}
    start = time.monotonic()
    if (run / "actor.pt").is_file():
        row["status"] = "reused"
    else:
        resume = checkpoint.latest(run) is not None
        try:
            train(TrainConfig.from_settings({**settings, "out": str(run), "torch_threads": 1}), resume=resume, progress=False)
            row["status"] = "resumed" if resume else "trained"
        except Exception as exc:  # noqa: BLE001  (a failed trial is a row of the table, the sweep goes on)
            row["status"], row["error"] = "failed", f"{type(exc).__name__}: {exc}"[:500]
    row["wall_s"] = time.monotonic() - start
    metrics = run / "metrics.csv"
    if metrics.is_file():
        frame = pd.read_csv(metrics)
        for column in frame.columns:
            if column == "global_step" or column.startswith("charts/"):
                values = frame[column].dropna()
                if len(values):
                    row[column] = float(values.iloc[-1])
    return row


def run_trials(trials: list[tuple[str, dict[str, Any]]], out: str | Path, address: str | None = None,
               cpus: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Run ``[(name, TrainConfig settings)]`` as Ray tasks into ``out/<name>``; one row per trial, in order.

    ``address``: a Ray cluster (``auto``, ``ray://host:10001``), or None / ``local`` for a local instance
    of ``cpus`` CPUs (default: all); an already initialised Ray is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise UserError("sweeps run on Ray: pip install 'drive-drail[ray]'") from None
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        local = address in (None, "", "local")
        ray.init(address=None if local else address, num_cpus=cpus if local else None, include_dashboard=False,
                 ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=2)(run_trial)
    refs = {remote.remote(settings, str((out / name).resolve())): (name, settings) for name, settings in trials}
    rows = {}
    pending = list(refs)
    with tqdm(total=len(refs), desc="sweep (ray)", unit="trial", disable=None if progress else True) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                name, settings = refs[ref]
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died on every retry
                    result = {"run": str(out / name), "status": "failed", "error": f"{type(exc).__name__}"}
                rows[name] = {"trial": name, **settings, **result}
                bar.update(1)
    return pd.DataFrame([rows[name] for name, _ in trials])


def run_sweep(path: str | Path, address: str | None = None, cpus: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Run every trial of the sweep file ``path`` (:func:`run_trials`) and write ``OUT/sweep.csv``; returns that table."""
    from drive_drail.atomic import atomic_path

    out, trials = read_sweep(path)
    table = run_trials(trials, out, address, cpus, progress)
    with atomic_path(out / "sweep.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
