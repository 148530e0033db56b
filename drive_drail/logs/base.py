"""The record format every log reader produces: a tidy track table in the spec frame.

Each reader (highD, NGSIM, ScenarioNet, the project's own sim logs) turns one source
into a :class:`TrackLog`: one row per (vehicle, frame), columns in
:data:`TRACK_COLUMNS`, positions already converted into the spec frame
(x along the driving direction, y left, metres, radians). The pairs stage only ever
sees this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np
import pandas as pd

from drive_drail.errors import LogError, UserError  # noqa: F401 (LogError: the readers' error, defined with the others)

TRACK_FORMAT_VERSION = "1.0"

TRACK_COLUMNS: dict[str, str] = {
    "scene_id": "int64",  # vehicles that share a carriageway at a frame form one scene
    "track_id": "int64",  # unique within a scene_id
    "frame": "int64",  # consecutive integers at frame_rate_hz
    "t_s": "float64",
    "x_m": "float64",
    "y_m": "float64",
    "vx_mps": "float64",
    "vy_mps": "float64",
    "heading_rad": "float64",  # NaN where the source does not log headings
    "length_m": "float64",
    "width_m": "float64",
    "lane_index": "int64",  # 0 = leftmost, -1 unknown
    "lane_count": "int64",
    "lane_offset_m": "float64",  # + = left of the lane centre
    "lane_heading_rad": "float64",
    "on_ramp": "bool",  # the lane is an on-ramp / acceleration lane (merge labels)
    "expert": "bool",  # the track may serve as an expert ego
}


MOVING_MPS = 1.0
"""A vehicle whose logged speed never exceeds this is parked, not driving [m/s]: the converter keeps
no parked expert, and a replay whose logged sdc is parked is not applicable."""

MAX_FRAME_RATE_HZ = 1000.0
"""The highest log rate a reader accepts [Hz]: loggers run at 10-100 Hz; beyond this a rate is corrupt."""

MAX_COORDINATE_M = 1e7
"""Positions farther than this from the log's origin are an error, not a road [m] (10,000 km)."""

MAX_RECORDING_ID = 2**31 - 1
"""Recording and scene ids above this are refused: they become int64 scene keys (id * 10 + direction)."""

NOMINAL_RATE_DECIMALS = 2
"""A rate measured from timestamps is the logger's nominal rate rounded to this many decimals [Hz]."""


def nominal_rate_hz(ts_s: np.ndarray) -> float:
    """The logging rate of timestamps ``ts_s`` [s] (increasing): the mean step over the whole span, rounded
    to :data:`NOMINAL_RATE_DECIMALS` (float32 timestamps, as Waymo's, jitter: their median step gives 10.0011 Hz)."""
    ts = np.asarray(ts_s, dtype=np.float64)
    if len(ts) < 2:
        return 10.0
    return round((len(ts) - 1) / float(ts[-1] - ts[0]), NOMINAL_RATE_DECIMALS)


@dataclass
class TrackLog:
    """A log in the record format: the track table plus what it came from."""

    tracks: pd.DataFrame
    source: str
    format: str
    frame_rate_hz: float
    heading_known: bool
    """False where headings were estimated (highD, NGSIM): the converter then smooths."""
    smooth_positions: bool = False
    """True for noisy sources (NGSIM): positions are smoothed before differentiation."""
    extra: dict = field(default_factory=dict)
    ego_track_id: int | None = None
    """The track that performs the log's task in every scene (a sim log's scripted ego), or None
    where the source names no such driver (highD, NGSIM: every driver is a peer)."""


class LogReader(Protocol):
    """Reads one log source into a :class:`TrackLog`; raises :class:`LogError` on bad input."""

    format: str

    def sniff(self, path: Path) -> bool:
        """True if ``path`` looks like this reader's format."""
        ...

    def read(self, path: Path) -> TrackLog:
        ...


# --------------------------------------------------------------------------------------
# Validation helpers shared by the readers. Row numbers are 1-based data rows of the file.
# --------------------------------------------------------------------------------------


def parquet_json_metadata(path: str | Path, key: bytes) -> dict | None:
    """The JSON object a drive-drail Parquet file keeps under schema-metadata ``key``; None if the
    file is not readable Parquet or has no such key. Raises LogError if the value is not a JSON object."""
    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
    except Exception:
        return None
    return json_metadata(md, key, path)


def json_metadata(md: dict, key: bytes, path: str | Path) -> dict | None:
    """The JSON object under ``key`` of a Parquet schema's metadata ``md``; None if absent."""
    import json

    if key not in md:
        return None
    try:
        info = json.loads(md[key])
    except (ValueError, RecursionError):
        info = None
    if not isinstance(info, dict):
        raise LogError(path, "the Parquet metadata is not a JSON object", column=f"metadata[{key.decode()}]")
    return info


def require_columns(df: pd.DataFrame, columns: list[str], path: str | Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LogError(path, f"missing column (found: {', '.join(map(str, df.columns[:12]))})", column=missing[0])


def require_numeric(df: pd.DataFrame, columns: list[str], path: str | Path, row_offset: int = 1) -> None:
    """Every column numeric and finite; names the first bad cell."""
    for c in columns:
        s = df[c]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            num = pd.to_numeric(s, errors="coerce")
            bad = np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())
            r = int(bad[0]) if bad.size else 0
            raise LogError(path, f"expected a number, got {str(s.iloc[r])!r}", column=c, row=r + row_offset)
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            r = int(bad[0])
            raise LogError(path, f"value is {v[r]} (NaN or inf)", column=c, row=r + row_offset)


def check_unique_frames(df: pd.DataFrame, key: list[str], path: str | Path, column: str, row_offset: int = 1) -> None:
    """Each vehicle appears at most once per frame (an id reused at two positions is an error)."""
    dup = df.duplicated(subset=key, keep="first").to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        ids = ", ".join(f"{k}={df[k].iloc[r]}" for k in key)
        raise LogError(path, f"duplicated frame for one vehicle ({ids})", column=column, row=r + row_offset)


def check_monotonic_frames(
    df: pd.DataFrame, track: str | list[str], frame: str, path: str | Path, row_offset: int = 1
) -> None:
    """Within each track (one key column or several), frames strictly increase with no gaps."""
    keys = [track] if isinstance(track, str) else list(track)
    f = df[frame].to_numpy()
    same = np.ones(max(len(df) - 1, 0), dtype=bool)
    for k in keys:
        v = df[k].to_numpy()
        same &= v[1:] == v[:-1]
    t = df[keys[-1]].to_numpy()
    step = np.diff(f)
    bad = np.flatnonzero(same & (step <= 0))
    if bad.size:
        r = int(bad[0]) + 1
        raise LogError(path, f"frames not increasing within track {t[r]} ({f[r - 1]} then {f[r]})", column=frame, row=r + row_offset)
    gap = np.flatnonzero(same & (step > 1))
    if gap.size:
        r = int(gap[0]) + 1
        raise LogError(path, f"frame gap within track {t[r]} ({f[r - 1]} then {f[r]})", column=frame, row=r + row_offset)


def check_plausible_speed(
    speed_mps: np.ndarray, path: str | Path, column: str, max_mps: float = 70.0, row_offset: int = 1, hint: str = ""
) -> None:
    """Speeds above ``max_mps`` (252 km/h) reveal a unit mix-up such as feet read as metres."""
    bad = np.flatnonzero(np.abs(speed_mps) > max_mps)
    if bad.size:
        r = int(bad[0])
        raise LogError(
            path,
            f"implausible speed {abs(speed_mps[r]):.1f} m/s (> {max_mps:.0f} m/s){hint}",
            column=column,
            row=r + row_offset,
        )


def check_speed_matches_positions(
    track: np.ndarray, x_m: np.ndarray, v_mps: np.ndarray, rows: np.ndarray, frame_rate_hz: float,
    path: str | Path, position_column: str, speed_column: str, hint: str = "",
) -> None:
    """Logged speeds against the speeds the positions imply, over 1 s windows within each track.

    ``track``, ``x_m``, ``v_mps``: ``[n]`` in track-then-frame order, ``rows``: their 0-based file rows.
    Over the moving windows (both speeds above 2 m/s, at least 3 of them) the median of logged /
    implied must lie in [0.5, 2]: positions in feet with speeds in m/s give 0.30, the reverse 3.28.
    """
    w = max(1, int(round(frame_rate_hz)))
    if x_m.size <= w:
        return
    i = np.flatnonzero(track[w:] == track[:-w])
    speed_pos = np.abs(x_m[i + w] - x_m[i]) * frame_rate_hz / w
    v_log = np.abs(0.5 * (v_mps[i] + v_mps[i + w]))
    moving = (speed_pos > 2.0) & (v_log > 2.0)
    if moving.sum() < 3:
        return
    ratio = v_log[moving] / speed_pos[moving]
    median = float(np.median(ratio))
    if not 0.5 <= median <= 2.0:
        off = (ratio > 2.0) if median > 2.0 else (ratio < 0.5)
        r = int(rows[i[moving][np.flatnonzero(off)[0]]])
        raise LogError(path, f"{speed_column} is {median:.2f} x the speed implied by {position_column}{hint}",
                       column=speed_column, row=r + 1)


def check_coordinates(values: np.ndarray, path: str | Path, column: str, to_m: float = 1.0, row_offset: int = 1) -> None:
    """``|values| * to_m <= MAX_COORDINATE_M`` (``values``: one position column in file order, its unit
    ``to_m`` metres); names the first bad row. Finite in float64 but beyond this is no road, and overflows float32."""
    far = np.flatnonzero(np.abs(values) * to_m > MAX_COORDINATE_M)
    if far.size:
        r = int(far[0])
        raise LogError(path, f"position {values[r]:.3g} is beyond +-{MAX_COORDINATE_M / to_m:.3g}", column=column,
                       row=r + row_offset)


def check_positive(values: np.ndarray, path: str | Path, column: str, what: str, row_offset: int = 1) -> None:
    """Every value > 0 (sizes); names the first bad row as ``"{what} must be > 0, got {value}"``."""
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise LogError(path, f"{what} must be > 0, got {values[bad[0]]}", column=column, row=int(bad[0]) + row_offset)


def headingless_track_log(
    columns: Mapping[str, np.ndarray],
    *,
    source: str | Path,
    format: str,
    frame_rate_hz: float,
    smooth_positions: bool,
    extra: dict,
) -> TrackLog:
    """A :class:`TrackLog` of a straight road whose source logs no headings (highD, NGSIM).

    ``columns``: ``[n_rows]`` arrays of every record column except ``heading_rad`` (NaN: the
    converter estimates headings, so ``heading_known=False``) and ``lane_heading_rad`` (0:
    the road runs along x); ``on_ramp`` defaults to False and ``expert`` to True.
    """
    n = len(columns["frame"])
    defaults = {
        "heading_rad": np.full(n, np.nan),
        "lane_heading_rad": np.zeros(n),
        "on_ramp": np.zeros(n, bool),
        "expert": np.ones(n, bool),
    }
    return TrackLog(
        tracks=finalize_tracks({**defaults, **columns}),
        source=str(source),
        format=format,
        frame_rate_hz=frame_rate_hz,
        heading_known=False,
        smooth_positions=smooth_positions,
        extra=extra,
    )


def finalize_tracks(df: pd.DataFrame | Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Select, order and type the record columns; sort by (scene, track, frame).

    Works on the columns as arrays and builds the DataFrame once: each DataFrame built from columns
    copies them into blocks, and a sort that gathers a whole block is slower than per-column takes
    (benchmarks/convert_highd.py).
    """
    cols = {c: _typed(np.asarray(df[c]), t) for c, t in TRACK_COLUMNS.items()}
    if not _sorted_by(cols, ("scene_id", "track_id", "frame")):  # most logs come sorted: a stable sort would only copy
        order = np.lexsort((cols["frame"], cols["track_id"], cols["scene_id"]))  # stable, last key first
        cols = {c: a[order] for c, a in cols.items()}
    return pd.DataFrame(cols, copy=False)


def _typed(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` as ``dtype``; a float column with NaN or inf cast to integers raises as pandas does."""
    if np.dtype(dtype).kind in "iu" and values.dtype.kind == "f" and not np.isfinite(values).all():
        return pd.Series(values).astype(dtype).to_numpy()  # raises pandas' IntCastingNaNError
    return values.astype(dtype, copy=False)


def _sorted_by(cols: Mapping[str, np.ndarray], keys: tuple[str, ...]) -> bool:
    """Whether the rows already run in lexicographic order of ``keys`` (ties allowed)."""
    n = len(cols[keys[0]])
    if n < 2:
        return True
    ordered = np.zeros(n - 1, bool)  # rows settled by an earlier key
    for key in keys:
        step = np.diff(np.asarray(cols[key]))
        if (~ordered & (step < 0)).any():
            return False
        ordered |= step > 0
    return True
