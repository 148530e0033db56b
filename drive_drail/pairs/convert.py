"""Track table -> expert (observation, action) pairs.

For every expert track and every action period of ``1 / action_hz`` seconds:

1. kinematics: logged headings are used as they are; otherwise positions are smoothed
   and headings estimated from the model's own kinematics (:mod:`.kinematics`);
2. the scene at the period's first frame (the ego plus every vehicle of its
   carriageway) goes through the ONE observation function, :func:`spec.observe_batch`;
3. the action held over the period is recovered by inverting the kinematic bicycle
   model (:func:`.bicycle.invert`);
4. manoeuvre and meta-action labels are attached (:mod:`.maneuvers`).

Vectorised throughout: no Python loop over rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from drive_drail import spec
from drive_drail.logs.base import MOVING_MPS, LogError, TrackLog, check_coordinates
from drive_drail.pairs import bicycle, kinematics, maneuvers
from drive_drail.process import usable_cores

EGO_CHOICES = {
    "auto": "'ego' where the log names the driver of its task (sim logs), else 'moving'",
    "ego": "only the log's task driver (a sim log's scripted ego); traffic stays in the scenes as context",
    "moving": "tracks the reader marked expert that reach MOVING_MPS at some point (drops parked cars)",
    "expert": "every track the reader marked expert, traffic included",
    "all": "every vehicle track",
}
"""``ConvertConfig.egos`` values. A scenario's demonstrations are the driver who performs its task:
traffic cars of a sim log are IDM drivers that never merge or stop for the task's obstacle."""

SCENE_CHUNK = 16384
"""Egos per observe_batch call: bounds memory at ~SCENE_CHUNK x max vehicles per scene."""


@dataclass(frozen=True)
class ConvertConfig:
    action_hz: float = 5.0
    """Rate of the action periods [Hz]; the log's frame rate must be a multiple of it."""
    smooth_s: float | None = None
    """Full width of the position smoothing kernel for logs without headings [s];
    None = 1.0 s for noisy sources (NGSIM), 0.3 s otherwise."""
    egos: str = "auto"
    """Which tracks become expert egos (see :data:`EGO_CHOICES`)."""
    maneuvers: maneuvers.ManeuverConfig = field(default_factory=maneuvers.ManeuverConfig)


IMPLAUSIBLE_ACCEL_MPS2 = 15.0
"""A recovered |acceleration| beyond this (1.5 g) is a pose glitch of the log, not driving [m/s^2]."""


RANGE_TOLERANCE_MPS2 = 1e-4
"""A recovered acceleration this close outside the spec's range is the range itself (an expert braking
at the limit, inverted in float64) [m/s^2]."""


def implausible_actions(accel_mps2: np.ndarray, steer_rad: np.ndarray) -> dict[str, np.ndarray]:
    """``{reason: [N] bool}`` of recovered actions that are dropped, and counted in the summary: ones no vehicle
    could have applied, and ones beyond the spec's action range, which a policy cannot output (training
    would clip them silently to an action the driver did not take).

    Steering beyond the spec's range comes from inverting the bicycle model at walking pace, where
    ``steer = atan(L * yaw_rate / v)`` amplifies heading noise; training would clip it silently.
    """
    glitch = ~(np.abs(accel_mps2) <= IMPLAUSIBLE_ACCEL_MPS2)
    return {
        f"|accel| > {IMPLAUSIBLE_ACCEL_MPS2:g} m/s^2": glitch,
        f"accel beyond the spec's [{spec.ACCEL_RANGE_MPS2[0]:g}, {spec.ACCEL_RANGE_MPS2[1]:g}] m/s^2":
            ~glitch & ~((accel_mps2 >= spec.ACCEL_RANGE_MPS2[0] - RANGE_TOLERANCE_MPS2)
                        & (accel_mps2 <= spec.ACCEL_RANGE_MPS2[1] + RANGE_TOLERANCE_MPS2)),
        f"|steer| > {spec.STEER_RANGE_RAD[1]:.3f} rad": ~(np.abs(steer_rad) <= spec.STEER_RANGE_RAD[1]),
    }


def action_period_frames(log: TrackLog, action_hz: float) -> int:
    k = log.frame_rate_hz / action_hz
    if action_hz <= 0 or abs(k - round(k)) > 1e-6 or round(k) < 1:
        raise LogError(
            log.source,
            f"frame rate {log.frame_rate_hz:g} Hz is not a whole multiple of the action rate {action_hz:g} Hz",
        )
    return int(round(k))


def ego_track_mask(log: TrackLog, df: pd.DataFrame, tracks: kinematics.Tracks, speed_mps: np.ndarray, egos: str) -> np.ndarray:
    """``[n_rows]`` bool: rows of the tracks that ``egos`` (:data:`EGO_CHOICES`) admits as expert egos."""
    if egos not in EGO_CHOICES:
        raise ValueError(f"egos must be one of {', '.join(EGO_CHOICES)}, got {egos!r}")
    if egos == "auto":
        egos = "ego" if log.ego_track_id is not None else "moving"
    if egos == "all":
        return np.ones(len(df), bool)
    expert = df["expert"].to_numpy()
    if egos == "expert":
        return expert
    if egos == "ego":
        if log.ego_track_id is None:
            raise LogError(log.source, f"the {log.format} log names no task driver; use --egos moving, expert or all")
        return expert & (df["track_id"].to_numpy() == log.ego_track_id)
    track_max_mps = np.zeros(len(tracks.start))
    np.maximum.at(track_max_mps, tracks.track, np.abs(speed_mps))
    return expert & (track_max_mps[tracks.track] > MOVING_MPS)


def log_kinematics(log: TrackLog, tracks: kinematics.Tracks, config: ConvertConfig) -> kinematics.Kinematics:
    """Canonical per-row states: positions, heading and signed speed along the heading."""
    if log.heading_known:
        return kinematics.from_logged_heading(log.tracks)
    smooth_s = config.smooth_s if config.smooth_s is not None else (1.0 if log.smooth_positions else 0.3)
    return kinematics.estimate_from_positions(log.tracks, tracks, 1.0 / log.frame_rate_hz, smooth_s)


def _scene_groups(scene_id: np.ndarray, frame: np.ndarray, track_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group rows by (scene_id, frame): returns (order, group of each ordered row, slot in its group)."""
    order = np.lexsort((track_id, frame, scene_id))
    s, f = scene_id[order], frame[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (s[1:] != s[:-1]) | (f[1:] != f[:-1])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    slot = np.arange(len(order)) - starts[group]
    return order, group, slot


def observations(
    df: pd.DataFrame, kin: kinematics.Kinematics, scene_rows: np.ndarray, ego_rows: np.ndarray
) -> np.ndarray:
    """Spec observations ``[len(ego_rows), OBS_DIM]`` of egos among the vehicles in ``scene_rows``.

    ``scene_rows`` are all rows at the frames of interest; each ego row must be among them.
    The chunks of :data:`SCENE_CHUNK` egos run on one thread per core this process may use.
    """
    sid = df["scene_id"].to_numpy()[scene_rows]
    frm = df["frame"].to_numpy()[scene_rows]
    tid = df["track_id"].to_numpy()[scene_rows]
    order, group, slot = _scene_groups(sid, frm, tid)
    rows = scene_rows[order]
    n_groups, max_vehicles = int(group.max(initial=-1)) + 1, int(slot.max(initial=-1)) + 1

    vx = kin.speed_mps * np.cos(kin.heading_rad)
    vy = kin.speed_mps * np.sin(kin.heading_rad)
    per_vehicle = {
        "x_m": kin.x_m,
        "y_m": kin.y_m,
        "vx_mps": vx,
        "vy_mps": vy,
        "heading_rad": kin.heading_rad,
        "lane": df["lane_index"].to_numpy(),
    }
    padded = {}
    for name, values in per_vehicle.items():
        arr = np.zeros((n_groups, max_vehicles), dtype=values.dtype)
        arr[group, slot] = values[rows]
        padded[name] = arr
    valid = np.zeros((n_groups, max_vehicles), dtype=bool)
    valid[group, slot] = True

    # Where each ego row sits: its group and slot.
    position_of_row = np.full(len(df), -1, dtype=np.int64)
    position_of_row[rows] = np.arange(len(rows))
    at = position_of_row[ego_rows]
    if (at < 0).any():
        raise ValueError("an ego row is not among the scene rows")
    ego_group, ego_slot = group[at], slot[at]

    lane_count = df["lane_count"].to_numpy()[ego_rows]
    lane_offset = df["lane_offset_m"].to_numpy()[ego_rows]
    lane_heading = df["lane_heading_rad"].to_numpy()[ego_rows]
    out = np.empty((len(ego_rows), spec.OBS_DIM), dtype=np.float32)

    def observe_chunk(lo: int) -> None:
        sl = slice(lo, lo + SCENE_CHUNK)
        g = ego_group[sl]
        batch = spec.SceneBatch(
            x_m=padded["x_m"][g],
            y_m=padded["y_m"][g],
            vx_mps=padded["vx_mps"][g],
            vy_mps=padded["vy_mps"][g],
            heading_rad=padded["heading_rad"][g],
            lane=padded["lane"][g],
            valid=valid[g],
            ego=ego_slot[sl],
            lane_count=lane_count[sl],
            lane_offset_m=lane_offset[sl],
            lane_heading_rad=lane_heading[sl],
        )
        out[sl] = spec.observe_batch(batch)

    # numpy releases the GIL inside its gathers, sorts and ufuncs: chunks run side by side on the cores
    # (a pool takes the next chunk as a thread frees, so a core held by another process costs only its share).
    starts = range(0, len(ego_rows), SCENE_CHUNK)
    threads = min(len(starts), usable_cores())
    if threads <= 1:
        for lo in starts:
            observe_chunk(lo)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(observe_chunk, starts))  # list(): re-raises a chunk's error here
    return out


def convert(log: TrackLog, config: ConvertConfig = ConvertConfig()) -> pd.DataFrame:
    """Expert pairs of one log as a DataFrame (columns: ids, ``spec.OBS_NAMES``, actions, labels)."""
    df = log.tracks
    if len(df) == 0:
        raise LogError(log.source, "the log holds no vehicle states")
    k = action_period_frames(log, config.action_hz)
    dt_s = 1.0 / log.frame_rate_hz
    for column in ("x_m", "y_m"):  # the readers check their own columns; this catches the rest (sim logs)
        check_coordinates(df[column].to_numpy(), log.source, column)
    tracks = kinematics.track_layout(df)
    kin = log_kinematics(log, tracks, config)
    if not (np.isfinite(kin.heading_rad).all() and np.isfinite(kin.speed_mps).all()):
        bad = int(np.flatnonzero(~(np.isfinite(kin.heading_rad) & np.isfinite(kin.speed_mps)))[0])
        raise LogError(log.source, "kinematics are not finite", column="heading_rad", row=bad + 1)

    frame = df["frame"].to_numpy()
    at_action_frame = frame % k == 0
    has_successor = tracks.pos + k < tracks.length[tracks.track]
    ego_mask = at_action_frame & has_successor
    ego_mask &= ego_track_mask(log, df, tracks, kin.speed_mps, config.egos)
    ego_rows = np.flatnonzero(ego_mask)
    if ego_rows.size == 0:
        raise LogError(log.source, f"no expert track (--egos {config.egos}) spans a whole action period ({k} frames)")

    obs = observations(df, kin, np.flatnonzero(at_action_frame), ego_rows)

    # Action held over [t, t + k frames): invert the bicycle model (exact on sim logs).
    pair = np.stack([ego_rows, ego_rows + k], axis=1)
    accel, steer = bicycle.invert(
        kin.heading_rad[pair], kin.speed_mps[pair], df["length_m"].to_numpy()[ego_rows], dt_s, k
    )

    dropped = implausible_actions(accel, steer)
    keep = ~np.logical_or.reduce(list(dropped.values()))
    if not keep.any():
        raise LogError(log.source, "every recovered action is implausible ("
                       + ", ".join(f"{reason}: {int(m.sum())}" for reason, m in dropped.items()) + "); check the units")
    ego_rows, obs, accel, steer = ego_rows[keep], obs[keep], accel[keep], steer[keep]

    lane_heading = df["lane_heading_rad"].to_numpy()
    lateral_speed = kin.speed_mps * np.sin(kin.heading_rad - lane_heading)
    labels = maneuvers.label_rows(
        df["lane_index"].to_numpy(),
        df["lane_offset_m"].to_numpy(),
        df["on_ramp"].to_numpy(),
        kin.speed_mps,
        lateral_speed,
        tracks,
        dt_s,
        config.maneuvers,
    )
    meta = maneuvers.meta_actions(labels.lane_decision[ego_rows], accel, config.maneuvers)
    primary = maneuvers.primary_maneuver(labels)

    last_step = tracks.pos[ego_rows] + 2 * k >= tracks.length[tracks.track[ego_rows]]
    columns: dict[str, np.ndarray] = {
        "scene_id": df["scene_id"].to_numpy()[ego_rows],
        "track_id": df["track_id"].to_numpy()[ego_rows],
        "frame": frame[ego_rows],
        "t_s": df["t_s"].to_numpy()[ego_rows],
    }
    columns.update({name: obs[:, i] for i, name in enumerate(spec.OBS_NAMES)})
    columns.update(
        {
            "accel_mps2": accel.astype(np.float32),
            "steer_rad": steer.astype(np.float32),
            "meta_action": meta,
            "maneuver": primary[ego_rows],
            "is_lane_change": labels.is_lane_change[ego_rows],
            "is_merge": labels.is_merge[ego_rows],
            "is_stop": labels.is_stop[ego_rows],
            "speed_mps": kin.speed_mps[ego_rows].astype(np.float32),
            "lane_index": df["lane_index"].to_numpy()[ego_rows],
            "last_step": last_step,
        }
    )
    # After the float32 casts: a finite float64 state (x = 1e308) can overflow into inf there.
    for name, values in columns.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise LogError(log.source, f"pair feature '{name}' is not finite (a state overflows float32)",
                           column=name, row=int(ego_rows[bad]) + 1)
    out = pd.DataFrame(columns)
    out["maneuver"] = out["maneuver"].astype("category")
    out.attrs["dropped_pairs"] = {reason: int(m.sum()) for reason, m in dropped.items() if m.any()}
    return out


def converter_settings(config: ConvertConfig) -> dict:
    return asdict(config)


def convert_file(src: str, out: str, fmt: str = "auto", config: ConvertConfig = ConvertConfig(),
                 progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Read a log, convert it, write the pairs Parquet atomically; returns (pairs, metadata).

    ``progress``: a bar over the three stages (read, pairs, write), each named as it runs, on a
    terminal only: a bad log's error stays the one line a script reads from a piped stderr.
    """
    from tqdm import tqdm

    from drive_drail.logs.registry import read_log
    from drive_drail.pairs.storage import write_pairs

    bar = tqdm(total=3, desc=f"read {Path(src).name}", unit="stage", disable=None if progress else True)
    log = read_log(src, fmt)
    bar.update()
    bar.set_description(f"pairs from {len(log.tracks):,} rows")
    pairs = convert(log, config)
    bar.update()
    bar.set_description(f"write {Path(out).name}")
    meta = {
        "source_file": str(log.source),
        "format": log.format,
        "frame_rate_hz": log.frame_rate_hz,
        "action_hz": config.action_hz,
        "heading_source": "logged" if log.heading_known else "estimated (kinematic bicycle)",
        "converter": converter_settings(config),
        "dropped_pairs": dict(pairs.attrs.get("dropped_pairs", {})),
        "log": {k: v for k, v in log.extra.items() if isinstance(v, (str, int, float, bool, list, dict))},
        "output": str(out),
    }
    write_pairs(out, pairs, meta)
    bar.update()
    bar.close()
    return pairs, meta
