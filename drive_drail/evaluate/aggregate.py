"""Aggregates of the per-episode table: mean and a 95% confidence interval per
policy x scenario x split and metric.

The 0/1 outcomes (``RATE_METRICS``: success, collision, off-road) get Wilson score intervals: a
bootstrap of 4 episodes that all failed would claim ``0% [0%, 0%]``, Wilson says ``[0%, 49%]``.
Every other metric gets a percentile bootstrap.

Percentile bootstrap, vectorised: one matrix of resample indices ``[n_boot, n]`` per
group, shared by every metric of the group, and NaN-aware means (``time_to_goal_s`` is
NaN for episodes that never reached the goal; ``ade_m`` without a reference). Each
group's generator is seeded from ``seed`` and the group's key, so a group's interval
does not change when other policies or scenarios are added to the table.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from drive_drail.evaluate.metrics import METRIC_COLUMNS, RATE_METRICS

GROUP_COLUMNS = ("policy", "scenario", "split")
AGGREGATE_COLUMNS = (*GROUP_COLUMNS, "metric", "n", "mean", "ci_low", "ci_high")


@dataclass(frozen=True)
class BootstrapConfig:
    """Settings of the percentile bootstrap."""

    n_boot: int = 2000
    """Number of resamples."""
    confidence: float = 0.95
    """Coverage of the interval, in (0, 1)."""
    seed: int = 0
    """Base seed; each group mixes in a hash of its key."""


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n`` (95% for z = 1.96); NaN for n = 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _group_rng(config: BootstrapConfig, key: str) -> np.random.Generator:
    """The generator of one group's resamples: ``config.seed`` mixed with a hash of the group's key."""
    return np.random.default_rng([config.seed, zlib.crc32(key.encode())])


def bootstrap_mean_ci(values: np.ndarray, config: BootstrapConfig = BootstrapConfig(), key: str = "") -> np.ndarray:
    """Mean and percentile-bootstrap CI of each column of ``values``.

    Args:
        values: ``[n, M]`` samples (NaN = missing; every column is resampled with the same indices).
        config: resamples, confidence, seed.
        key: mixed into the seed (the group's name), for group-stable intervals.

    Returns:
        ``[M, 4]``: n (non-NaN count), mean, ci_low, ci_high; NaN where a column has no
        values. A column with one value gets a zero-width interval.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, m = x.shape
    out = np.full((m, 4), np.nan)
    count = np.sum(~np.isnan(x), axis=0)
    out[:, 0] = count
    if n == 0:
        return out
    rng = _group_rng(config, key)
    idx = rng.integers(0, n, size=(config.n_boot, n))  # [n_boot, n]
    resampled = x[idx]  # [n_boot, n, M]
    valid = ~np.isnan(resampled)
    sums = np.where(valid, resampled, 0.0).sum(axis=1)
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_means = sums / counts  # [n_boot, M]; NaN where a resample drew no values
    alpha = (1.0 - config.confidence) / 2.0
    has = count > 0
    with np.errstate(invalid="ignore"):
        out[has, 1] = np.nanmean(x[:, has], axis=0)
        out[has, 2] = np.nanquantile(boot_means[:, has], alpha, axis=0)
        out[has, 3] = np.nanquantile(boot_means[:, has], 1.0 - alpha, axis=0)
    return out


def aggregate(
    results: pd.DataFrame, metrics: tuple[str, ...] | None = None, config: BootstrapConfig = BootstrapConfig()
) -> pd.DataFrame:
    """Per policy x scenario x split and metric: n, mean, ci_low, ci_high (tidy, long format).

    Args:
        results: the per-episode table (:func:`drive_drail.evaluate.runner.evaluate`).
        metrics: metric columns to aggregate (default: every metric column present).
        config: bootstrap settings.
    """
    missing = [c for c in GROUP_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results table: missing column(s) {', '.join(missing)}")
    metrics = tuple(m for m in (metrics or METRIC_COLUMNS) if m in results.columns)
    z = NormalDist().inv_cdf(0.5 + config.confidence / 2.0)  # 1.96 at 95%
    rows = []
    for key, group in results.groupby(list(GROUP_COLUMNS), sort=True, dropna=False):
        values = group[list(metrics)].to_numpy(dtype=np.float64)
        stats = bootstrap_mean_ci(values, config, key="/".join(map(str, key)))
        for j, metric in enumerate(metrics):
            if metric in RATE_METRICS and stats[j, 0] > 0:
                outcomes = values[:, j][~np.isnan(values[:, j])]
                stats[j, 2:] = wilson(int(round(outcomes.sum())), len(outcomes), z)
        for metric, (n, mean, lo, hi) in zip(metrics, stats):
            rows.append((*key, metric, int(n), mean, lo, hi))
    return pd.DataFrame(rows, columns=list(AGGREGATE_COLUMNS))


PAIRED_COLUMNS = ("policy", "reference", "scenario", "split", "metric", "n", "mean", "ci_low", "ci_high")


def paired_differences(
    results: pd.DataFrame,
    reference: str = "expert",
    metrics: tuple[str, ...] = ("success", "collision", "route_completion"),
    config: BootstrapConfig = BootstrapConfig(),
) -> pd.DataFrame:
    """Each policy minus ``reference`` on the SAME episode seeds: mean difference and a bootstrap CI
    over the seed pairs, per policy x scenario x split and metric (tidy, :data:`PAIRED_COLUMNS`).

    Pairing removes the scene-to-scene variance both policies share (a dense start is hard for
    both), so a gap to the expert is resolved with far fewer episodes than two separate intervals.
    Seeds the reference did not play are left out; no reference rows give an empty table.
    """
    metrics = tuple(m for m in metrics if m in results.columns)
    ref = results[results["policy"] == reference].set_index(["scenario", "split", "seed"])[list(metrics)]
    rows = []
    others = results[results["policy"] != reference]
    for (policy, scenario, split), group in others.groupby(list(GROUP_COLUMNS), sort=True):
        keys = pd.MultiIndex.from_arrays([np.full(len(group), scenario, object), np.full(len(group), split, object), group["seed"]])
        have = keys.isin(ref.index)
        if not have.any():
            continue
        diff = group.loc[have, list(metrics)].to_numpy(np.float64) - ref.loc[keys[have]].to_numpy(np.float64)
        stats = bootstrap_mean_ci(diff, config, key=f"paired/{policy}/{reference}/{scenario}/{split}")
        for metric, (n, mean, lo, hi) in zip(metrics, stats):
            rows.append((policy, reference, scenario, split, metric, int(n), mean, lo, hi))
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def wide(agg: pd.DataFrame, metric: str, split: str, index: str = "policy", columns: str = "scenario") -> pd.DataFrame:
    """One metric of one split as a table ``index x columns`` of ``(mean, ci_low, ci_high)`` tuples."""
    sub = agg[(agg["metric"] == metric) & (agg["split"] == split)]
    table = sub.set_index([index, columns])[["mean", "ci_low", "ci_high"]].apply(tuple, axis=1)
    return table.unstack(columns)


# --------------------------------------------------------------------------------------
# Across training seeds, rliable-style (Agarwal et al., NeurIPS 2021, "Deep Reinforcement
# Learning at the Edge of the Statistical Precipice")
# --------------------------------------------------------------------------------------

SEED_LABEL = re.compile(r"^(?P<learner>.+?)[-_/@]s(?:eed)?(?P<seed>\d+)$")
"""A policy label that names one training seed of a learner: ``NAME-sN`` (also ``_sN``, ``/sN``,
``@sN``, ``-seedN``). ``drive-drail train``'s default run folders (``runs/lane_change-drail-s0``) match."""

ACROSS_SEEDS_COLUMNS = ("learner", "runs", "scenario", "split", "statistic", "value", "ci_low", "ci_high")
"""Tidy rows of :func:`across_seeds`: ``scenario``/``split`` are ``"all"`` for the aggregate over tasks."""


def training_seed_groups(labels: Sequence[str]) -> dict[str, list[str]]:
    """``{learner: [its policy labels]}`` for every learner with at least two seed-labelled runs
    (:data:`SEED_LABEL`), in the labels' order."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        m = SEED_LABEL.match(label)
        if m:
            groups.setdefault(m["learner"], []).append(label)
    return {k: v for k, v in groups.items() if len(v) >= 2}


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of every entry of ``scores`` (runs x tasks): the mean of the middle 50%,
    cutting ``int(0.25 n)`` entries at each end, as rliable's ``aggregate_iqm``
    (``scipy.stats.trim_mean(x, 0.25)``). Robust to one outlying run, less noisy than the median."""
    x = np.sort(np.asarray(scores, np.float64).ravel())
    cut = int(0.25 * len(x))
    return float(x[cut:len(x) - cut].mean())


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): the chance that a run of X beats a run of Y on a task drawn at random, ties half
    (the Mann-Whitney U statistic / (n m) per task, averaged over tasks). ``x [n, tasks]``, ``y [m, tasks]``."""
    wins = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1)) + 0.5 * (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(wins.mean())


def _stratified_boot(scores: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``scores [runs, tasks]`` resampled ``n_boot`` times, runs drawn with replacement within each task
    (the stratified bootstrap) -> ``[n_boot, runs, tasks]``."""
    idx = rng.integers(0, scores.shape[0], size=(n_boot, *scores.shape))
    return np.take_along_axis(np.broadcast_to(scores, idx.shape), idx, axis=1)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def score_matrices(results: pd.DataFrame, metric: str = "success") -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Each learner's ``[runs, tasks]`` matrix of per-run mean ``metric`` (a task: scenario x split),
    over the tasks every run of every learner played (:func:`training_seed_groups` names the runs).
    Returns ``(matrices, tasks)``; no learner with two runs gives ``({}, [])``."""
    groups = training_seed_groups(list(dict.fromkeys(results["policy"])))
    if not groups:
        return {}, []
    per_run = results.groupby(["policy", "scenario", "split"], sort=False)[metric].mean()
    labels = [label for runs in groups.values() for label in runs]
    tasks = None
    for label in labels:
        have = {(sc, sp) for (p, sc, sp) in per_run.index if p == label}
        tasks = have if tasks is None else tasks & have
    tasks = sorted(tasks or ())
    matrices = {learner: np.array([[per_run[(label, sc, sp)] for sc, sp in tasks] for label in runs], np.float64)
                for learner, runs in groups.items()}
    return matrices, tasks


def across_seeds(matrices: dict[str, np.ndarray], tasks: list[tuple[str, str]],
                 config: BootstrapConfig = BootstrapConfig()) -> pd.DataFrame:
    """rliable-style aggregates of each learner's training runs (:data:`ACROSS_SEEDS_COLUMNS`), from
    :func:`score_matrices`.

    A run's score on a task (scenario x split) is its mean metric over the task's episodes; a
    learner is the ``[runs, tasks]`` matrix of its seed-labelled runs (:func:`training_seed_groups`).
    Per task: the mean over runs. Over all tasks: the mean and the IQM (:func:`iqm`) of the matrix.
    Each with a 95% stratified-bootstrap CI: runs resampled with replacement within each task, so
    the interval is over training seeds, not episodes (the episode noise is inside each run's score).
    With 3 runs the interval is coarse; it says how far a seed-to-seed spread leaves the claim.
    """
    rows = []
    for learner, scores in matrices.items():
        if not tasks:
            continue
        n_runs = len(scores)
        boot = _stratified_boot(scores, config.n_boot, _group_rng(config, f"across/{learner}"))  # [n_boot, runs, tasks]
        for j, (sc, sp) in enumerate(tasks):
            rows.append((learner, n_runs, sc, sp, "mean", float(scores[:, j].mean()), *_percentiles(boot[:, :, j].mean(axis=1), config.confidence)))
        rows.append((learner, n_runs, "all", "all", "mean", float(scores.mean()), *_percentiles(boot.mean(axis=(1, 2)), config.confidence)))
        rows.append((learner, n_runs, "all", "all", "iqm", iqm(scores), *_percentiles(np.array([iqm(b) for b in boot]), config.confidence)))
    return pd.DataFrame(rows, columns=list(ACROSS_SEEDS_COLUMNS))


def improvement_probabilities(matrices: dict[str, np.ndarray], config: BootstrapConfig = BootstrapConfig()) -> pd.DataFrame:
    """P(row learner > column learner) over the shared tasks (:func:`probability_of_improvement`), with a
    95% stratified-bootstrap CI (both learners' runs resampled within each task), from
    :func:`score_matrices`. Columns ``learner, other, value, ci_low, ci_high``."""
    rows = []
    for a, x in matrices.items():
        for b, y in matrices.items():
            if a == b or x.shape[1] == 0:
                continue
            rng = _group_rng(config, f"poi/{a}/{b}")
            bx, by = _stratified_boot(x, config.n_boot, rng), _stratified_boot(y, config.n_boot, rng)
            boot = [probability_of_improvement(bx[k], by[k]) for k in range(config.n_boot)]
            rows.append((a, b, probability_of_improvement(x, y), *_percentiles(np.array(boot), config.confidence)))
    return pd.DataFrame(rows, columns=["learner", "other", "value", "ci_low", "ci_high"])
