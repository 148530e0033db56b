"""highD reader: ``XX_tracks.csv`` + ``XX_tracksMeta.csv`` + ``XX_recordingMeta.csv``.

highD (Krajewski et al., 2018) films a straight German motorway from a drone. Every
recording has three CSV files sharing a prefix (``01_tracks.csv`` ...); the reader takes
any of the three or the bare prefix (``.../01``).

Geometry of the source (image frame, metres): x to the right, y DOWN; ``(x, y)`` is the
UPPER-LEFT corner of the bounding box, ``width`` its extent along x (vehicle length) and
``height`` along y (vehicle width). The upper carriageway (``drivingDirection`` 1) drives
towards -x, the lower one (2) towards +x; right-hand traffic, so the fast (leftmost) lane
of either carriageway is the one next to the central median.

Conversion into the spec frame (x along the driving direction, y left):

    centre      = corner + (width / 2, height / 2)
    direction 2: x_m =  x, y_m = -y, vx = xVelocity,  vy = -yVelocity   (mirror y)
    direction 1: x_m = -x, y_m =  y, vx = -xVelocity, vy =  yVelocity   (rotate 180°)

In both cases the leftmost lane (next to the median) has the largest y_m, so lanes are
counted downwards from the largest spec-frame lane marking. ``lane_offset_m`` is the
centre's distance from its lane centre line (+ = left), ``lane_heading_rad`` = 0 (the road
is straight along x). Headings are not logged: ``heading_rad`` = NaN and the converter
estimates them. highD labels no ramps on its main lanes, so ``on_ramp`` is False. Every
track may serve as an expert ego.

``scene_id = 10 * recording id + drivingDirection`` (one scene per carriageway), so
tracks of several recordings never collide.

The shared CSV helpers below (:func:`read_numeric_csv`, :func:`check_track_rows`) are
also used by the NGSIM reader. They read with ``pyarrow.csv`` and validate with numpy:
no Python loop per row on the success path. Row numbers in every error are 1-based
DATA rows of the CSV file (the header line is not counted).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from drive_drail.logs.base import (
    MAX_FRAME_RATE_HZ,
    MAX_RECORDING_ID,
    LogError,
    TrackLog,
    check_coordinates,
    check_plausible_speed,
    check_positive,
    check_speed_matches_positions,
    headingless_track_log,
)

FORMAT = "highd"

TRACKS_COLUMNS = ["frame", "id", "x", "y", "width", "height", "xVelocity", "yVelocity"]
"""The tracks.csv columns the reader uses (real files hold 25; the rest are ignored)."""
META_COLUMNS = ["id", "drivingDirection"]
RECORDING_COLUMNS = ["id", "frameRate", "upperLaneMarkings", "lowerLaneMarkings"]
_INT_COLUMNS = {"frame", "id", "drivingDirection"}

_NAME = re.compile(r"^(?P<prefix>.*)_(?P<kind>tracks|tracksMeta|recordingMeta)\.csv$")


# --------------------------------------------------------------------------------------
# Shared CSV helpers (highD, NGSIM). Rows are 1-based data rows (header excluded).
# --------------------------------------------------------------------------------------


def read_csv_header(path: Path) -> list[str]:
    """The column names on the first line of ``path``, as written (a UTF-8 BOM dropped, like pyarrow does)."""
    if not path.is_file():
        raise LogError(path, "no such file")
    if path.stat().st_size == 0:
        raise LogError(path, "empty file")
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    header = next(csv.reader([first]), [])
    if not any(h.strip() for h in header):
        raise LogError(path, "empty header line (expected CSV column names)")
    return header


def read_numeric_csv(
    path: Path,
    columns: list[str],
    int_columns: set[str] = frozenset(),
    case_insensitive: bool = False,
    text_columns: list[str] = (),
    optional_columns: list[str] = (),
) -> dict[str, np.ndarray]:
    """Read the numeric ``columns`` of a CSV file into numpy arrays, fully validated.

    Returns ``{column: array [n_rows]}`` (int64 for ``int_columns``, else float64), the
    ``optional_columns`` that the file has (numeric, checked the same way), plus
    the optional ``text_columns`` that the file has, as pyarrow string ChunkedArrays (one
    pass over the file).
    Raises :class:`LogError` naming file, column and 1-based data row for a missing
    column, a non-numeric cell, an empty/NaN/inf cell, a malformed (e.g. truncated) row,
    or an empty table. ``case_insensitive`` matches column names ignoring case (NGSIM
    releases differ in capitalisation); extra columns are ignored.
    """
    header = read_csv_header(path)
    lookup = {(h.strip().lower() if case_insensitive else h.strip()): h for h in header}  # names as pyarrow sees them
    actual: dict[str, str] = {}
    for c in text_columns:
        key = c.lower() if case_insensitive else c
        if key in lookup:
            actual[c] = lookup[key]
    for c in columns:
        key = c.lower() if case_insensitive else c
        if key not in lookup:
            shown = ", ".join(h.strip() for h in header[:12]) + (", ..." if len(header) > 12 else "")
            raise LogError(path, f"missing column (found: {shown})", column=c)
        actual[c] = lookup[key]
    present = [c for c in optional_columns if (c.lower() if case_insensitive else c) in lookup]
    for c in present:
        actual[c] = lookup[c.lower() if case_insensitive else c]
    columns = [*columns, *present]
    types = {actual[c]: pa.float64() for c in columns}  # ints too: "12.0" is a fine frame number
    types.update({actual[c]: pa.string() for c in text_columns if c in actual})
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(include_columns=list(types), column_types=types),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose_csv(path, header, [actual[c] for c in columns])
        raise LogError(path, f"cannot parse CSV ({exc})".replace("\n", " ")) from None
    except OSError as exc:
        raise LogError(path, f"cannot read file ({exc})".replace("\n", " ")) from None
    if table.num_rows == 0:
        raise LogError(path, "no data rows (only a header)")
    out: dict[str, np.ndarray] = {}
    for c in columns:
        col, name = table.column(actual[c]), actual[c].strip()
        if col.null_count:
            r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise LogError(path, "missing value (empty cell or NaN)", column=name, row=r + 1)
        v = col.to_numpy()
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise LogError(path, f"value is {v[bad[0]]} (must be finite)", column=name, row=int(bad[0]) + 1)
        if c in int_columns:
            bad = np.flatnonzero(v != np.round(v))
            if bad.size:
                raise LogError(path, f"expected an integer, got {v[bad[0]]}", column=name, row=int(bad[0]) + 1)
            v = v.astype(np.int64)
        out[c] = v
    for c in text_columns:
        if c in actual:
            col = table.column(actual[c])
            if col.null_count:
                r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                raise LogError(path, "missing value", column=actual[c].strip(), row=r + 1)
            out[c] = col  # a pyarrow ChunkedArray of strings: callers dictionary-encode it cheaply
    return out


def _diagnose_csv(path: Path, header: list[str], numeric: list[str]) -> None:
    """Slow path after pyarrow refused the file: find the first malformed row or non-numeric cell and raise.

    ``numeric``: the header names whose cells must parse as numbers. Runs only on error.
    """
    idx = {name: header.index(name) for name in numeric}
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row_no, cells in enumerate(reader, start=1):
            if not cells:
                continue
            if len(cells) != len(header):
                raise LogError(
                    path,
                    f"row has {len(cells)} fields but the header has {len(header)} (truncated or malformed line)",
                    row=row_no,
                )
            for name, column_index in idx.items():
                cell = cells[column_index].strip()
                try:
                    float(cell)
                except ValueError:
                    if cell not in _PYARROW_NULLS:  # nulls are reported by the fast path
                        raise LogError(
                            path, f"expected a number, got {cell!r}", column=name.strip(), row=row_no
                        ) from None


_PYARROW_NULLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"}  # fmt: skip
"""pyarrow.csv's default null spellings."""


def check_track_rows(track: np.ndarray, frame: np.ndarray, path: Path, track_column: str, frame_column: str) -> None:
    """Rows of one track are contiguous and in consecutive frame order (vectorised).

    ``track``, ``frame``: ``[n_rows]`` int arrays in file order. Names the 1-based data row
    of the first offending line: an id listed twice in one frame (an id reused at two
    positions), frames going backwards, a frame gap, or a track split into two blocks.
    """
    same = track[1:] == track[:-1]
    step = np.diff(frame)
    checks = [
        (
            same & (step == 0),
            track_column,
            "vehicle id {t} appears twice in frame {f1} (an id reused at two positions)",
        ),
        (same & (step < 0), frame_column, "frames not increasing within track {t} ({f0} then {f1})"),
        (same & (step > 1), frame_column, "frame gap within track {t} ({f0} then {f1})"),
    ]
    for mask, column, msg in checks:
        bad = np.flatnonzero(mask)
        if bad.size:
            r = int(bad[0]) + 1
            raise LogError(path, msg.format(t=track[r], f0=frame[r - 1], f1=frame[r]), column=column, row=r + 1)
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
    start_ids = track[starts]
    order = np.argsort(start_ids, kind="stable")
    dup = np.flatnonzero(start_ids[order][1:] == start_ids[order][:-1])
    if dup.size:
        # Error path only: a reused id in a frame the track already has gets the clearer message.
        by_pair = np.lexsort((frame, track))
        twice = np.flatnonzero(
            (track[by_pair][1:] == track[by_pair][:-1]) & (frame[by_pair][1:] == frame[by_pair][:-1])
        )
        if twice.size:
            r = int(np.maximum(by_pair[twice], by_pair[twice + 1]).min())
            raise LogError(
                path,
                f"vehicle id {track[r]} appears twice in frame {frame[r]} (an id reused at two positions)",
                column=track_column,
                row=r + 1,
            )
        r = int(starts[order][dup + 1].min())
        raise LogError(
            path,
            f"track {track[r]} appears again after other tracks (rows of one track must be contiguous)",
            column=track_column,
            row=r + 1,
        )


# --------------------------------------------------------------------------------------
# highD
# --------------------------------------------------------------------------------------


def highd_paths(path: Path) -> tuple[Path, Path, Path, str] | None:
    """``(tracks, tracksMeta, recordingMeta, prefix_name)`` for any of the three files or the prefix."""
    path = Path(path)
    m = _NAME.match(path.name)
    if m:
        prefix = m.group("prefix")
    elif path.is_file() or path.suffix.lower() == ".csv":
        return None  # a file, but not named like a highD file
    else:
        prefix = path.name.rstrip("_")
    d = path.parent
    return d / f"{prefix}_tracks.csv", d / f"{prefix}_tracksMeta.csv", d / f"{prefix}_recordingMeta.csv", prefix


def parse_lane_markings(text: str, path: Path, column: str) -> np.ndarray:
    """``"8.51;12.59;16.43"`` -> ``[8.51, 12.59, 16.43]`` (image y, metres), >= 2 increasing values."""
    try:
        values = np.array([float(s) for s in str(text).strip().split(";") if s.strip() != ""], dtype=np.float64)
    except ValueError:
        raise LogError(path, f"expected ';'-separated numbers, got {text!r}", column=column, row=1) from None
    if values.size < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(np.sort(values)) <= 0):
        raise LogError(path, f"need at least two distinct finite lane markings, got {text!r}", column=column, row=1)
    return np.sort(values)


def lane_from_markings(y_m: np.ndarray, markings_spec_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Lane index (0 = leftmost = largest y) and signed offset (+ left) of spec-frame ``y_m``.

    ``markings_spec_m``: lane markings of one carriageway in spec-frame y, ``[K + 1]``.
    Returns ``(lane_index [n], lane_offset_m [n], K)``; points outside the marked road are
    assigned to the nearest edge lane (their offset then exceeds half a lane width).
    """
    a = np.sort(markings_spec_m)  # ascending: a[0] is the rightmost marking
    n_lanes = a.size - 1
    j = np.clip(np.searchsorted(a, y_m, side="right") - 1, 0, n_lanes - 1)  # lane counted from the right
    centre_m = 0.5 * (a[j] + a[j + 1])
    return (n_lanes - 1 - j).astype(np.int64), y_m - centre_m, n_lanes


class HighDReader:
    """Reads one highD recording (three CSV files) into a :class:`TrackLog`."""

    format = FORMAT

    def sniff(self, path: Path) -> bool:
        """True when ``path`` names a highD file or prefix and all three files exist (names decide)."""
        paths = highd_paths(Path(path))
        return paths is not None and all(p.is_file() for p in paths[:3])

    def read(self, path: Path) -> TrackLog:
        path = Path(path)
        paths = highd_paths(path)
        if paths is None:
            if not path.exists():
                raise LogError(path, "no such file")
            raise LogError(
                path, "not a highD file name (expected XX_tracks.csv, XX_tracksMeta.csv or XX_recordingMeta.csv)"
            )
        tracks_path, meta_path, rec_path, prefix = paths
        for p in (tracks_path, meta_path, rec_path):
            if not p.is_file():
                raise LogError(
                    p, "no such file (a highD recording needs XX_tracks.csv, XX_tracksMeta.csv, XX_recordingMeta.csv)"
                )

        recording_id, frame_rate_hz, upper, lower, rec_extra = self._read_recording_meta(rec_path)
        meta = read_numeric_csv(meta_path, META_COLUMNS, int_columns=_INT_COLUMNS)
        t = read_numeric_csv(tracks_path, TRACKS_COLUMNS, int_columns=_INT_COLUMNS)

        # --- per-track driving direction, looked up by id (vectorised) ---
        meta_ids, meta_dir = meta["id"], meta["drivingDirection"]
        bad = np.flatnonzero((meta_dir != 1) & (meta_dir != 2))
        if bad.size:
            raise LogError(
                meta_path, f"expected 1 or 2, got {meta_dir[bad[0]]}", column="drivingDirection", row=int(bad[0]) + 1
            )
        order = np.argsort(meta_ids, kind="stable")
        sorted_ids = meta_ids[order]
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if dup.size:
            r = int(max(order[dup[0]], order[dup[0] + 1]))
            raise LogError(meta_path, f"track id {meta_ids[r]} listed twice", column="id", row=r + 1)

        track_id, frame = t["id"], t["frame"]
        check_track_rows(track_id, frame, tracks_path, "id", "frame")
        pos = np.clip(np.searchsorted(sorted_ids, track_id), 0, sorted_ids.size - 1)
        missing = np.flatnonzero(sorted_ids[pos] != track_id)
        if missing.size:
            r = int(missing[0])
            raise LogError(
                tracks_path, f"track id {track_id[r]} has no entry in {meta_path.name}", column="id", row=r + 1
            )
        direction = meta_dir[order][pos]

        for c in ("width", "height"):
            check_positive(t[c], tracks_path, c, "bounding box size")
        for c in ("x", "y", "width", "height"):
            check_coordinates(t[c], tracks_path, c)
        if np.any(frame < 0):
            r = int(np.flatnonzero(frame < 0)[0])
            raise LogError(tracks_path, f"negative frame {frame[r]}", column="frame", row=r + 1)
        check_plausible_speed(
            np.hypot(t["xVelocity"], t["yVelocity"]),
            tracks_path,
            "xVelocity",
            hint=" - units look wrong (highD logs m/s)",
        )

        # --- image frame (x right, y down, box corner) -> spec frame (x driving, y left, centre) ---
        cx = t["x"] + 0.5 * t["width"]
        cy = t["y"] + 0.5 * t["height"]
        sign = np.where(direction == 2, 1.0, -1.0)  # direction 2: mirror y; direction 1: rotate 180°
        x_m = sign * cx
        y_m = -sign * cy
        vx_mps = sign * t["xVelocity"]
        vy_mps = -sign * t["yVelocity"]
        check_speed_matches_positions(track_id, cx, t["xVelocity"], np.arange(frame.size), frame_rate_hz, tracks_path, "x",
                                      "xVelocity", hint=" (0.30 means positions in feet; highD logs metres and m/s)")

        # --- lanes from the lane markings of each carriageway ---
        lane_index = np.empty(frame.size, np.int64)
        lane_offset_m = np.empty(frame.size, np.float64)
        lane_count = np.empty(frame.size, np.int64)
        for d, markings_img in ((1, upper), (2, lower)):
            rows = direction == d
            markings_spec = markings_img if d == 1 else -markings_img  # same y map as the positions
            idx, off, n = lane_from_markings(y_m[rows], markings_spec)
            lane_index[rows], lane_offset_m[rows], lane_count[rows] = idx, off, n

        return headingless_track_log(
            {
                "scene_id": 10 * recording_id + direction,
                "track_id": track_id,
                "frame": frame,
                "t_s": frame / frame_rate_hz,
                "x_m": x_m,
                "y_m": y_m,
                "vx_mps": vx_mps,
                "vy_mps": vy_mps,
                "length_m": t["width"],  # box extent along image x = vehicle length
                "width_m": t["height"],
                "lane_index": lane_index,
                "lane_count": lane_count,
                "lane_offset_m": lane_offset_m,
            },
            source=tracks_path,
            format=FORMAT,
            frame_rate_hz=frame_rate_hz,
            smooth_positions=False,
            extra={
                "recording": prefix,
                "recording_id": recording_id,
                "scene_direction": {10 * recording_id + 1: 1, 10 * recording_id + 2: 2},
                "lane_markings_image_y_m": {"upper": upper.tolist(), "lower": lower.tolist()},
                **rec_extra,
            },
        )

    @staticmethod
    def _read_recording_meta(path: Path) -> tuple[int, float, np.ndarray, np.ndarray, dict]:
        header = [h.strip() for h in read_csv_header(path)]
        for c in RECORDING_COLUMNS:
            if c not in header:
                raise LogError(path, f"missing column (found: {', '.join(header[:12])})", column=c)
        try:
            rec = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
            rec.columns = [str(c).strip() for c in rec.columns]
        except (ValueError, pd.errors.ParserError) as exc:
            raise LogError(path, f"cannot parse CSV ({exc})".replace("\n", " ")) from None
        if len(rec) != 1:
            raise LogError(path, f"expected exactly one data row, found {len(rec)}")
        row = rec.iloc[0]

        def number(column: str) -> float:
            try:
                v = float(row[column])
            except ValueError:
                raise LogError(path, f"expected a number, got {row[column]!r}", column=column, row=1) from None
            if not np.isfinite(v):
                raise LogError(path, f"value is {v} (NaN or inf)", column=column, row=1)
            return v

        recording_id = number("id")
        if recording_id != int(recording_id) or not 0 <= recording_id <= MAX_RECORDING_ID:
            raise LogError(path, f"expected an integer in [0, {MAX_RECORDING_ID}], got {row['id'][:40]!r}", column="id", row=1)
        frame_rate_hz = number("frameRate")
        if not 0 < frame_rate_hz <= MAX_FRAME_RATE_HZ:
            raise LogError(path, f"frame rate must be in (0, {MAX_FRAME_RATE_HZ:g}] Hz, got {frame_rate_hz:g}", column="frameRate", row=1)
        upper = parse_lane_markings(row["upperLaneMarkings"], path, "upperLaneMarkings")
        lower = parse_lane_markings(row["lowerLaneMarkings"], path, "lowerLaneMarkings")
        extra: dict = {}
        for key, column in (("location_id", "locationId"), ("speed_limit_mps", "speedLimit")):
            try:
                value = float(row[column])
            except (KeyError, ValueError):
                continue  # informational only
            extra[key] = None if value < 0 else value  # highD writes -1 for "no speed limit"
        return int(recording_id), frame_rate_hz, upper, lower, extra
