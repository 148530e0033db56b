"""Pairs datasets on disk: Parquet with the schema version, source and units as metadata.

A pairs file opens with plain ``pandas.read_parquet``; :func:`read_pairs` also checks
the schema and spec versions and returns the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drive_drail import __version__, spec
from drive_drail.atomic import atomic_path
from drive_drail.logs.base import LogError, json_metadata, require_columns, require_numeric

PAIRS_SCHEMA_VERSION = "1.0"
_META_KEY = b"drive_drail"

UNITS = {
    "t_s": "s",
    "accel_mps2": "m/s^2",
    "steer_rad": "rad (front wheel, + = left)",
    "speed_mps": "m/s",
    "obs": "normalised: raw / scale, see spec.observation",
}


def write_pairs(path: str | Path, pairs: pd.DataFrame, meta: dict) -> None:
    """Write pairs atomically; ``meta`` is merged with the schema/spec versions and units."""
    info = {
        "kind": "drive-drail-pairs",
        "schema_version": PAIRS_SCHEMA_VERSION,
        "spec_version": spec.SPEC_VERSION,
        "drive_drail_version": __version__,
        "units": UNITS,
        "spec": spec.spec_dict(),
        "n_pairs": int(len(pairs)),
        **meta,
    }
    table = pa.Table.from_pandas(pairs, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(info, default=str).encode()})
    # Dictionary encoding only where values repeat (labels, names): on the float feature columns it
    # costs most of the write and saves nothing (benchmarks/convert_highd.py).
    labels = [f.name for f in table.schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, use_dictionary=labels or False)


def read_pairs_meta(path: str | Path) -> dict:
    try:
        md = pq.read_schema(path).metadata or {}
    except Exception as exc:
        raise LogError(path, f"not a readable Parquet file ({type(exc).__name__})") from None
    info = json_metadata(md, _META_KEY, path)
    if info is None:
        raise LogError(path, "not a drive-drail pairs file (no drive_drail metadata)")
    if info.get("kind") != "drive-drail-pairs":
        raise LogError(path, f"not a pairs file (kind {info.get('kind')!r})")
    if info.get("spec_version") != spec.SPEC_VERSION:
        raise LogError(path, f"spec version {info.get('spec_version')} != this package's {spec.SPEC_VERSION}; re-convert the log")
    return info


def read_pairs(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Pairs DataFrame and its metadata dict; raises LogError on a foreign or stale file."""
    info = read_pairs_meta(path)
    try:
        pairs = pd.read_parquet(path)
    except Exception as exc:  # truncated or corrupt data pages behind a readable footer
        raise LogError(path, f"cannot read Parquet ({type(exc).__name__})") from None
    require_columns(pairs, [*spec.OBS_NAMES, *spec.ACTION_NAMES, "meta_action"], path)
    require_numeric(pairs, [*spec.OBS_NAMES, *spec.ACTION_NAMES], path)
    return pairs, info


class PairArrays(NamedTuple):
    obs: np.ndarray  # [N, OBS_DIM] float32, spec-normalised
    action_unit: np.ndarray  # [N, 2] float32 in [-1, 1]
    meta_action: np.ndarray  # [N] int8


def to_arrays(pairs: pd.DataFrame) -> PairArrays:
    obs = pairs[list(spec.OBS_NAMES)].to_numpy(np.float32)
    phys = pairs[list(spec.ACTION_NAMES)].to_numpy(np.float64)
    return PairArrays(obs, spec.action_to_unit(phys).astype(np.float32), pairs["meta_action"].to_numpy(np.int8))


def select_task(pairs: pd.DataFrame, task: str | None) -> pd.DataFrame:
    """Pairs of one manoeuvre ('lane_change', 'merge', 'stop'), or all for None/'all'."""
    if task in (None, "all"):
        return pairs
    column = {"lane_change": "is_lane_change", "merge": "is_merge", "stop": "is_stop"}.get(task)
    if column is None:
        raise ValueError(f"unknown task {task!r} (lane_change, merge, stop, all)")
    return pairs[pairs[column]]


def summary(pairs: pd.DataFrame, meta: dict) -> str:
    """A human-readable dataset summary."""
    n = len(pairs)
    period_s = 1.0 / float(meta.get("action_hz", 1.0))
    tracks = pairs.groupby(["scene_id", "track_id"], sort=False).ngroups if n else 0
    lines = [
        f"pairs dataset  {meta.get('output', '')}".rstrip(),
        f"  source       {meta.get('source_file', '?')}  (format {meta.get('format', '?')}, "
        f"{float(meta.get('frame_rate_hz', 0)):g} Hz log, actions at {float(meta.get('action_hz', 0)):g} Hz)",
        f"  spec         v{spec.SPEC_VERSION}: obs dim {spec.OBS_DIM}, actions {', '.join(spec.ACTION_NAMES)}",
        f"  pairs        {n:,} from {tracks:,} expert tracks, {n * period_s / 3600.0:.2f} h of driving",
    ]
    dropped = meta.get("dropped_pairs") or {}
    if dropped:
        lines.append("  dropped      " + ", ".join(f"{count:,} with {reason}" for reason, count in dropped.items())
                     + " (implausible recovered actions)")
    if n:
        lines.append(
            "  speed        mean {:.1f} m/s, min {:.1f}, max {:.1f}".format(
                pairs["speed_mps"].mean(), pairs["speed_mps"].min(), pairs["speed_mps"].max()
            )
        )
        for name in spec.ACTION_NAMES:
            col = pairs[name]
            lines.append(
                f"  {name:<12} mean {col.mean():+.3f}, std {col.std():.3f}, "
                f"p1 {col.quantile(0.01):+.3f}, p99 {col.quantile(0.99):+.3f}"
            )
        counts = pairs["maneuver"].value_counts()
        lines.append("  manoeuvres   " + ", ".join(f"{k} {int(v):,} ({v / n:.1%})" for k, v in counts.items()))
        meta_counts = pairs["meta_action"].value_counts()
        lines.append(
            "  meta-actions "
            + ", ".join(f"{spec.MetaAction(int(k)).name} {int(v):,}" for k, v in meta_counts.sort_index().items())
        )
    return "\n".join(lines)
