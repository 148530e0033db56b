"""The project's own log format, written by ``drive-drail record``.

A Parquet file holding the record-format track table (:data:`TRACK_COLUMNS`) as it is,
already in the spec frame, with float64 states, plus key-value metadata:
``drive_drail.format = "drive-drail-log"``, its version, the frame rate and the
simulator settings it was recorded with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drive_drail.atomic import atomic_path
from drive_drail.logs.base import (
    TRACK_COLUMNS,
    MAX_FRAME_RATE_HZ,
    TRACK_FORMAT_VERSION,
    LogError,
    TrackLog,
    check_monotonic_frames,
    check_unique_frames,
    finalize_tracks,
    parquet_json_metadata,
    require_columns,
)

FORMAT = "simlog"
MAGIC = "drive-drail-log"
_META_KEY = b"drive_drail"


def write_simlog(path: str | Path, tracks: pd.DataFrame, frame_rate_hz: float, meta: dict | None = None) -> None:
    """Write a track table (columns :data:`TRACK_COLUMNS`) atomically as a sim log."""
    table = pa.Table.from_pandas(finalize_tracks(tracks), preserve_index=False)
    info = {
        "format": MAGIC,
        "track_format_version": TRACK_FORMAT_VERSION,
        "frame_rate_hz": float(frame_rate_hz),
        "units": {"position": "m", "velocity": "m/s", "angle": "rad", "time": "s"},
        **(meta or {}),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(info).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_simlog_meta(path: str | Path) -> dict | None:
    """The log's metadata dict, or None if the file is not a drive-drail sim log."""
    info = parquet_json_metadata(path, _META_KEY)
    return info if info is not None and info.get("format") == MAGIC else None


class SimLogReader:
    format = FORMAT

    def sniff(self, path: Path) -> bool:
        return path.suffix == ".parquet" and read_simlog_meta(path) is not None

    def read(self, path: Path) -> TrackLog:
        info = read_simlog_meta(path)
        if info is None:
            raise LogError(path, "not a drive-drail sim log (no drive_drail metadata)")
        if info.get("track_format_version") != TRACK_FORMAT_VERSION:
            raise LogError(path, f"track format version {info.get('track_format_version')!r} is not the supported "
                                 f"{TRACK_FORMAT_VERSION!r}; re-record it with this version", column="track_format_version")
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # truncated or corrupt Parquet
            raise LogError(path, f"cannot read Parquet ({type(exc).__name__}: {exc})") from None
        require_columns(df, list(TRACK_COLUMNS), path)
        states = ["x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m"]
        v = df[states].to_numpy(np.float64)
        bad = np.argwhere(~np.isfinite(v))
        if bad.size:
            r, c = bad[0]
            raise LogError(path, "value is NaN or inf", column=states[c], row=int(r) + 1)
        check_unique_frames(df, ["scene_id", "track_id", "frame"], path, "frame")
        check_monotonic_frames(df, ["scene_id", "track_id"], "frame", path)
        return TrackLog(
            tracks=finalize_tracks(df),
            source=str(path),
            format=FORMAT,
            frame_rate_hz=_frame_rate_hz(info, path),
            heading_known=True,
            extra={k: v for k, v in info.items() if k not in ("format",)},
            ego_track_id=_ego_track_id(info, path),
        )


def _frame_rate_hz(info: dict, path) -> float:
    rate = info.get("frame_rate_hz")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_FRAME_RATE_HZ:
        raise LogError(path, f"frame_rate_hz must be a rate in (0, {MAX_FRAME_RATE_HZ:g}] Hz, got {str(rate)[:40]!r}",
                       column="frame_rate_hz")
    return float(rate)


def _ego_track_id(info: dict, path) -> int | None:
    """The recorded ego's track id from the log's metadata (``drive-drail record`` writes 0)."""
    ego = info.get("ego_track_id")
    if ego is None:
        return None
    if isinstance(ego, bool) or not isinstance(ego, int):
        raise LogError(path, f"ego_track_id must be an integer, got {ego!r}", column="ego_track_id")
    return ego
