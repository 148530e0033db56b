"""NGSIM reader: US-101 / I-80 vehicle trajectory CSV (feet, ft/s, 10 Hz).

Columns used (names matched ignoring case; extra columns such as Global_X, O_Zone,
Direction, Movement are ignored): Vehicle_ID, Frame_ID, Local_X, Local_Y, v_Length,
v_Width, v_Vel, Lane_ID, and Location and v_Class when present. The files as FHWA ships them
(``trajectories-0750am-0805am.txt``) have no header and separate their 18 columns
(:data:`FHWA_COLUMNS`) by whitespace; they are read by position.

Source geometry: ``Local_X`` is lateral from the left road edge (increasing to the right),
``Local_Y`` longitudinal in the driving direction, both in FEET, of the vehicle's FRONT centre
(FHWA's data dictionary). Spec frame (metres, the vehicle's centre):

    x_m = 0.3048 * (Local_Y - v_Length / 2)          y_m = -0.3048 * Local_X         (y left)
    vx_mps = 0.3048 * v_Vel         (v_Vel is the logged speed along the road)
    vy_mps = d y_m / dt             (central differences of positions within each track)

The converter re-derives velocities from smoothed positions (``smooth_positions=True``);
headings are not logged (``heading_rad`` = NaN, ``heading_known=False``).

Lanes: ``lane_index = Lane_ID - 1`` (Lane_ID 1 is the leftmost lane), assuming 12 ft lanes
``lane_offset_m = -0.3048 * (Local_X - (Lane_ID - 0.5) * 12)`` (+ = left of the centre).
The lane layout of the study sites:

    US-101: lanes 1-5 main, 6 auxiliary (on_ramp), 7 on-ramp (on_ramp), 8 off-ramp
    I-80:   lanes 1-6 main, 7 on-ramp (on_ramp)

The layout is chosen by, in this order: the reader's ``location`` argument; the
``Location`` column (``us-101``, ``i-80``; other sites such as the arterials are read with
every lane as a main lane); a file name containing ``us-101``/``us101``/``i-80``/``i80``;
else the data: max Lane_ID 8 -> US-101, max Lane_ID 7 -> I-80, otherwise all lanes main.
``lane_count`` is the number of main lanes, raised to ``lane_index + 1`` on rows in a lane
beyond them so that ``0 <= lane_index < lane_count`` always holds.

Vehicle class (``v_Class``: 1 motorcycle, 2 auto, 3 truck): motorcycles are kept as traffic but
never as expert egos (``expert = False``): they filter between lanes, which no car policy may learn;
trucks stay experts (their own length is the bicycle model's). The tracks per class are counted in
``extra["vehicle_classes"]``; a class outside 1-3 is an error naming the row.

Tracks: rows are sorted by (Location, Vehicle_ID, Frame_ID) because published releases
are not in order. A Vehicle_ID listed twice in one frame (at one location) is an error.
Some releases reuse a Vehicle_ID for another vehicle much later: every frame gap starts a
new track, ``track_id = Vehicle_ID + k * 1_000_000`` for the k-th piece (k = 0 keeps the
Vehicle_ID). ``scene_id``: 0 without a Location column, else the site's number
(us-101 1, i-80 2, lankershim 3, peachtree 4, others 100, 101, ... in sorted order).

Unit checks (feet vs metres confusion): a logged speed or a position-implied speed above
70 m/s after conversion, a v_Vel that disagrees with the Local_Y-implied speed by a factor
outside [0.5, 2] (3.28 means one of them is not in feet), or a median vehicle length below
2.5 m after conversion (the file was already in metres) is a one-line error naming the
column and the 1-based data row (header excluded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drive_drail.logs.base import (
    LogError,
    TrackLog,
    check_coordinates,
    check_plausible_speed,
    check_positive,
    check_speed_matches_positions,
    headingless_track_log,
)
from drive_drail.logs.highd import read_csv_header, read_numeric_csv

FORMAT = "ngsim"

FT_TO_M = 0.3048
LANE_WIDTH_FT = 12.0
FRAME_RATE_HZ = 10.0
MAX_SPEED_MPS = 70.0
MIN_MEDIAN_LENGTH_M = 2.5
SEGMENT_ID_STRIDE = 1_000_000
"""track_id = Vehicle_ID + k * SEGMENT_ID_STRIDE for the k-th piece of a reused Vehicle_ID."""

COLUMNS = ["Vehicle_ID", "Frame_ID", "Local_X", "Local_Y", "v_Length", "v_Width", "v_Vel", "Lane_ID"]
FHWA_COLUMNS = [
    "Vehicle_ID", "Frame_ID", "Total_Frames", "Global_Time", "Local_X", "Local_Y", "Global_X", "Global_Y",
    "v_Length", "v_Width", "v_Class", "v_Vel", "v_Acc", "Lane_ID", "Preceding", "Following",
    "Space_Headway", "Time_Headway",
]  # fmt: skip
"""The columns of FHWA's original headerless, whitespace-separated trajectory files, in order."""
_INT_COLUMNS = {"Vehicle_ID", "Frame_ID", "Lane_ID", "v_Class"}
VEHICLE_CLASSES = {1: "motorcycle", 2: "auto", 3: "truck"}
"""FHWA's ``v_Class`` codes."""
NOT_EXPERT_CLASSES = (1,)
"""Classes never used as expert egos: motorcycles."""
_UNITS_HINT = " - units look wrong (feet vs metres?)"


@dataclass(frozen=True)
class LaneLayout:
    """Which Lane_IDs of a site are main lanes and which are on-ramp/auxiliary lanes."""

    main_lanes: int
    """Number of main lanes (Lane_ID 1..main_lanes)."""
    on_ramp_lanes: tuple[int, ...]
    """Lane_IDs of on-ramp and auxiliary (acceleration) lanes."""


LAYOUTS: dict[str, LaneLayout] = {
    "us-101": LaneLayout(main_lanes=5, on_ramp_lanes=(6, 7)),
    "i-80": LaneLayout(main_lanes=6, on_ramp_lanes=(7,)),
}
SITE_SCENE_IDS = {"us-101": 1, "i-80": 2, "lankershim": 3, "peachtree": 4}


def is_fhwa_headerless(path: Path) -> bool:
    """True if the first line of ``path`` is 18 whitespace-separated numbers (FHWA's original files)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tokens = f.readline().split()
        [float(t) for t in tokens]
    except (OSError, ValueError):
        return False
    return len(tokens) == len(FHWA_COLUMNS)


def read_fhwa_headerless(path: Path) -> dict[str, np.ndarray]:
    """The :data:`COLUMNS` and ``v_Class`` of a headerless FHWA file as arrays (int64 for ids, else float64), fully validated:
    a row with missing or extra fields, a non-numeric or a non-finite cell is a :class:`LogError` naming its row."""
    import pandas as pd

    def read(dtype):
        return pd.read_csv(path, sep=r"\s+", header=None, names=FHWA_COLUMNS, dtype=dtype, engine="c")

    try:
        table = read(np.float64)
    except pd.errors.ParserError as exc:  # "Expected 18 fields in line 7, saw 19"
        raise LogError(path, f"cannot parse the whitespace-separated FHWA table ({exc})".replace("\n", " ")) from None
    except ValueError:  # a cell that is not a number: find it (the slow path runs only on bad files)
        raw = read(str)
        for name in FHWA_COLUMNS:
            bad = np.flatnonzero(pd.to_numeric(raw[name], errors="coerce").isna() & raw[name].notna())
            if bad.size:
                raise LogError(path, f"value {raw[name].iloc[bad[0]]!r} is not a number", column=name, row=int(bad[0]) + 1) from None
        raise
    values = table.to_numpy()
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad_rows.size:
        r = int(bad_rows[0])
        first = int(np.flatnonzero(~np.isfinite(values[r]))[0])
        short = np.isnan(values[r, first:]).all()  # pandas fills the missing fields of a short row with NaN
        why = f"{first} fields, expected {len(FHWA_COLUMNS)}" if short else "value is NaN or inf"
        raise LogError(path, why, column=FHWA_COLUMNS[first], row=r + 1)
    if len(table) == 0:
        raise LogError(path, "no data rows")
    return {name: table[name].to_numpy(np.int64) if name in _INT_COLUMNS else table[name].to_numpy(np.float64)
            for name in (*COLUMNS, "v_Class")}


def normalize_location(name: str) -> str:
    """``"US-101"``, ``"us101"``, ``"I-80"``, ``"i80"`` -> ``"us-101"`` / ``"i-80"``; others lower-cased."""
    s = str(name).strip().lower().replace("_", "-").replace(" ", "")
    if s in ("us-101", "us101", "101"):
        return "us-101"
    if s in ("i-80", "i80", "80"):
        return "i-80"
    return s


def layout_from_data(max_lane_id: int) -> LaneLayout:
    """The documented fallback when no location is known (see the module docstring)."""
    if max_lane_id >= 8:
        return LAYOUTS["us-101"]
    if max_lane_id == 7:
        return LAYOUTS["i-80"]
    return LaneLayout(main_lanes=max(int(max_lane_id), 1), on_ramp_lanes=())


class NgsimReader:
    """Reads an NGSIM trajectory CSV into a :class:`TrackLog`.

    ``location``: force the lane layout ("us-101" or "i-80"); by default it comes from the
    Location column, the file name, or the data (module docstring).
    """

    format = FORMAT

    def __init__(self, location: str | None = None):
        self.location = normalize_location(location) if location else None

    def sniff(self, path: Path) -> bool:
        path = Path(path)
        if path.suffix.lower() not in (".csv", ".txt") or not path.is_file():
            return False
        try:
            header = {h.strip().lower() for h in read_csv_header(path)}
        except (LogError, OSError):
            return False
        return {"vehicle_id", "frame_id", "local_x", "local_y"} <= header or is_fhwa_headerless(path)

    def read(self, path: Path) -> TrackLog:
        path = Path(path)
        if is_fhwa_headerless(path):
            c = read_fhwa_headerless(path)
        else:
            c = read_numeric_csv(path, COLUMNS, int_columns=_INT_COLUMNS, case_insensitive=True, text_columns=["Location"],
                                 optional_columns=["v_Class"])
        n = c["Frame_ID"].size
        locations = c.get("Location")

        # --- scenes (one per site) ---
        if locations is None:
            scene_id = np.zeros(n, np.int64)
            site_names = [self.location or self._location_from_name(path)]
            site_of_row = np.zeros(n, np.int64)
            scene_of_site = np.zeros(1, np.int64)
        else:
            encoded = locations.combine_chunks().dictionary_encode()  # fast on millions of rows
            site_names_raw = encoded.dictionary.to_pylist()
            site_of_row = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            site_names = [normalize_location(s) for s in site_names_raw]
            others = sorted({s for s in site_names if s not in SITE_SCENE_IDS})
            scene_of_site = np.array(
                [SITE_SCENE_IDS.get(s, 100 + others.index(s) if s in others else 0) for s in site_names], np.int64
            )
            scene_id = scene_of_site[site_of_row]
            if self.location:
                site_names = [self.location] * len(site_names)

        vid, frame, lane_id = c["Vehicle_ID"], c["Frame_ID"], c["Lane_ID"]
        for col, arr in (("Vehicle_ID", vid), ("Frame_ID", frame), ("Lane_ID", lane_id)):
            bad = np.flatnonzero(arr < (1 if col == "Lane_ID" else 0))
            if bad.size:
                raise LogError(path, f"value {arr[bad[0]]} out of range", column=col, row=int(bad[0]) + 1)
        for col in ("v_Length", "v_Width"):
            check_positive(c[col], path, col, "vehicle size")
        v_class = c.get("v_Class")
        if v_class is not None:
            bad = np.flatnonzero(~np.isin(v_class, list(VEHICLE_CLASSES)))
            if bad.size:
                raise LogError(path, f"vehicle class {v_class[bad[0]]} is not one of 1 (motorcycle), 2 (auto), 3 (truck)",
                               column="v_Class", row=int(bad[0]) + 1)
        for col in ("Local_X", "Local_Y", "v_Length"):
            check_coordinates(c[col], path, col, to_m=FT_TO_M)

        # --- sort into tracks; a Vehicle_ID twice in one frame is an error ---
        order = _track_order(scene_id, vid, frame)
        s_scene, s_vid, s_frame = scene_id[order], vid[order], frame[order]
        same_vehicle = (s_scene[1:] == s_scene[:-1]) & (s_vid[1:] == s_vid[:-1])
        dup = np.flatnonzero(same_vehicle & (s_frame[1:] == s_frame[:-1]))
        if dup.size:
            r = int(max(order[dup[0]], order[dup[0] + 1]))
            raise LogError(
                path,
                f"Vehicle_ID {vid[r]} appears twice in frame {frame[r]} (an id reused at two positions)",
                column="Vehicle_ID",
                row=r + 1,
            )
        # Every frame gap (an id reused later, or a missing frame) starts a new track piece.
        new_piece = np.concatenate([[True], ~same_vehicle | (np.diff(s_frame) != 1)])
        piece = np.cumsum(new_piece) - 1
        first_of_vehicle = np.concatenate([[True], ~same_vehicle])
        vehicle_no = np.cumsum(first_of_vehicle) - 1
        piece_in_vehicle = piece - piece[np.flatnonzero(first_of_vehicle)][vehicle_no]
        s_track = s_vid + piece_in_vehicle * SEGMENT_ID_STRIDE

        # --- feet -> metres, spec frame; Local_Y is the front centre ---
        x_m = FT_TO_M * (c["Local_Y"][order] - 0.5 * c["v_Length"][order])
        y_m = -FT_TO_M * c["Local_X"][order]
        vx_mps = FT_TO_M * c["v_Vel"][order]
        self._check_units(path, order, piece, x_m, vx_mps, FT_TO_M * c["v_Vel"], FT_TO_M * c["v_Length"])
        dt_s = 1.0 / FRAME_RATE_HZ
        vy_mps = _piecewise_gradient(y_m, piece, dt_s)

        # --- lanes ---
        s_lane = lane_id[order]
        lane_index = s_lane - 1
        lane_offset_m = -FT_TO_M * (c["Local_X"][order] - (s_lane - 0.5) * LANE_WIDTH_FT)
        main_lanes = np.empty(n, np.int64)
        on_ramp = np.zeros(n, bool)
        layouts = {}
        s_site = site_of_row[order]
        for k, name in enumerate(site_names):
            rows = s_site == k
            layout = LAYOUTS.get(name) or layout_from_data(int(s_lane[rows].max()) if rows.any() else 1)
            layouts[int(scene_of_site[k])] = (name, layout)
            main_lanes[rows] = layout.main_lanes
            on_ramp[rows] = np.isin(s_lane[rows], layout.on_ramp_lanes)
        lane_count = np.maximum(main_lanes, lane_index + 1)

        s_frame_i = s_frame.astype(np.int64)
        s_class = None if v_class is None else v_class[order]
        return headingless_track_log(
            {
                "scene_id": s_scene,
                "track_id": s_track,
                "frame": s_frame_i,
                "t_s": s_frame_i * dt_s,
                "x_m": x_m,
                "y_m": y_m,
                "vx_mps": vx_mps,
                "vy_mps": vy_mps,
                "length_m": FT_TO_M * c["v_Length"][order],
                "width_m": FT_TO_M * c["v_Width"][order],
                "lane_index": lane_index,
                "lane_count": lane_count,
                "lane_offset_m": lane_offset_m,
                "on_ramp": on_ramp,
                **({} if s_class is None else {"expert": ~np.isin(s_class, NOT_EXPERT_CLASSES)}),
            },
            source=path,
            format=FORMAT,
            frame_rate_hz=FRAME_RATE_HZ,
            smooth_positions=True,
            extra={
                "sites": {sid: name for sid, (name, _) in layouts.items()},
                "main_lanes": {sid: lay.main_lanes for sid, (_, lay) in layouts.items()},
                "on_ramp_lane_ids": {sid: list(lay.on_ramp_lanes) for sid, (_, lay) in layouts.items()},
                "track_id_stride": SEGMENT_ID_STRIDE,
                **({} if s_class is None else {"vehicle_classes": _tracks_per_class(s_scene, s_track, s_class)}),
            },
        )

    # ----------------------------------------------------------------------------------

    def _location_from_name(self, path: Path) -> str:
        name = path.name.lower().replace("_", "-")
        if "us-101" in name or "us101" in name:
            return "us-101"
        if "i-80" in name or "i80" in name:
            return "i-80"
        return "unknown"

    @staticmethod
    def _check_units(
        path: Path,
        order: np.ndarray,
        piece: np.ndarray,
        x_m: np.ndarray,
        vx_mps: np.ndarray,
        file_speed_mps: np.ndarray,
        file_length_m: np.ndarray,
    ) -> None:
        """Feet/metres confusion shows as implausible speeds or lengths.

        ``x_m``, ``vx_mps``, ``piece``: ``[n]`` in track order (``order`` maps them to file
        rows); ``file_speed_mps``, ``file_length_m``: ``[n]`` in file order.
        """
        check_plausible_speed(file_speed_mps, path, "v_Vel", max_mps=MAX_SPEED_MPS, hint=_UNITS_HINT)
        # Position-implied speed over 1 s windows (10 frames): robust to single-frame noise.
        w = int(FRAME_RATE_HZ)
        if x_m.size > w:
            i = np.flatnonzero(piece[w:] == piece[:-w])
            speed_pos = np.abs(x_m[i + w] - x_m[i]) * FRAME_RATE_HZ / w
            too_fast = np.flatnonzero(speed_pos > MAX_SPEED_MPS)
            if too_fast.size:
                k = i[too_fast]
                r = int(order[k + w].min())
                raise LogError(
                    path,
                    f"positions imply {speed_pos[too_fast].max():.1f} m/s (> {MAX_SPEED_MPS:.0f} m/s){_UNITS_HINT}",
                    column="Local_Y",
                    row=r + 1,
                )
        check_speed_matches_positions(piece, x_m, vx_mps, order, FRAME_RATE_HZ, path, "Local_Y", "v_Vel",
                                      hint=f" (3.28 means one is not in feet){_UNITS_HINT}")
        median_len = float(np.median(file_length_m))
        if median_len < MIN_MEDIAN_LENGTH_M:
            short = np.flatnonzero(file_length_m < MIN_MEDIAN_LENGTH_M)
            raise LogError(
                path,
                f"median vehicle length {median_len:.2f} m after feet->metres conversion is implausibly short"
                f" (data already in metres?){_UNITS_HINT}",
                column="v_Length",
                row=int(short[0]) + 1,
            )


def _tracks_per_class(scene: np.ndarray, track: np.ndarray, v_class: np.ndarray) -> dict[str, int]:
    """Number of tracks of each vehicle class (a track takes the class of its first row)."""
    first = np.concatenate([[True], (scene[1:] != scene[:-1]) | (track[1:] != track[:-1])])
    return {name: int((v_class[first] == code).sum()) for code, name in VEHICLE_CLASSES.items()}


def _track_order(scene_id: np.ndarray, vid: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Row order sorting by (scene, vehicle, frame); the identity when the file is already in that order."""
    ds, dv, df = np.diff(scene_id), np.diff(vid), np.diff(frame)
    if np.all((ds > 0) | ((ds == 0) & ((dv > 0) | ((dv == 0) & (df > 0))))):
        return np.arange(frame.size)
    return np.lexsort((frame, vid, scene_id))  # the last key is the primary one


def _piecewise_gradient(values: np.ndarray, piece: np.ndarray, dt_s: float) -> np.ndarray:
    """d values / dt within each contiguous piece (central inside, one-sided at the ends, 0 alone)."""
    out = np.zeros_like(values)
    n = values.size
    if n < 2:
        return out
    prev_ok = np.concatenate([[False], piece[1:] == piece[:-1]])
    next_ok = np.concatenate([piece[1:] == piece[:-1], [False]])
    prev = np.concatenate([values[:1], values[:-1]])
    nxt = np.concatenate([values[1:], values[-1:]])
    lo = np.where(prev_ok, prev, values)
    hi = np.where(next_ok, nxt, values)
    span = (prev_ok.astype(np.float64) + next_ok.astype(np.float64)) * dt_s
    np.divide(hi - lo, span, out=out, where=span > 0)
    return out
