"""The evaluation report: one self-contained HTML file and its Markdown twin.

``write_report(results, out_dir)`` reads results tables (:func:`read_results`), aggregates
them with 95% confidence intervals (Wilson for rates, bootstrap otherwise) and writes ``OUT/report.html`` (every image
inlined as a base64 data URI, no scripts, no external resources) and ``OUT/report.md``
(images as files under ``OUT/assets/``). Contents:

1. summary: policies x scenarios, success rate with 95% CI per split, best highlighted;
2. per scenario: every metric (mean [95% CI]) per policy and split, best highlighted,
   bar plots with CI whiskers, and GIFs of a representative success and failure
   (replayed from their seeds with highway-env's headless renderer);
3. learning curves from training runs' ``metrics.csv`` (when given);
4. reproducibility: the exact commands, versions and seeds of every evaluation run.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from drive_drail.atomic import atomic_path, write_text
from drive_drail.errors import UserError
from drive_drail.evaluate.aggregate import (
    BootstrapConfig,
    across_seeds,
    aggregate,
    improvement_probabilities,
    paired_differences,
    score_matrices,
)
from drive_drail.evaluate.failures import FAILURE_TYPES, failure_counts, gallery_picks, overlay, trace_figure, with_failure_types
from drive_drail.evaluate.metrics import HIGHER_IS_BETTER, METRIC_COLUMNS
from drive_drail.evaluate.policies import PolicySpec
from drive_drail.evaluate.runner import read_results, readable, scenario_from_record, versions

PLOT_METRICS = ("success", "collision", "route_completion", "mean_speed_mps", "min_ttc_s", "max_abs_jerk_mps3", "hard_brakes", "ade_m")
"""Metrics drawn as bar plots, in order."""
RATE_METRICS = ("success", "collision", "offroad", "route_completion")
"""Fractions, shown as percentages."""
METRIC_LABELS = {
    "success": "success rate",
    "collision": "collision rate",
    "offroad": "off-road rate",
    "route_completion": "route completion",
    "time_to_goal_s": "time to goal [s]",
    "steps": "policy steps",
    "time_s": "episode time [s]",
    "mean_speed_mps": "mean speed [m/s]",
    "min_speed_mps": "min speed [m/s]",
    "mean_abs_jerk_mps3": "mean |jerk| [m/s³]",
    "max_abs_jerk_mps3": "max |jerk| [m/s³]",
    "lane_changes": "lane changes",
    "min_ttc_s": "min TTC [s]",
    "hard_brakes": "hard brakes",
    "ade_m": "ADE vs expert [m]",
    "fde_m": "FDE vs expert [m]",
}
LEARNING_PANELS = (
    ("episode success", ("charts/episode_success",)),
    ("discriminator D (expert, agent)", ("disc/d_expert", "disc/d_agent")),
    ("reward", ("charts/reward_mean",)),
    ("policy / value loss", ("losses/policy_loss", "losses/value_loss")),
    ("discriminator loss", ("disc/loss",)),
    ("episode crash rate", ("charts/episode_crashed",)),
    ("episode mean speed [m/s]", ("charts/episode_mean_speed_mps",)),
)
"""Learning-curve panels: title, metrics.csv columns (panels without any column are left out)."""


@dataclass
class ReportConfig:
    """What goes into a report."""

    title: str = "drive-drail evaluation report"
    """Page title."""
    render: bool = True
    """Replay and render a representative success and failure per scenario."""
    frame_every: int = 2
    """Render every n-th policy step."""
    max_frames: int = 120
    """Frames per GIF at most."""
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    """Confidence-interval settings."""
    curve_x: str = "step"
    """Learning curves against ``step`` (environment steps) or ``wall`` (training seconds)."""
    gallery_max: int = 6
    """Failed episodes replayed per scenario for the failure gallery (one per policy and failure type); 0: none."""
    failed_rows_max: int = 40
    """Rows of the per-episode table of failures per scenario (the results file holds them all)."""


@dataclass
class Image:
    """A figure of the report: bytes, format (png/gif), file name, caption."""

    data: bytes
    fmt: str
    name: str
    caption: str

    def __post_init__(self) -> None:
        # Names come from results tables (scenario and policy names): never a path, never hidden.
        self.name = re.sub(r"[^A-Za-z0-9._-]", "_", self.name).lstrip(".") or "image"

    def data_uri(self) -> str:
        return f"data:image/{self.fmt};base64,{base64.b64encode(self.data).decode('ascii')}"


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def fmt_value(metric: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if metric in RATE_METRICS:
        return f"{100 * value:.0f}%"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def fmt_ci(metric: str, mean: float, lo: float, hi: float) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{fmt_value(metric, mean)} [{fmt_value(metric, lo)}, {fmt_value(metric, hi)}]"


def best_mask(values: Sequence[float], metric: str) -> list[bool]:
    """Which entries hold the best value of ``metric`` (ties all win; none for unranked metrics)."""
    direction = HIGHER_IS_BETTER.get(metric)
    v = np.asarray(values, dtype=np.float64)
    if direction is None or np.all(np.isnan(v)) or np.sum(~np.isnan(v)) < 2:
        return [False] * len(v)
    best = np.nanmax(v) if direction else np.nanmin(v)
    if np.allclose(v[~np.isnan(v)], best):  # everyone ties: nothing to single out
        return [False] * len(v)
    return [bool(not np.isnan(x) and np.isclose(x, best)) for x in v]


# --------------------------------------------------------------------------------------
# Tables (HTML and Markdown from one list of rows)
# --------------------------------------------------------------------------------------


@dataclass
class Table:
    """A report table: header, rows of cell strings, and which cells to highlight."""

    caption: str
    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]]

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = []
        for row, best in zip(self.rows, self.best):
            cells = []
            for i, (cell, b) in enumerate(zip(row, best)):
                tag = "th" if i == 0 else "td"
                cls = ' class="best"' if b else ""
                cells.append(f"<{tag}{cls}>{html.escape(cell)}</{tag}>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        return (
            f'<div class="scroll"><table><caption>{html.escape(self.caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>"
        )

    def markdown(self) -> str:
        def cell(text: str, best: bool) -> str:
            text = _md_text(text)
            return f"**{text}**" if best else text

        header = [_md_text(h) for h in self.header]
        lines = [f"*{_md_text(self.caption)}*", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(c, b) for c, b in zip(row, best)) + " |" for row, best in zip(self.rows, self.best)]
        return "\n".join(lines)


def summary_tables(agg: pd.DataFrame, policies: list[str], scenarios: list[str], metric: str = "success") -> list[Table]:
    """One table per split: policies x scenarios, ``metric`` mean [CI], best per scenario highlighted."""
    tables = []
    sub = agg[agg["metric"] == metric]
    for split in sorted(sub["split"].unique(), key=_split_order):
        s = sub[sub["split"] == split].set_index(["policy", "scenario"])
        cols = [sc for sc in scenarios if any((p, sc) in s.index for p in policies)]
        rows_policies = [p for p in policies if any((p, sc) in s.index for sc in cols)]
        cells, means = [], []
        for p in rows_policies:
            row, mrow = [p], []
            for sc in cols:
                if (p, sc) in s.index:
                    r = s.loc[(p, sc)]
                    row.append(fmt_ci(metric, r["mean"], r["ci_low"], r["ci_high"]) + f" (n={int(r['n'])})")
                    mrow.append(r["mean"])
                else:
                    row.append("–")
                    mrow.append(np.nan)
            cells.append(row)
            means.append(mrow)
        best = [[False] * (len(cols) + 1) for _ in rows_policies]
        for j in range(len(cols)):
            for i, b in enumerate(best_mask([m[j] for m in means], metric)):
                best[i][j + 1] = b
        tables.append(Table(f"{METRIC_LABELS.get(metric, metric)} with 95% CI, split '{split}'", ["policy", *cols], cells, best))
    return tables


def scenario_table(agg: pd.DataFrame, scenario: str, policies: list[str], metrics: Sequence[str]) -> Table:
    """Rows policy (split), columns metrics: mean [95% CI]; best per metric and split highlighted, among the
    policies that succeed at least once (the success column ranks everyone)."""
    sub = agg[agg["scenario"] == scenario]
    keys = [(p, sp) for sp in sorted(sub["split"].unique(), key=_split_order) for p in policies if ((sub["policy"] == p) & (sub["split"] == sp)).any()]
    metrics = [m for m in metrics if m in set(sub["metric"])]
    indexed = sub.set_index(["policy", "split", "metric"])
    rows, means = [], []
    for p, sp in keys:
        row, mrow = [f"{p} ({sp})"], []
        for m in metrics:
            r = indexed.loc[(p, sp, m)] if (p, sp, m) in indexed.index else None
            row.append("–" if r is None else fmt_ci(m, r["mean"], r["ci_low"], r["ci_high"]))
            mrow.append(np.nan if r is None else r["mean"])
        rows.append(row)
        means.append(mrow)
    # Only a policy that does the task at all can be best at anything else: a car that crashes at
    # once has no off-road episodes and no hard brakes.
    success = [indexed.loc[(p, sp, "success")]["mean"] if (p, sp, "success") in indexed.index else np.nan for p, sp in keys]
    best = [[False] * (len(metrics) + 1) for _ in keys]
    for sp in {k[1] for k in keys}:
        idx = [i for i, k in enumerate(keys) if k[1] == sp]
        for j, m in enumerate(metrics):
            values = [means[i][j] if m == "success" or success[i] != 0.0 else np.nan for i in idx]
            for i, b in zip(idx, best_mask(values, m)):
                best[i][j + 1] = b
    header = ["policy (split)", *(METRIC_LABELS.get(m, m) for m in metrics)]
    return Table(f"{scenario}: mean [95% CI: Wilson for rates, bootstrap otherwise] per episode", header, rows, best)


def paired_table(paired: pd.DataFrame) -> Table:
    """Rows policy (scenario, split), columns the paired metrics: difference [95% CI] (n pairs)."""
    metrics = list(dict.fromkeys(paired["metric"]))
    keys = list(dict.fromkeys(zip(paired["policy"], paired["scenario"], paired["split"])))
    indexed = paired.set_index(["policy", "scenario", "split", "metric"])
    rows = []
    for p, sc, sp in keys:
        row = [f"{p} ({sc}, {sp})"]
        for m in metrics:
            r = indexed.loc[(p, sc, sp, m)]
            scale, unit = (100.0, " pp") if m in RATE_METRICS else (1.0, "")
            row.append(f"{scale * r['mean']:+.1f}{unit} [{scale * r['ci_low']:+.1f}, {scale * r['ci_high']:+.1f}] (n={int(r['n'])})")
        rows.append(row)
    header = ["policy (scenario, split)", *(f"{METRIC_LABELS.get(m, m)} minus the expert's" for m in metrics)]
    return Table("paired differences to the expert", header, rows, [[False] * (len(metrics) + 1) for _ in rows])


def across_seeds_tables(across: pd.DataFrame, poi: pd.DataFrame) -> list[Table]:
    """Learner rows: the success rate per task and over all tasks (mean, IQM), each with its
    stratified-bootstrap CI over training seeds; then P(row > column) between learners."""
    pct = lambda v, lo, hi: f"{100 * v:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"  # noqa: E731
    learners = list(dict.fromkeys(across["learner"]))
    tasks = list(dict.fromkeys((sc, sp) for sc, sp in zip(across["scenario"], across["split"]) if sc != "all"))
    cols = [(sc, sp, "mean") for sc, sp in tasks] + [("all", "all", "mean"), ("all", "all", "iqm")]
    indexed = across.set_index(["learner", "scenario", "split", "statistic"])
    rows, values = [], []
    for learner in learners:
        runs = int(across.loc[across["learner"] == learner, "runs"].iloc[0])
        cells = [indexed.loc[(learner, *c)] for c in cols]
        rows.append([f"{learner} ({runs} runs)", *(pct(r["value"], r["ci_low"], r["ci_high"]) for r in cells)])
        values.append([r["value"] for r in cells])
    best = [[False] * (len(cols) + 1) for _ in rows]
    for j in range(len(cols)):
        for i, b in enumerate(best_mask([v[j] for v in values], "success")):
            best[i][j + 1] = b
    header = ["learner (training runs)", *(f"{sc} ({sp})" for sc, sp in tasks), "all tasks: mean", "all tasks: IQM"]
    out = [Table("success across training seeds: mean over runs [95% stratified-bootstrap CI over runs]", header, rows, best)]
    if len(learners) >= 2 and len(poi):
        p = poi.set_index(["learner", "other"])
        prow = [[a, *("" if a == b else pct(p.loc[(a, b), "value"], p.loc[(a, b), "ci_low"], p.loc[(a, b), "ci_high"])
                      for b in learners)] for a in learners]
        out.append(Table("P(row learner's run beats column learner's run) on a task drawn at random [95% CI]",
                         ["learner", *learners], prow, [[False] * (len(learners) + 1) for _ in learners]))
    return out


def _split_order(split: str) -> tuple[int, str]:
    return ({"eval": 0, "train": 1}.get(split, 2), split)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def metric_bars(agg: pd.DataFrame, scenario: str, policies: list[str], metrics: Sequence[str] = PLOT_METRICS) -> bytes | None:
    """Bar plots (mean, 95% CI whiskers) of ``metrics``: one panel each, bars per policy, colours per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = agg[agg["scenario"] == scenario]
    metrics = [m for m in metrics if sub[(sub["metric"] == m)]["mean"].notna().any()]
    if not metrics:
        return None
    splits = sorted(sub["split"].unique(), key=_split_order)
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False)
    width = 0.8 / len(splits)
    x = np.arange(len(policies))
    for ax, m in zip(axes.flat, metrics):
        for k, sp in enumerate(splits):
            s = sub[(sub["metric"] == m) & (sub["split"] == sp)].set_index("policy")
            mean = np.array([s["mean"].get(p, np.nan) for p in policies], dtype=float)
            lo = np.array([s["ci_low"].get(p, np.nan) for p in policies], dtype=float)
            hi = np.array([s["ci_high"].get(p, np.nan) for p in policies], dtype=float)
            err = np.vstack([np.clip(mean - lo, 0, None), np.clip(hi - mean, 0, None)])
            ax.bar(x + (k - (len(splits) - 1) / 2) * width, mean, width, yerr=np.nan_to_num(err), capsize=3, label=sp)
        ax.set_title(METRIC_LABELS.get(m, m), fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(policies, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(title="split", fontsize=8, title_fontsize=8)
    fig.suptitle(f"{scenario}: mean and 95% CI", fontsize=11)
    fig.tight_layout()
    return _png(fig)


TIME_COLUMNS = ("time/rollout_s", "time/discriminator_s", "time/ppo_s")
"""Seconds of each iteration spent simulating, on the discriminator and on PPO (the trainer's metrics)."""


def _labelled(source: str | Path) -> tuple[str | None, Path]:
    """``LABEL=PATH`` -> (LABEL, PATH); a plain path (even one holding '=') -> (None, path)."""
    text = str(source)
    label, sep, rest = text.partition("=")
    if sep and label and not Path(text).exists():
        return label, Path(rest)
    return None, Path(text)


def read_training_log(source: str | Path) -> tuple[str, pd.DataFrame]:
    """(label, metrics table) from ``LABEL=PATH`` or ``PATH``: a run folder or a ``metrics.csv``.

    Without a label the run is named after its folder.
    """
    label, path = _labelled(source)
    csv = path / "metrics.csv" if path.is_dir() else path
    if not csv.is_file():
        raise UserError(f"{path}: no metrics.csv (give a training run folder or its metrics.csv)")
    try:
        frame = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{csv}: not a readable CSV ({type(exc).__name__})") from None
    if "global_step" not in frame.columns:
        raise UserError(f"{csv}: column 'global_step' missing: not a drive-drail training log")
    return label or (csv.parent.name if csv.name == "metrics.csv" else csv.stem), frame


def distinct_names(logs: list[tuple[str, pd.DataFrame]], sources: Sequence[str | Path]) -> list[tuple[str, pd.DataFrame]]:
    """Runs that share a name (two folders called ``train``) get their source's parent folder appended."""
    names = [name for name, _ in logs]
    out = []
    for (name, frame), source in zip(logs, sources):
        if names.count(name) > 1:
            path = _labelled(source)[1].resolve()
            name = f"{name} ({(path.parent if path.is_dir() else path.parent.parent).name})"
        out.append((name, frame))
    return out


def curve_x(frame: pd.DataFrame, axis: str) -> pd.Series:
    """The learning curve's x: ``global_step``, or (``wall``) the training seconds so far, the running sum
    of :data:`TIME_COLUMNS` (checkpoints and BC excluded); NaN where a run logs no times."""
    if axis == "step":
        return pd.to_numeric(frame["global_step"], errors="coerce")
    if axis != "wall":
        raise ValueError(f"curve axis must be 'step' or 'wall', got {axis!r}")
    if not all(c in frame.columns for c in TIME_COLUMNS):
        return pd.Series(np.nan, index=frame.index)
    seconds = frame[list(TIME_COLUMNS)].apply(pd.to_numeric, errors="coerce").fillna(0.0).sum(axis=1)
    return seconds.cumsum()


def learning_curves(logs: list[tuple[str, pd.DataFrame]], axis: str = "step") -> bytes | None:
    """Learning-curve panels (:data:`LEARNING_PANELS`) against ``global_step`` or training seconds
    (``axis``: :func:`curve_x`), one line per run and column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(title, cols) for title, cols in LEARNING_PANELS if any(c in f.columns and f[c].notna().any() for _, f in logs for c in cols)]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (title, cols) in zip(axes.flat, panels):
        for name, frame in logs:
            for c in cols:
                if c in frame.columns and frame[c].notna().any():
                    d = pd.DataFrame({"x": curve_x(frame, axis), "y": pd.to_numeric(frame[c], errors="coerce")}).dropna()
                    label = name if len(cols) == 1 else f"{name}: {c.split('/')[-1]}"
                    ax.plot(d["x"], d["y"], marker="o", markersize=2, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("global step (env steps)" if axis == "step" else "training time (s, without checkpoints)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------
# Representative episodes
# --------------------------------------------------------------------------------------


def policy_from_row(row: pd.Series) -> PolicySpec | None:
    """Rebuild the :class:`PolicySpec` of a results row (None if its artifact is gone)."""
    kind, source, label = row.get("policy_kind"), str(row.get("policy_source", "")), str(row["policy"])
    if kind == "artifact":
        return PolicySpec(label=label, kind="artifact", path=source) if Path(source).exists() else None
    if kind == "constant":
        a, s = (float(v) for v in source.partition(":")[2].split(","))
        return PolicySpec(label=label, kind="constant", action=(a, s))
    if kind == "random":
        return PolicySpec(label=label, kind="random", seed=int(source.rpartition("=")[2] or 0))
    if kind == "expert":
        return PolicySpec(label=label, kind="expert")
    return None


def pick_representatives(table: pd.DataFrame, scenario: str) -> dict[str, pd.Series]:
    """A representative success and failure of ``scenario``: {"success": row, "failure": row}.

    Split ``eval`` when present. Success: from a trained policy if it has one, else the
    expert; the episode whose time to goal is the median one. Failure: from a trained
    policy if it has one, else a baseline; the episode whose route completion is the
    median one. Ties go to the lowest seed.
    """
    sub = table[table["scenario"] == scenario]
    if "eval" in set(sub["split"]):
        sub = sub[sub["split"] == "eval"]
    out: dict[str, pd.Series] = {}
    for outcome, ok, key in (("success", 1.0, "time_to_goal_s"), ("failure", 0.0, "route_completion")):
        cand = sub[sub["success"] == ok]
        if cand.empty:
            continue
        order = {"success": ("artifact", "expert", "constant", "random"), "failure": ("artifact", "constant", "random", "expert")}[outcome]
        kinds = cand["policy_kind"].map(lambda k, order=order: order.index(k) if k in order else len(order))
        cand = cand[kinds == kinds.min()]
        values = cand[key].fillna(cand[key].median() if cand[key].notna().any() else 0.0)
        distance = (values - values.median()).abs()
        cand = cand.assign(_d=distance).sort_values(["_d", "seed"], kind="stable")
        out[outcome] = cand.iloc[0].drop("_d")
    return out


def scenario_for(name: str, runs: list[dict]):
    """The scenario as it was evaluated (file plus recorded overrides), newest run first."""
    from drive_drail.scenario import load_scenario

    for run in reversed(runs):
        record = run.get("scenarios", {}).get(name)
        if record:
            try:
                return scenario_from_record(record)
            except (OSError, ValueError, TypeError):  # file moved or changed since: try older runs, then the name
                continue
    return load_scenario(name)


def episode_gifs(table: pd.DataFrame, scenario: str, runs: list[dict], config: ReportConfig) -> tuple[list[Image], list[str]]:
    """GIFs of the representative success and failure of ``scenario``, and notes on what could not be shown."""
    from drive_drail.evaluate.render import RenderError, encode_gif, render_episode

    images, notes = [], []
    reps = pick_representatives(table, scenario)
    for outcome in ("success", "failure"):
        if outcome not in reps:
            notes.append(f"no {outcome} among the evaluated episodes of {scenario}")
    if not reps:
        return images, notes
    try:
        sc = scenario_for(scenario, runs)
    except (OSError, ValueError) as exc:  # the scenario file is gone: tables still render
        return images, [*notes, f"{scenario}: cannot rebuild the scenario to replay episodes ({exc})"]
    for outcome, row in reps.items():
        policy = policy_from_row(row)
        where = f"{row['policy']} on {scenario}/{row['split']} seed {int(row['seed'])}"
        if policy is None:
            notes.append(f"{outcome}: {where}: policy artifact {row.get('policy_source')} not found, not replayed")
            continue
        try:
            ep = render_episode(sc, str(row["split"]), int(row["seed"]), policy, config.frame_every, config.max_frames)
        except (RenderError, ImportError, OSError) as exc:
            notes.append(f"{outcome}: {where}: not rendered ({exc})")
            continue
        # Outcomes must match exactly; the route to 0.1 %: MetaDrive's physics carries contact state from one
        # episode to the next in a process, so a replay can differ from the evaluation by ~1e-6 of the route.
        same = ep.metrics["success"] == row["success"] and ep.metrics["collision"] == row["collision"] and bool(
            np.isclose(ep.metrics["route_completion"], row["route_completion"], rtol=0.0, atol=1e-3, equal_nan=True))
        caption = (
            f"{outcome}: {where}: route {100 * ep.metrics['route_completion']:.0f}%, "
            f"{'collision' if ep.metrics['collision'] else 'no collision'}, {ep.metrics['time_s']:.1f} s"
            + ("" if same else " (replay differs from the stored result)")
        )
        frames = overlay(ep.frames, ep.trace, config.frame_every)
        images.append(Image(encode_gif(frames, ep.fps), "gif", f"{scenario}_{outcome}.gif", caption))
    return images, notes


def failure_tables(typed: pd.DataFrame, scenario: str, policies: list[str], max_rows: int) -> list[Table]:
    """How each policy's episodes of ``scenario`` ended (counts per failure type, per split), and the
    failed episodes one by one (the first ``max_rows``); ``typed``: the scenario's rows with their outcome."""
    header = ["policy", "split", "episodes", "success", *FAILURE_TYPES]
    rows = []
    for split in sorted(typed["split"].unique(), key=_split_order):
        counts = failure_counts(typed[typed["split"] == split], policies)
        for _, c in counts.iterrows():
            n = int(c["episodes"])
            rows.append([c["policy"], split, str(n), *(f"{int(c[k])} ({100 * int(c[k]) / n:.0f}%)" for k in ("success", *FAILURE_TYPES))])
    out = [Table(f"{scenario}: how the episodes ended (failure types: drive_drail/evaluate/failures.py)", header, rows,
                 [[False] * len(header) for _ in rows])]
    failed = typed[typed["outcome"] != "success"]
    if len(failed):
        header = ["policy", "split", "seed", "failure", "route", "time [s]", "min speed [m/s]", "min TTC [s]"]
        rows = [[str(r["policy"]), str(r["split"]), str(int(r["seed"])), r["outcome"], f"{100 * r['route_completion']:.0f}%",
                 f"{r['time_s']:.1f}", f"{r['min_speed_mps']:.1f}", f"{r['min_ttc_s']:.1f}"] for _, r in failed.head(max_rows).iterrows()]
        more = f"; {len(failed) - max_rows} more in the results file" if len(failed) > max_rows else ""
        out.append(Table(f"{scenario}: failed episodes ({len(failed)}{more})", header, rows, [[False] * len(header) for _ in rows]))
    return out


def failure_gallery(typed: pd.DataFrame, scenario: str, runs: list[dict], config: ReportConfig) -> tuple[list[Image], list[str]]:
    """For one failed episode per policy and failure type (``typed``: the scenario's rows with their outcome):
    its final frame, and its path, lane offset, speed and commands over time beside the scripted expert's
    from the same seed."""
    from drive_drail.evaluate.render import RenderError, encode_png, render_episode, replay_trace

    picks = gallery_picks(typed, config.gallery_max)
    if not picks:
        return [], []
    try:
        sc = scenario_for(scenario, runs)
    except (OSError, ValueError) as exc:
        return [], [f"{scenario}: cannot rebuild the scenario to replay failures ({exc})"]
    images, notes = [], []
    for row in picks:
        where = f"{row['policy']} on {scenario}/{row['split']} seed {int(row['seed'])}"
        name = f"{scenario}_{row['policy']}_{row['outcome']}"
        policy = policy_from_row(row)
        if policy is None:
            notes.append(f"{row['outcome']}: {where}: policy artifact {row.get('policy_source')} not found, not replayed")
            continue
        try:
            ep = render_episode(sc, str(row["split"]), int(row["seed"]), policy, last_only=True)
        except (RenderError, ImportError, OSError) as exc:
            notes.append(f"{row['outcome']}: {where}: not rendered ({exc})")
            continue
        caption = f"{row['outcome']}: {where}: the last frame, {ep.metrics['time_s']:.1f} s, route {100 * ep.metrics['route_completion']:.0f}%"
        images.append(Image(encode_png(ep.frames[-1]), "png", f"{name}_end.png", caption))
        expert = None
        if row["policy_kind"] != "expert":
            try:
                expert = replay_trace(sc, str(row["split"]), int(row["seed"]), PolicySpec(label="expert", kind="expert"))
            except (UserError, ImportError, OSError, ValueError) as exc:  # a scenario without a scripted expert
                notes.append(f"{where}: no expert trace beside it ({exc})")
        title = f"{row['outcome']}: {where}" + (" (green: the expert from the same seed)" if expert is not None else "")
        images.append(Image(trace_figure(ep.trace, str(row["policy"]), expert, title), "png", f"{name}_trace.png", title))
    return images, notes


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}
caption{text-align:left;font-style:italic;padding:.3em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;white-space:nowrap}
thead th{background:#f0f0f0;text-align:center}tbody th{text-align:left;background:#fafafa}
td.best,th.best{background:#d9f2d9;font-weight:bold}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em}
.note{color:#8a5a00;font-size:.85em}.scroll{overflow-x:auto}
"""


def _img_html(img: Image) -> str:
    return (
        f'<figure><img src="{img.data_uri()}" alt="{html.escape(img.caption)}">'
        f"<figcaption>{html.escape(img.caption)}</figcaption></figure>"
    )


def _md_text(text: str) -> str:
    """Text for a Markdown table cell or caption: HTML escaped (renderers pass raw HTML through), pipes escaped."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def _img_md(img: Image) -> str:
    caption = _md_text(img.caption).replace("[", "\\[").replace("]", "\\]")
    return f"![{caption}](assets/{img.name})\n\n*{caption}*"


def _seed_ranges(seeds: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    seeds = sorted(int(s) for s in seeds)
    parts, start, prev = [], None, None
    for s in seeds + [None]:
        if start is None:
            start = prev = s
        elif s is not None and s == prev + 1:
            prev = s
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = s
    return ", ".join(parts)


def write_report(
    results_paths: Sequence[str | Path],
    out_dir: str | Path,
    training_logs: Sequence[str | Path] | None = None,
    config: ReportConfig | None = None,
    command: str | None = None,
    progress: bool = False,
) -> Path:
    """Write ``OUT/report.html`` (self-contained) and ``OUT/report.md`` (+ ``OUT/assets/``); return the HTML path.

    Args:
        results_paths: results folders (``results.parquet``) or table files.
        out_dir: report folder (created).
        training_logs: training run folders or ``metrics.csv`` files for learning curves.
        progress: a bar over the scenarios on a terminal (replaying their GIF episodes is the slow part).
        config: what to include (see :class:`ReportConfig`).
        command: the command that made the report (default: this process's arguments).
    """
    config = config or ReportConfig()
    out_dir = Path(out_dir)
    table, runs = read_results(results_paths)
    logs = distinct_names([read_training_log(p) for p in (training_logs or [])], list(training_logs or []))
    agg = aggregate(table, config=config.bootstrap)
    policies = list(dict.fromkeys(table["policy"]))
    scenarios = list(dict.fromkeys(table["scenario"]))
    command = command if command is not None else shlex.join(["drive-drail", *sys.argv[1:]])

    html_parts: list[str] = []
    md_parts: list[str] = []
    images: list[Image] = []

    def section(title: str) -> None:
        html_parts.append(f"<h2>{html.escape(title)}</h2>")
        md_parts.append(f"## {_md_text(title)}")

    def para(text: str, cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        html_parts.append(f"<p{attr}>{html.escape(text)}</p>")
        md_parts.append(html.escape(text, quote=False))

    def add_table(t: Table) -> None:
        html_parts.append(t.html())
        md_parts.append(t.markdown())

    def add_image(img: Image) -> None:
        images.append(img)
        html_parts.append(_img_html(img))
        md_parts.append(_img_md(img))

    para(
        f"{len(table)} episodes: {len(policies)} policies ({', '.join(policies)}) on {len(scenarios)} scenarios "
        f"({', '.join(scenarios)}). Cells: mean [95% CI: Wilson score interval for the "
        f"success, collision and off-road rates; percentile bootstrap of {config.bootstrap.n_boot} resamples, seed "
        f"{config.bootstrap.seed}, for the other metrics]; the best value per column is highlighted."
    )

    section("Summary: success rate")
    for t in summary_tables(agg, policies, scenarios, "success"):
        add_table(t)
    paired = paired_differences(table, "expert", config=config.bootstrap)
    if len(paired):
        section("Paired with the expert on the same seeds")
        para("Each policy minus the scripted expert on the episodes both played from the same seed: mean "
             "difference with a 95% bootstrap CI over the seed pairs (0 = the expert's level).")
        add_table(paired_table(paired))
    seed_scores, seed_tasks = score_matrices(table, "success")
    across = across_seeds(seed_scores, seed_tasks, config.bootstrap)
    if len(across):
        section("Across training seeds")
        para("Policies labelled NAME-sN (also _sN, /sN, @sN, -seedN: drive-drail train's default run folders) are "
             "training seeds of one learner. A run's score on a task (scenario, split) is its success rate over the "
             "task's episodes; intervals come from a stratified bootstrap over runs (rliable's method: Agarwal et al., "
             "2021), so they are about seed-to-seed spread, which a pooled episode interval hides. IQM: the mean of "
             "the middle 50% of all run x task scores. Tasks: those every run played.")
        for t in across_seeds_tables(across, improvement_probabilities(seed_scores, config.bootstrap)):
            add_table(t)

    from tqdm import tqdm

    for sc in tqdm(scenarios, desc="report", unit="scenario", disable=None if progress else True):  # None: TTY only
        section(f"Scenario: {sc}")
        add_table(scenario_table(agg, sc, policies, METRIC_COLUMNS))
        bars = metric_bars(agg, sc, policies)
        if bars is not None:
            add_image(Image(bars, "png", f"{sc}_metrics.png", f"{sc}: main metrics per policy and split, mean with 95% CI"))
        if config.render:
            gifs, notes = episode_gifs(table, sc, runs, config)
            for img in gifs:
                add_image(img)
            for note in notes:
                para(note, "note")
        if not (table.loc[table["scenario"] == sc, "success"] < 0.5).any():
            continue
        section(f"Why episodes fail: {sc}")
        typed = with_failure_types(table[table["scenario"] == sc])
        for t in failure_tables(typed, sc, policies, config.failed_rows_max):
            add_table(t)
        if config.render and config.gallery_max > 0:
            gallery, notes = failure_gallery(typed, sc, runs, config)
            for img in gallery:
                add_image(img)
            for note in notes:
                para(note, "note")

    if logs:
        section("Learning curves")
        curves = learning_curves(logs, config.curve_x)
        if curves is not None:
            add_image(Image(curves, "png", "learning_curves.png", f"training metrics against {'environment steps' if config.curve_x == 'step' else 'training time'}: " + ", ".join(n for n, _ in logs)))
        else:
            para("the training logs hold none of the plotted columns", "note")

    section("Reproducibility")
    code_html, code_md = [], []

    def code(text: str) -> None:
        code_html.append(f"<pre>{html.escape(text)}</pre>")
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))  # longer than any run inside
        code_md.append(f"{fence}\n{text}\n{fence}")

    lines = [f"report: {command}", f"generated: {datetime.now(timezone.utc).isoformat(timespec='seconds')}"]
    code("\n".join(lines))
    for run in runs:
        seed_lines = [f"  {sc}/{sp}: {_seed_ranges(s)}" for sc, per in run.get("seeds", {}).items() for sp, s in per.items()]
        overrides = {k: v["overrides"] for k, v in run.get("scenarios", {}).items() if v.get("overrides")}
        text = [
            f"run {run.get('run_id', '?')}: {run.get('command', '?')}",
            (
                f"  backend {run.get('backend')} workers {run.get('workers')} episodes/split {run.get('episodes')} "
                f"wall {run.get('wall_s', float('nan')):.1f} s ({run.get('episodes_per_min', float('nan')):.1f} episodes/min)"
            ),
            "  policies: " + "; ".join(f"{p['label']} = {p['source']}" for p in run.get("policies", [])),
            "  seeds:",
            *seed_lines,
        ]
        if overrides:
            text.append(f"  scenario overrides: {overrides}")
        text.append("  versions: " + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items()))
        code("\n".join(text))
    if not runs:
        code("no runs.json next to the results: the evaluation commands are unknown")
    code("report environment: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    html_parts += code_html
    md_parts += code_md

    title = html.escape(config.title)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{title}</title><style>{CSS}</style></head>'
        f"<body><h1>{title}</h1>\n" + "\n".join(html_parts) + "\n</body></html>\n"
    )
    markdown = f"# {_md_text(config.title)}\n\n" + "\n\n".join(md_parts) + "\n"

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for img in images:
        with atomic_path(out_dir / "assets" / img.name) as tmp:
            tmp.write_bytes(img.data)
        written.append(out_dir / "assets" / img.name)
    write_text(out_dir / "report.md", markdown)
    write_text(out_dir / "report.html", page)  # last: its presence means the report is complete
    for path in [*written, out_dir / "report.md", out_dir / "report.html"]:
        readable(path)
    return out_dir / "report.html"

