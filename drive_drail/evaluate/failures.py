"""Why episodes fail: each failed episode's type, the counts per policy, and the traces of a
failure beside the scripted expert's from the same seed.

Failure types, one per failed episode (the first that applies, from its results row):

- ``collision``: the ego hit a vehicle or an object;
- ``off-road``: the ego left the road (in MetaDrive: touched a solid line);
- ``stopped short``: the ego came to a halt (below :data:`STOPPED_MPS`) and never reached the goal;
- ``timeout``: it drove on but the episode ended (time limit) before the task was done.

The report (:mod:`drive_drail.evaluate.report`) lays these out; everything here returns data:
DataFrames, traces and PNG bytes.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from drive_drail.evaluate.metrics import EpisodeTrace

FAILURE_TYPES: tuple[str, ...] = ("collision", "off-road", "stopped short", "timeout")

STOPPED_MPS = 0.5
"""Below this speed an episode that never reached its goal counts as stopped short [m/s]."""


def failure_type(row: pd.Series | dict) -> str:
    """``success`` or one of :data:`FAILURE_TYPES` for a results row (success, collision, offroad,
    min_speed_mps and time_to_goal_s columns)."""
    if float(row["success"]) >= 0.5:
        return "success"
    if float(row["collision"]) >= 0.5:
        return "collision"
    if float(row["offroad"]) >= 0.5:
        return "off-road"
    goal_reached = not math.isnan(float(row.get("time_to_goal_s", float("nan"))))
    if float(row.get("min_speed_mps", float("inf"))) < STOPPED_MPS and not goal_reached:
        return "stopped short"
    return "timeout"


def with_failure_types(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with an ``outcome`` column: success or the failure type of each episode."""
    return table.assign(outcome=[failure_type(row) for _, row in table.iterrows()])


def failure_counts(typed: pd.DataFrame, policies: list[str]) -> pd.DataFrame:
    """Episodes per policy and outcome of a table with an ``outcome`` column (:func:`with_failure_types`):
    one row per policy (in ``policies`` order) with the columns ``episodes``, ``success`` and each failure
    type (counts)."""
    rows = []
    for policy in policies:
        outcomes = typed.loc[typed["policy"] == policy, "outcome"]
        if outcomes.empty:
            continue
        rows.append({"policy": policy, "episodes": len(outcomes),
                     **{k: int((outcomes == k).sum()) for k in ("success", *FAILURE_TYPES)}})
    return pd.DataFrame(rows, columns=["policy", "episodes", "success", *FAILURE_TYPES])


def gallery_picks(typed: pd.DataFrame, max_items: int) -> list[pd.Series]:
    """One representative failed episode per (policy, failure type) of a table with an ``outcome`` column
    (:func:`with_failure_types`): the one whose route completion is the median of its group (ties: the
    lowest seed). Trained policies first, at most ``max_items``."""
    failed = typed[typed["outcome"] != "success"]
    order = ("artifact", "constant", "random", "expert")
    picks = []
    for (policy, outcome), group in failed.groupby(["policy", "outcome"], sort=False):
        completion = group["route_completion"].fillna(0.0)
        pick = group.assign(_d=(completion - completion.median()).abs()).sort_values(["_d", "seed"], kind="stable").iloc[0]
        picks.append(pick.drop("_d"))
    picks.sort(key=lambda r: (order.index(r["policy_kind"]) if r["policy_kind"] in order else len(order),
                              FAILURE_TYPES.index(r["outcome"])))
    return picks[:max_items]


def trace_figure(trace: EpisodeTrace, label: str, expert: EpisodeTrace | None, title: str) -> bytes:
    """A PNG of one episode beside the expert's from the same seed (if given): the x-y path, the lane
    offset, the speed, the acceleration and the steering over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(17, 2.9))
    runs = [(trace, label, "tab:red")] + ([(expert, "expert", "tab:green")] if expert is not None else [])
    for tr, name, colour in runs:
        t = np.arange(len(tr.speed_mps)) * tr.dt_s
        axes[0].plot(tr.x_m, tr.y_m, color=colour, label=name)
        axes[0].plot(tr.x_m[-1:], tr.y_m[-1:], "x", color=colour)
        if tr.lane_offset_m is not None:
            axes[1].plot(t, tr.lane_offset_m, color=colour)
        axes[2].plot(t, tr.speed_mps, color=colour)
        if tr.action_physical is not None and len(tr.action_physical):
            ta = t[:-1][: len(tr.action_physical)]
            axes[3].step(ta, tr.action_physical[:, 0], where="post", color=colour)
            axes[4].step(ta, tr.action_physical[:, 1], where="post", color=colour)
    for ax, (name, unit) in zip(axes, (("path", "y [m] (+ left)"), ("lane offset", "m (+ left)"), ("speed", "m/s"),
                                        ("acceleration command", "m/s²"), ("steering command", "rad (+ left)"))):
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("x [m]" if name == "path" else "t [s]", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def overlay(frames: list[np.ndarray], trace: EpisodeTrace, frame_every: int) -> list[np.ndarray]:
    """Frames with the time, speed and the policy's action of their step written in the top-left corner
    (frame ``k`` is policy step ``k * frame_every``; the first frame is the reset state, before any action)."""
    from PIL import Image, ImageDraw

    out = []
    actions = trace.action_physical if trace.action_physical is not None else np.zeros((0, 2))
    for k, frame in enumerate(frames):
        step = min(k * frame_every, len(trace.speed_mps) - 1)
        text = f"t {step * trace.dt_s:5.1f} s  v {trace.speed_mps[step]:5.1f} m/s"
        if 0 < step <= len(actions):
            accel, steer = actions[step - 1]
            text += f"  a {accel:+4.1f} m/s2  steer {steer:+.3f} rad"
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        box = draw.textbbox((4, 3), text)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
        draw.text((4, 3), text, fill=(255, 255, 255))
        out.append(np.asarray(image))
    return out
