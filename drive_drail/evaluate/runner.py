"""Closed-loop evaluation of policies x scenarios x splits, and the results table on disk.

One *task* is one episode seed of one scenario split, played by every policy in turn
(and by the scripted expert once more, as the ADE/FDE reference, when it is not among
the policies). Tasks run in parallel (:mod:`drive_drail.evaluate.parallel`); each builds
its own simulator and seeds everything from the episode seed, so the table is the same
for any number of workers and either backend.

The table is tidy: one row per (policy, scenario, split, seed) with the metric columns of
:mod:`drive_drail.evaluate.metrics`. :func:`write_results` appends it to
``OUT/results.parquet`` and ``OUT/results.csv`` (atomic rewrites under a lock; a rerun of
the same episode replaces its row) and records the run (command, versions, seeds) in
``OUT/runs.json``; :func:`read_results` reads any number of them back.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import platform
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from drive_drail.atomic import atomic_path, write_json
from drive_drail.errors import UserError
from drive_drail.evaluate.metrics import METRIC_COLUMNS, episode_metrics
from drive_drail.evaluate.parallel import map_tasks
from drive_drail.evaluate.policies import PolicySpec, build_policy, parse_policy
from drive_drail.evaluate.rollout import run_trace
from drive_drail.scenario import Scenario, list_scenarios, load_scenario

KEY_COLUMNS = ("policy", "scenario", "split", "seed")
"""One row per key in a results table."""
INFO_COLUMNS = ("policy_kind", "policy_source", "simulator")
RESULT_COLUMNS = (*KEY_COLUMNS, *INFO_COLUMNS, *METRIC_COLUMNS)
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
RUNS_JSON = "runs.json"
ADAPTER_PRELOAD = {"highway": ("drive_drail.sim.highway", "drive_drail.experts.highway")}
"""Modules a worker of each simulator needs: imported once by the process pool's fork server."""
SPLIT_ALIASES = {"heldout": "eval", "held-out": "eval", "test": "eval"}
RUN_ATTR = "drive_drail_run"
"""Key in ``DataFrame.attrs`` under which :func:`evaluate` leaves the run's metadata."""


@dataclass(frozen=True)
class EpisodeTask:
    """One episode seed of one scenario split, for every policy."""

    scenario: Scenario
    split: str
    seed: int
    policies: tuple[PolicySpec, ...]
    reference: bool = True
    """Also play the scripted expert from this seed as the ADE/FDE reference."""


def run_task(task: EpisodeTask) -> list[dict]:
    """Play ``task``: one row per policy (runs in a worker process or a Ray task)."""
    from drive_drail.sim import make_env

    scenario = task.scenario
    env = make_env(scenario, seed=0, split=task.split)
    try:
        traces = {}
        for policy in task.policies:
            traces[policy] = run_trace(env, _cached_policy(policy, scenario), task.seed)
        ref_xy = None
        if task.reference:
            expert = next((p for p in task.policies if p.kind == "expert"), None)
            if expert is not None:
                ref = traces[expert]
            else:
                try:
                    ref = run_trace(env, build_policy(PolicySpec(label="expert", kind="expert"), scenario), task.seed)
                except UserError:  # no scripted expert for this simulator: no reference
                    ref = None
            ref_xy = None if ref is None else np.stack([ref.x_m, ref.y_m], axis=1)
    finally:
        env.close()

    rows = []
    goal = scenario.success.min_route_completion
    for policy, trace in traces.items():
        ref = None if policy.kind == "expert" else ref_xy  # ADE of the expert against itself measures nothing
        rows.append(
            {
                "policy": policy.label,
                "scenario": scenario.name,
                "split": task.split,
                "seed": int(task.seed),
                "policy_kind": policy.kind,
                "policy_source": policy.source,
                "simulator": scenario.simulator,
                **episode_metrics(trace, goal_completion=goal, ref_xy_m=ref),
            }
        )
    return rows


_POLICY_CACHE: dict[PolicySpec, object] = {}


def _cached_policy(policy: PolicySpec, scenario: Scenario):
    """Learned policies are loaded once per process; baselines are rebuilt per scenario."""
    if policy.kind != "artifact":
        return build_policy(policy, scenario)
    if policy not in _POLICY_CACHE:
        _POLICY_CACHE[policy] = build_policy(policy, scenario)
    return _POLICY_CACHE[policy]


# --------------------------------------------------------------------------------------
# The evaluation entry point
# --------------------------------------------------------------------------------------


def resolve_scenarios(scenarios: str | Scenario | Sequence[str | Scenario]) -> list[Scenario]:
    """Scenario objects from names, paths, objects, or ``all`` (every file in the scenario folder)."""
    items = [scenarios] if isinstance(scenarios, (str, Scenario, Path)) else list(scenarios)
    out: list[Scenario] = []
    for item in items:
        if isinstance(item, Scenario):
            out.append(item)
        elif str(item) == "all":
            out.extend(load_scenario(name) for name in list_scenarios())
        else:
            out.append(load_scenario(item))
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"--scenario: scenario '{dup[0]}' given twice")
    return out


def resolve_splits(scenario: Scenario, split: str | Sequence[str]) -> list[str]:
    """Split names for one scenario: ``all`` = every split; ``heldout`` = ``eval``."""
    items = [split] if isinstance(split, str) else list(split)
    out: list[str] = []
    for item in items:
        names = list(scenario.split_names) if item == "all" else [SPLIT_ALIASES.get(item, item)]
        for name in names:
            scenario.seeds_for(name)  # unknown split -> ScenarioError naming the file
            if name not in out:
                out.append(name)
    return out


def evaluate(
    policies: Sequence[str | PolicySpec],
    scenarios: str | Scenario | Sequence[str | Scenario],
    episodes: int = 10,
    split: str | Sequence[str] = "eval",
    workers: int | None = None,
    backend: str = "process",
    ray_address: str | None = None,
    reference: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Run every policy closed loop on the first ``episodes`` seeds of every scenario split.

    Args:
        policies: :class:`PolicySpec` or ``--policy`` strings (``expert``, ``random``,
            ``constant[:A,S]``, an actor / run / export path, ``LABEL=PATH``).
        scenarios: names, paths, :class:`Scenario` objects, or ``all``.
        episodes: episodes per scenario split (its first seeds, in order).
        split: ``train``, ``eval`` (alias ``heldout``), a generalization split the scenario
            declares, a list of them, or ``all``.
        workers: worker processes (default: all cores); results do not depend on it.
        backend: ``process`` or ``ray``.
        ray_address: Ray address for the ``ray`` backend (``None``/``local``: a local instance).
        reference: play the scripted expert from each seed for ADE/FDE.
        progress: show a progress bar.

    Returns:
        The per-episode table (columns :data:`RESULT_COLUMNS`), sorted by policy order,
        scenario, split and seed; its ``attrs[RUN_ATTR]`` holds the run's metadata.

    With ``workers > 1`` the workers start through multiprocessing's fork server, which
    re-imports the calling script: call this under ``if __name__ == "__main__":``.
    """
    if episodes < 1:
        raise UserError(f"--episodes {episodes}: must be at least 1")
    specs = [p if isinstance(p, PolicySpec) else parse_policy(p) for p in policies]
    if not specs:
        raise UserError("--policy: give at least one policy")
    labels = [p.label for p in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UserError(f"--policy: two policies are labelled '{dup[0]}' (name them with LABEL=PATH)")
    scenario_list = resolve_scenarios(scenarios)

    tasks: list[EpisodeTask] = []
    seeds_used: dict[str, dict[str, list[int]]] = {}
    for scenario in scenario_list:
        for split_name in resolve_splits(scenario, split):
            seeds = list(scenario.seeds_for(split_name)[:episodes])
            seeds_used.setdefault(scenario.name, {})[split_name] = seeds
            tasks += [EpisodeTask(scenario, split_name, s, tuple(specs), reference) for s in seeds]

    t0 = time.perf_counter()
    preload = ["drive_drail.evaluate.runner", *(ADAPTER_PRELOAD.get(s.simulator, ()) for s in scenario_list)]
    if any(p.kind == "artifact" for p in specs):
        preload += ["drive_drail.deploy.runtime", "onnxruntime", "torch"]
    preload = list(dict.fromkeys(m for item in preload for m in ([item] if isinstance(item, str) else item)))
    per_task = map_tasks(run_task, tasks, workers, backend, ray_address, progress, preload=preload,
                         size=lambda task: len(task.policies))  # the bar counts episodes, not seeds
    rows = [row for task_rows in per_task for row in task_rows]
    wall_s = time.perf_counter() - t0

    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    order = {label: i for i, label in enumerate(labels)}
    table = table.sort_values(["policy", "scenario", "split", "seed"], key=lambda c: c.map(order) if c.name == "policy" else c, kind="stable")
    table = table.reset_index(drop=True)
    table.attrs[RUN_ATTR] = {
        "policies": [{"label": p.label, "kind": p.kind, "source": p.source, "backend": p.backend} for p in specs],
        "scenarios": {s.name: scenario_record(s) for s in scenario_list},
        "seeds": seeds_used,
        "episodes": episodes,
        "workers": workers,
        "backend": backend,
        "ray_address": ray_address,
        "reference": reference,
        "wall_s": wall_s,
        "episodes_per_min": 60.0 * len(rows) / wall_s if wall_s > 0 else float("nan"),
    }
    return table


def scenario_record(scenario: Scenario) -> dict:
    """How to rebuild ``scenario``: its file and the fields that differ from the file's version."""
    record: dict = {"source": scenario.source, "overrides": {}}
    try:
        on_disk = load_scenario(scenario.source)
    except (OSError, ValueError):  # built in memory: keep every small field
        on_disk = None
    for f in dataclasses.fields(Scenario):
        if f.name in ("source", "train_seeds", "eval_seeds"):
            continue
        value = getattr(scenario, f.name)
        if on_disk is None or value != getattr(on_disk, f.name):
            record["overrides"][f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return record


def scenario_from_record(record: dict) -> Scenario:
    """Inverse of :func:`scenario_record` (the file must still exist)."""
    from drive_drail.scenario import DemoSettings, SuccessCriteria

    base = load_scenario(record["source"])
    overrides = dict(record.get("overrides", {}))
    if "success" in overrides:
        overrides["success"] = SuccessCriteria(**overrides["success"])
    if "demos" in overrides:
        overrides["demos"] = DemoSettings(**overrides["demos"])
    return dataclasses.replace(base, **overrides)


# --------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Versions of Python and of every package that shapes the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("drive-drail", "numpy", "pandas", "torch", "gymnasium", "highway-env", "onnxruntime", "ray", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def write_results(results: pd.DataFrame, out_dir: str | Path, command: str | None = None) -> Path:
    """Append ``results`` to ``OUT/results.parquet`` and ``OUT/results.csv``; record the run in ``OUT/runs.json``.

    A row whose (policy, policy_source, scenario, split, seed) is already stored is
    replaced (a rerun of the same episode). Files are rewritten atomically under a lock
    file, so concurrent writers and killed processes never leave half a table.
    Returns the Parquet path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = dict(results.attrs.get(RUN_ATTR, {}))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    run.update(
        {
            "run_id": run_id,
            "command": command if command is not None else shlex.join(["drive-drail", *sys.argv[1:]]) if sys.argv else "",
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            "rows": len(results),
        }
    )
    new = results.copy()
    new["run_id"] = run_id
    parquet, csv = out_dir / RESULTS_PARQUET, out_dir / RESULTS_CSV
    with open(out_dir / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = new
        if parquet.exists():
            old = pd.read_parquet(parquet)
            table = pd.concat([old, new], ignore_index=True)
            table = table.drop_duplicates(subset=["policy", "policy_source", "scenario", "split", "seed"], keep="last")
        table = table.reset_index(drop=True)
        table.attrs = {}
        with atomic_path(parquet) as tmp:
            table.to_parquet(tmp, index=False)
        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False)
        runs_path = out_dir / RUNS_JSON
        runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
        write_json(runs_path, [*runs, run])
        for path in (parquet, csv, runs_path):
            readable(path)
    return parquet


def readable(path: Path) -> None:
    """Give a file written through a temp file the usual ``0666 & ~umask`` mode (temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def read_results(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, list[dict]]:
    """Read results tables (folders holding ``results.parquet``, ``.parquet`` or ``.csv`` files).

    Returns the concatenated table (later files win on duplicate episodes) and the run
    records of every ``runs.json`` found next to them.
    """
    frames, runs = [], []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / RESULTS_PARQUET if (path / RESULTS_PARQUET).exists() else path / RESULTS_CSV
        if not path.exists():
            raise UserError(f"{p}: no results table (expected a folder with {RESULTS_PARQUET}, or a .parquet/.csv file)")
        if path.suffix not in (".parquet", ".csv"):
            raise UserError(f"{path}: not a results table (.parquet or .csv)")
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            if isinstance(exc, (PermissionError, IsADirectoryError)):
                raise
            raise UserError(f"{path}: not a readable results table ({type(exc).__name__})") from None
        missing = [c for c in (*KEY_COLUMNS, "success") if c not in frame.columns]
        if missing:
            raise UserError(f"{path}: column '{missing[0]}' missing: not a drive-drail results table")
        frames.append(frame)
        runs_path = path.parent / RUNS_JSON
        if runs_path.exists():
            try:
                runs.extend(json.loads(runs_path.read_text()))
            except json.JSONDecodeError as exc:
                raise UserError(f"{runs_path}: invalid JSON at line {exc.lineno}") from None
    table = pd.concat(frames, ignore_index=True)
    dedupe = [c for c in ("policy", "policy_source", "scenario", "split", "seed") if c in table.columns]
    table = table.drop_duplicates(subset=dedupe, keep="last").reset_index(drop=True)
    seen, unique_runs = set(), []
    for run in runs:
        if run.get("run_id") not in seen:
            seen.add(run.get("run_id"))
            unique_runs.append(run)
    return table, unique_runs
