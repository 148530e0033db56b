"""ScenarioNet reader: MetaDrive scenario descriptions (one pickled dict per scenario).

A scenario is ``{"id", "version", "length", "tracks", "dynamic_map_states",
"map_features", "metadata"}``; ``tracks[track_id]["state"]`` holds per-step arrays
``position [T, 3]``, ``heading [T]``, ``velocity [T, 2]``, ``valid [T]``, ``length``/``width``
``[T]`` or ``[T, 1]``; ``metadata["ts"] [T]`` gives the time of every step (0.1 s apart) and
``metadata["sdc_id"]`` the self-driving car. A dataset folder holds many scenario files
plus ``dataset_summary.pkl`` (file name -> metadata, in dataset order) and
``dataset_mapping.pkl`` (file name -> sub-folder). The reader takes one ``.pkl`` file or a
folder: it reads the scenarios listed by the summary, or every ``*.pkl`` but those two, in
name order. Pickles are loaded with :mod:`drive_drail.logs.safe_pickle` (no code runs).

Record format:
- only ``VEHICLE`` tracks; a row per VALID step; ``frame`` = step index, ``t_s = ts[frame]``.
  A track whose valid steps have gaps becomes one track per contiguous piece.
- ``scene_id`` = the scenario's position in the folder (0, 1, ...); ``track_id`` = a
  running number within the scene. ``TrackLog.extra`` maps them back:
  ``scenario_ids[scene_id]``, ``track_ids[scene_id][track_id]`` (the original track key),
  ``sdc_track_ids[scene_id]`` (the pieces of the sdc track), ``swapped_size_tracks[scene_id]``
  (the track keys whose box is read with length and width swapped back, :func:`swapped_box`: the
  sdc of every nuScenes conversion).
- positions stay in the map frame (ENU, y already left); headings are logged
  (``heading_known=True``). Every vehicle track may serve as an expert ego.
- lane context from the lane centre lines in ``map_features`` (types ``LANE_*`` except
  bike lanes): the nearest segment, preferring lanes not pointing against the vehicle's
  heading; ``lane_heading_rad`` is that segment's direction, ``lane_offset_m`` the signed
  distance (+ = left), ``lane_index`` the number of lanes reachable through
  ``left_neighbor`` links (the longest chain: Waymo lists the adjacent lane, nuPlan every lane to
  the left), ``lane_count`` = left chain + 1 + right chain. A map whose lanes carry
  no neighbour keys (nuScenes, Argoverse 2) gets the links from its geometry. Without lanes:
  ``lane_index`` -1, ``lane_count`` 1, offset 0, lane heading = vehicle heading.
- ``on_ramp``: ScenarioNet's lane types do not mark ramps, so a lane counts as one if its type
  contains ``RAMP``, it carries a truthy ``on_ramp`` entry, or its geometry says a vehicle can only
  leave it by merging (:mod:`drive_drail.logs.ramps`: it ends beside a lane that goes on, it joins
  another lane from the side, or it leads only onto such a lane). ``TrackLog.extra["ramp_lanes"][scene_id]``
  lists those lanes with the rule that found each.

Errors name the key path as the column (``tracks[7].state.position``) and, for
per-step arrays, the 0-based step index as the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from drive_drail.logs.base import TRACK_COLUMNS, LogError, TrackLog, finalize_tracks, nominal_rate_hz
from drive_drail.logs.ramps import ramp_lanes
from drive_drail.logs.safe_pickle import safe_load

FORMAT = "scenarionet"
SUMMARY_FILE = "dataset_summary.pkl"
MAPPING_FILE = "dataset_mapping.pkl"
MAX_SPEED_MPS = 70.0
OPPOSITE_LANE_PENALTY_M = 100.0
"""Added to the distance of lane segments pointing more than 90° away from the vehicle heading."""
_SEGMENT_PAIRS_PER_CHUNK = 2_000_000
"""Points x segments evaluated at once by the brute-force nearest-lane search (memory bound)."""
GRID_CELL_M = 20.0
"""Cell size of the nearest-lane search grid: lanes within this distance are found locally."""
NEIGHBOUR_PROBE_M = 3.5
"""A map without neighbour lists (nuScenes, Argoverse 2) gets them from its geometry: a lane's left /
right neighbour is the lane found this far to its side of each of its segments [m] (a lane width)."""
NEIGHBOUR_TOLERANCE_M = 1.25
"""... within this distance of that lane's centre line (lanes 2.25-4.75 m apart) [m]."""
NEIGHBOUR_MAX_ANGLE_DEG = 20.0
"""... running within this angle of the lane [deg]."""
NEIGHBOUR_MIN_SHARE = 0.3
"""... for at least this share of the lane's segments (lanes are cut into pieces that overlap partly)."""


class ScenarioNetReader:
    """Reads one ScenarioNet scenario file or a dataset folder into a :class:`TrackLog`."""

    format = FORMAT

    def sniff(self, path: Path) -> bool:
        path = Path(path)
        if path.is_dir():
            return (path / SUMMARY_FILE).is_file() or any(path.glob("*.pkl"))
        return path.suffix == ".pkl" and path.is_file()

    def read(self, path: Path) -> TrackLog:
        path = Path(path)
        return self.read_loaded(((safe_load(f), f) for f in scenario_files(path)), path)

    def read_loaded(self, scenarios: Iterable[tuple[object, Path]], source: Path) -> TrackLog:
        """The :class:`TrackLog` of scenario dicts already loaded (safely), each with its file, in dataset
        order; ``source`` names the log. :meth:`read` streams a folder's files through it."""
        tables, scenario_ids, track_ids, sdc_ids, swapped, ramps, datasets, rates, files = [], {}, {}, {}, {}, {}, {}, [], []
        for scene_id, (sd, file) in enumerate(scenarios):
            files.append(file)
            table, info = scenario_table(sd, file, scene_id)
            tables.append(table)
            scenario_ids[scene_id] = info["scenario_id"]
            track_ids[scene_id] = info["track_ids"]
            sdc_ids[scene_id] = info["sdc_track_ids"]
            swapped[scene_id] = info["swapped_size_tracks"]
            ramps[scene_id] = info["ramp_lanes"]
            datasets[scene_id] = info["dataset"]
            rates.append((info["frame_rate_hz"], file))
        rate_hz = rates[0][0]
        for rate, file in rates:
            if abs(rate - rate_hz) > 1e-3 * rate_hz:
                raise LogError(
                    file, f"time step {1 / rate:.4f} s differs from {1 / rate_hz:.4f} s of {rates[0][1].name}", column="metadata.ts"
                )
        tracks = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(TRACK_COLUMNS))
        return TrackLog(
            tracks=finalize_tracks(tracks),
            source=str(source),
            format=FORMAT,
            frame_rate_hz=rate_hz,
            heading_known=True,
            smooth_positions=False,
            extra={
                "scenario_ids": scenario_ids,
                "scenario_files": {i: str(f) for i, f in enumerate(files)},
                "track_ids": track_ids,
                "sdc_track_ids": sdc_ids,
                "swapped_size_tracks": swapped,  # per scene: tracks whose length and width were swapped back
                "ramp_lanes": ramps,  # per scene: {lane id: the rule that made it a ramp (logs/ramps.py)}
                "datasets": datasets,
            },
        )


def scenario_files(path: Path) -> list[Path]:
    """The scenario files of ``path`` (a ``.pkl`` file or a dataset folder), in dataset order."""
    if path.is_file():
        if path.name in (SUMMARY_FILE, MAPPING_FILE):
            raise LogError(path, "this is a dataset index, not a scenario: pass the folder instead")
        return [path]
    if not path.is_dir():
        raise LogError(path, "no such file or folder")
    summary_path = path / SUMMARY_FILE
    for index in (summary_path, path / MAPPING_FILE):
        if index.exists() and not index.is_file():
            raise LogError(index, "is a folder, expected ScenarioNet's index file")
    if summary_path.is_file():
        summary = safe_load(summary_path)
        if not isinstance(summary, dict):
            raise LogError(summary_path, f"expected a dict of scenario file names, got {type(summary).__name__}")
        mapping = safe_load(path / MAPPING_FILE) if (path / MAPPING_FILE).is_file() else {}
        if not isinstance(mapping, dict):
            raise LogError(path / MAPPING_FILE, f"expected a dict, got {type(mapping).__name__}")
        files = [path / str(mapping.get(name, "")) / str(name) for name in summary]
        for f in files:
            if not f.is_file():
                raise LogError(f, f"listed in {SUMMARY_FILE} but missing")
    else:
        files = sorted(p for p in path.glob("*.pkl") if p.name not in (SUMMARY_FILE, MAPPING_FILE))
    if not files:
        raise LogError(path, "no scenario .pkl files in this folder")
    return files


# --------------------------------------------------------------------------------------
# One scenario
# --------------------------------------------------------------------------------------


def _key(d: object, key: str, path: Path, where: str) -> object:
    if not isinstance(d, dict):
        raise LogError(path, f"expected a dict, got {type(d).__name__}", column=where or "<top level>")
    if key not in d:
        raise LogError(path, "missing key", column=f"{where}.{key}" if where else key)
    return d[key]


MAX_ARRAY_ELEMENTS = 10_000_000
"""The most elements one array of a scenario may hold: a scenario's largest, a map polyline or
a track's states, has about 10^4; the bound keeps a crafted file from costing gigabytes."""
MAX_ARRAY_DEPTH = 3
"""Arrays here have at most 2 dimensions; nested lists deeper than this are refused before numpy walks them."""


def _short(value: object) -> str:
    """A bounded repr for messages (a crafted value must not print megabytes)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxlevel = 40, 40, 4, 2
    return r.repr(value)


def _array(value: object, path: Path, where: str) -> np.ndarray:
    """``value`` (an array or nested lists) as a numeric ndarray without a copy; sizes bounded first."""
    if not isinstance(value, np.ndarray):
        todo, count = [(value, 0)], 0
        while todo:  # bounded walk of nested lists: depth and element count before numpy sees them
            item, depth = todo.pop()
            if isinstance(item, (list, tuple)):
                if depth >= MAX_ARRAY_DEPTH:
                    raise LogError(path, f"nested deeper than {MAX_ARRAY_DEPTH} levels", column=where)
                count += len(item)
                if count > MAX_ARRAY_ELEMENTS:
                    raise LogError(path, f"more than {MAX_ARRAY_ELEMENTS:,} elements", column=where)
                todo.extend((x, depth + 1) for x in item)
        try:
            value = np.asarray(value)
        except (ValueError, TypeError):
            raise LogError(path, "rows of unequal length (ragged array)", column=where) from None
    if value.size > MAX_ARRAY_ELEMENTS:
        raise LogError(path, f"{value.size:,} elements, more than {MAX_ARRAY_ELEMENTS:,}", column=where)
    if value.dtype.kind not in "biuf":
        raise LogError(path, f"expected a numeric array, got dtype {value.dtype}", column=where)
    return value


def _numeric(value: object, path: Path, where: str, length: int, ndim: int, width: int = 0) -> np.ndarray:
    """``value`` as a float64 array ``[length]`` (ndim 1; ``[length, 1]`` is accepted) or ``[length, >= width]``."""
    arr = _array(value, path, where)
    if ndim == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != ndim or arr.shape[0] != length or (ndim == 2 and arr.shape[1] < width):
        want = f"[{length}]" if ndim == 1 else f"[{length}, {width}]"
        raise LogError(path, f"shape {list(arr.shape)} does not match {want} (scenario length {length})", column=where)
    return arr.astype(np.float64)  # the copy only once the shape is known to be the scenario's


PLACEHOLDER_MOVING_MPS = 0.5
"""A zero velocity right after a step faster than this is a converter's placeholder, not a stop [m/s]."""


MAX_VEHICLE_WIDTH_M = 2.6
"""The widest road vehicle (the legal limit: 2.55 m in the EU, 2.6 m in the US) [m]."""


def swapped_box(length_m: np.ndarray, width_m: np.ndarray) -> np.ndarray:
    """``[T]`` bool: steps whose box has its length and width swapped: wider than long, and wider
    than any road vehicle (:data:`MAX_VEHICLE_WIDTH_M`).

    ScenarioNet's nuScenes converter writes the self-driving car (a Renault Zoe, 4.08 x 1.73 m) as
    length 1.73, width 4.08 m. The length is the bicycle model's wheelbase in the inverse dynamics
    (:func:`drive_drail.pairs.bicycle.invert`), so the swap would recover every sdc steering angle
    2.4x too small, and neighbours would see the sdc's box turned across the road. A short trailer
    (1.8 x 2.2 m in nuScenes) is wider than long and stays as logged.
    """
    return (width_m > length_m) & (width_m > MAX_VEHICLE_WIDTH_M)


def zero_velocity_placeholders(valid: np.ndarray, speed_mps: np.ndarray) -> np.ndarray:
    """``[T]`` bool: the last valid step of a run whose velocity is exactly zero right after a moving step.

    ScenarioNet's converters (nuScenes among them) take velocities as forward differences and write 0 at a
    track's last valid step, so every moving track would "stop" within 0.1 s (-65 m/s^2) and a look-ahead
    label would spread that stop back over moving pairs. Such a step carries no velocity: it is dropped.
    """
    last = valid & ~np.concatenate([valid[1:], [False]])
    before = np.concatenate([[False], valid[:-1]])
    speed_before = np.concatenate([[0.0], speed_mps[:-1]])
    return last & before & (speed_mps == 0.0) & (speed_before > PLACEHOLDER_MOVING_MPS)


def scenario_table(sd: object, path: Path, scene_id: int) -> tuple[pd.DataFrame, dict]:
    """Rows of one scenario dict in the record format, and the id maps for ``TrackLog.extra``."""
    if not isinstance(sd, dict):
        raise LogError(path, f"expected a scenario dict, got {type(sd).__name__}")
    length = _key(sd, "length", path, "")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise LogError(path, f"expected a positive integer, got {_short(length)}", column="length")
    length = int(length)
    metadata = _key(sd, "metadata", path, "")
    ts = _numeric(_key(metadata, "ts", path, "metadata"), path, "metadata.ts", length, 1)
    bad = np.flatnonzero(~np.isfinite(ts))
    if bad.size:
        raise LogError(path, f"value is {ts[bad[0]]} (NaN or inf)", column="metadata.ts", row=int(bad[0]))
    bad = np.flatnonzero(np.diff(ts) <= 0)
    if bad.size:
        r = int(bad[0]) + 1
        raise LogError(
            path, f"time steps not increasing ({ts[r - 1]:g} s then {ts[r]:g} s)", column="metadata.ts", row=r
        )
    tracks = _key(sd, "tracks", path, "")
    if not isinstance(tracks, dict):
        raise LogError(path, f"expected a dict, got {type(tracks).__name__}", column="tracks")
    sdc_id = metadata.get("sdc_id")

    columns: dict[str, list[np.ndarray]] = {
        c: [] for c in ("track_id", "frame", "x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m")
    }
    track_ids: dict[int, str] = {}
    sdc_track_ids: list[int] = []
    swapped_tracks: list[str] = []
    next_id = 0
    for key, track in tracks.items():
        where = f"tracks[{key}]"
        if not isinstance(track, dict):
            raise LogError(path, f"expected a dict, got {type(track).__name__}", column=where)
        if track.get("type") != "VEHICLE":
            continue
        state = _key(track, "state", path, where)
        w = f"{where}.state"
        valid = _numeric(_key(state, "valid", path, w), path, f"{w}.valid", length, 1) != 0
        arrays = {
            "position": _numeric(_key(state, "position", path, w), path, f"{w}.position", length, 2, 2)[:, :2],
            "heading": _numeric(_key(state, "heading", path, w), path, f"{w}.heading", length, 1)[:, None],
            "velocity": _numeric(_key(state, "velocity", path, w), path, f"{w}.velocity", length, 2, 2)[:, :2],
            "length": _numeric(_key(state, "length", path, w), path, f"{w}.length", length, 1)[:, None],
            "width": _numeric(_key(state, "width", path, w), path, f"{w}.width", length, 1)[:, None],
        }
        for name, arr in arrays.items():
            bad = np.flatnonzero(valid & ~np.all(np.isfinite(arr), axis=1))
            if bad.size:
                raise LogError(path, "value is NaN or inf at a valid step", column=f"{w}.{name}", row=int(bad[0]))
        speed = np.hypot(arrays["velocity"][:, 0], arrays["velocity"][:, 1])
        bad = np.flatnonzero(valid & (speed > MAX_SPEED_MPS))
        if bad.size:
            raise LogError(
                path,
                f"implausible speed {speed[bad[0]]:.1f} m/s (> {MAX_SPEED_MPS:.0f} m/s) - units look wrong",
                column=f"{w}.velocity",
                row=int(bad[0]),
            )
        valid &= ~zero_velocity_placeholders(valid, speed)
        steps = np.flatnonzero(valid)
        if steps.size == 0:
            continue
        swapped = swapped_box(arrays["length"], arrays["width"])  # new arrays: the loaded dict stays as it was
        arrays["length"], arrays["width"] = np.where(swapped, arrays["width"], arrays["length"]), np.where(swapped, arrays["length"], arrays["width"])
        if swapped[steps].any():
            swapped_tracks.append(str(key))
        # One track per contiguous run of valid steps (frames must be consecutive).
        piece = np.cumsum(np.concatenate([[True], np.diff(steps) != 1])) - 1
        ids = next_id + piece
        for k in range(int(piece[-1]) + 1):
            track_ids[next_id + k] = str(key)
            if sdc_id is not None and str(key) == str(sdc_id):
                sdc_track_ids.append(next_id + k)
        next_id += int(piece[-1]) + 1
        columns["track_id"].append(ids)
        columns["frame"].append(steps)
        columns["x_m"].append(arrays["position"][steps, 0])
        columns["y_m"].append(arrays["position"][steps, 1])
        columns["vx_mps"].append(arrays["velocity"][steps, 0])
        columns["vy_mps"].append(arrays["velocity"][steps, 1])
        columns["heading_rad"].append(arrays["heading"][steps, 0])
        columns["length_m"].append(arrays["length"][steps, 0])
        columns["width_m"].append(arrays["width"][steps, 0])

    cols = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in columns.items()}
    n = cols["frame"].size
    frame = cols["frame"].astype(np.int64)
    lane_map = build_lane_map(sd.get("map_features") or {}, path)
    xy = np.stack([cols["x_m"], cols["y_m"]], axis=1)
    lane_index, lane_count, lane_offset_m, lane_heading_rad, on_ramp = lane_context(lane_map, xy, cols["heading_rad"])
    table = pd.DataFrame(
        {
            "scene_id": np.full(n, scene_id, np.int64),
            "track_id": cols["track_id"].astype(np.int64),
            "frame": frame,
            "t_s": ts[frame],
            **{k: cols[k] for k in ("x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m")},
            "lane_index": lane_index,
            "lane_count": lane_count,
            "lane_offset_m": lane_offset_m,
            "lane_heading_rad": lane_heading_rad,
            "on_ramp": on_ramp,
            "expert": np.ones(n, bool),
        }
    )
    info = {
        "scenario_id": str(sd.get("id", path.stem)),
        "track_ids": track_ids,
        "sdc_track_ids": sdc_track_ids,
        "swapped_size_tracks": swapped_tracks,
        "ramp_lanes": dict(lane_map.ramp_reasons) if lane_map is not None else {},
        "dataset": str(metadata.get("dataset", "")),
        "frame_rate_hz": nominal_rate_hz(ts),
    }
    return table, info


# --------------------------------------------------------------------------------------
# Lane context from map_features
# --------------------------------------------------------------------------------------


@dataclass
class LaneMap:
    """Lane centre lines cut into segments, with per-lane context."""

    seg_start_m: np.ndarray
    """``[S, 2]`` segment start points."""
    seg_end_m: np.ndarray
    """``[S, 2]`` segment end points."""
    seg_lane: np.ndarray
    """``[S]`` index into the per-lane arrays."""
    lane_index: np.ndarray
    """``[L]`` lanes reachable through left_neighbor links (0 = leftmost)."""
    lane_count: np.ndarray
    """``[L]`` left chain + 1 + right chain."""
    lane_on_ramp: np.ndarray
    """``[L]`` bool."""
    lane_ids: list[str]
    links_from_geometry: bool = False
    """The map had no neighbour lists; :func:`geometric_neighbours` made them."""
    ramp_reasons: dict[str, str] = field(default_factory=dict)
    """Lanes marked on-ramp by their geometry, with the rule of :mod:`drive_drail.logs.ramps` that found each."""


def _neighbor_ids(entries: object) -> list[str]:
    """``left_neighbor``/``right_neighbor`` as ids: plain ids or Waymo-style dicts with ``feature_id``."""
    if entries is None:
        return []
    if isinstance(entries, (str, int, np.integer)):
        entries = [entries]
    out = []
    for e in list(entries):
        if isinstance(e, dict):
            e = e.get("feature_id", e.get("id"))
        if e is not None:
            out.append(str(e))
    return out


def _chain_lengths(lane_ids: list[str], links: dict[str, list[str]]) -> np.ndarray:
    """``[L]``: how many lanes lie beyond each lane through its links: the longest chain.

    Converters disagree on what a neighbour list holds. Waymo lists the adjacent lane (or its
    pieces along the lane); nuPlan lists every lane to that side, the farthest first. The longest
    chain counts both right: nuPlan's list holds the adjacent lane, whose own list continues the
    chain. Links to lanes the map lacks are ignored; a cycle is cut where it closes.
    """
    memo: dict[str, int] = {}

    def beyond(lane: str, path: frozenset[str]) -> int:
        if lane in memo:
            return memo[lane]
        best = max((1 + beyond(n, path | {n}) for n in links.get(lane, []) if n in links and n not in path), default=0)
        memo[lane] = best
        return best

    return np.array([beyond(k, frozenset({k})) for k in lane_ids], np.int64)


def build_lane_map(map_features: object, path: Path) -> LaneMap | None:
    """The lane centre lines of a scenario's ``map_features``; None if it has no lanes.

    Lane index and count follow the ``left_neighbor`` / ``right_neighbor`` lists; a map whose lanes
    carry no such keys gets its links from the geometry (:func:`geometric_neighbours`).
    """
    if not isinstance(map_features, dict):
        raise LogError(path, f"expected a dict, got {type(map_features).__name__}", column="map_features")
    lanes: dict[str, dict] = {}
    for key, feat in map_features.items():
        if not isinstance(feat, dict):
            continue
        kind = str(feat.get("type", ""))
        if kind.startswith("LANE_") and "BIKE" not in kind:
            lanes[str(key)] = feat
    if not lanes:
        return None
    starts, ends, seg_lane = [], [], []
    lane_ids = list(lanes)
    for i, (key, feat) in enumerate(lanes.items()):
        where = f"map_features[{key}].polyline"
        poly = _array(_key(feat, "polyline", path, f"map_features[{key}]"), path, where)
        if poly.ndim != 2 or poly.shape[1] < 2:
            raise LogError(
                path, f"expected a numeric [N, 2] or [N, 3] array, got shape {list(poly.shape)}", column=where
            )
        poly = poly[:, :2].astype(np.float64)
        bad = np.flatnonzero(~np.all(np.isfinite(poly), axis=1))
        if bad.size:
            raise LogError(path, "value is NaN or inf", column=where, row=int(bad[0]))
        seg_len = np.hypot(*(poly[1:] - poly[:-1]).T)
        keep = seg_len > 1e-6
        starts.append(poly[:-1][keep])
        ends.append(poly[1:][keep])
        seg_lane.append(np.full(int(keep.sum()), i))
    seg_lane_arr = np.concatenate(seg_lane)
    if seg_lane_arr.size == 0:
        return None
    n = len(lane_ids)
    lane_map = LaneMap(
        seg_start_m=np.concatenate(starts),
        seg_end_m=np.concatenate(ends),
        seg_lane=seg_lane_arr,
        lane_index=np.zeros(n, np.int64),
        lane_count=np.ones(n, np.int64),
        lane_on_ramp=np.array(
            [("RAMP" in str(f.get("type", "")).upper()) or bool(f.get("on_ramp", False)) for f in lanes.values()], bool
        ),
        lane_ids=lane_ids,
    )
    if any("left_neighbor" in f or "right_neighbor" in f for f in lanes.values()):
        left = {k: _neighbor_ids(f.get("left_neighbor")) for k, f in lanes.items()}
        right = {k: _neighbor_ids(f.get("right_neighbor")) for k, f in lanes.items()}
    else:
        left, right = geometric_neighbours(lane_map)
        lane_map.links_from_geometry = True
    lane_left, lane_right = _chain_lengths(lane_ids, left), _chain_lengths(lane_ids, right)
    lane_map.lane_index, lane_map.lane_count = lane_left, lane_left + 1 + lane_right
    by_geometry, lane_map.ramp_reasons = ramp_lanes(lane_map)
    lane_map.lane_on_ramp |= by_geometry
    return lane_map


def geometric_neighbours(lane_map: LaneMap) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Left and right neighbour lists ``{lane id: [id]}`` of a map that has none, from its centre lines.

    From the middle of every segment, a probe :data:`NEIGHBOUR_PROBE_M` to the left (right) finds
    its nearest segment heading the same way (:func:`nearest_segment`). It counts as a vote for that
    segment's lane when the probe lies within :data:`NEIGHBOUR_TOLERANCE_M` of it and the two run
    within :data:`NEIGHBOUR_MAX_ANGLE_DEG`. A lane's neighbour is the lane with the most votes, if
    they reach :data:`NEIGHBOUR_MIN_SHARE` of its segments. Lanes that fork or cross at a junction
    lie on top of each other or across, so they never vote for each other.
    """
    a, b = lane_map.seg_start_m, lane_map.seg_end_m
    d = b - a
    seg_len2 = np.einsum("sk,sk->s", d, d)
    u = d / np.sqrt(seg_len2)[:, None]
    heading = np.arctan2(d[:, 1], d[:, 0])
    left_normal = np.stack([-u[:, 1], u[:, 0]], axis=1)
    n_segments = np.bincount(lane_map.seg_lane, minlength=len(lane_map.lane_ids))
    out = []
    for side in (1.0, -1.0):
        probe = 0.5 * (a + b) + side * NEIGHBOUR_PROBE_M * left_normal
        j = nearest_segment(lane_map, probe, heading)
        rel = probe - a[j]
        t = np.clip(np.einsum("sk,sk->s", rel, d[j]) / seg_len2[j], 0.0, 1.0)
        dist = np.hypot(*(rel - t[:, None] * d[j]).T)
        vote = (lane_map.seg_lane[j] != lane_map.seg_lane) & (dist < NEIGHBOUR_TOLERANCE_M)
        vote &= np.cos(heading - heading[j]) > np.cos(np.radians(NEIGHBOUR_MAX_ANGLE_DEG))
        pairs, count = np.unique(np.stack([lane_map.seg_lane[vote], lane_map.seg_lane[j[vote]]], axis=1), axis=0, return_counts=True)
        links: dict[str, list[str]] = {k: [] for k in lane_map.lane_ids}
        best: dict[int, int] = {}
        for (lane, other), c in zip(pairs.tolist(), count.tolist()):
            if c >= NEIGHBOUR_MIN_SHARE * n_segments[lane] and c > best.get(lane, 0):
                best[lane] = c
                links[lane_map.lane_ids[lane]] = [lane_map.lane_ids[other]]
        out.append(links)
    return out[0], out[1]


def _segment_cost(
    q_m: np.ndarray,
    heading_rad: np.ndarray,
    a: np.ndarray,
    d: np.ndarray,
    seg_len2: np.ndarray,
    seg_heading: np.ndarray,
) -> np.ndarray:
    """Squared distance of points ``q_m [C, 2]`` to segments ``a + t d`` (``[S, 2]``), plus the
    opposite-direction penalty: ``[C, S]``."""
    rel = q_m[:, None, :] - a[None]  # [C, S, 2]
    t = np.clip(np.einsum("csk,sk->cs", rel, d) / seg_len2, 0.0, 1.0)  # projection parameter on each segment
    dist2 = np.sum((rel - t[..., None] * d) ** 2, axis=-1)
    against = np.cos(heading_rad[:, None] - seg_heading[None, :]) < 0.0
    return dist2 + against * OPPOSITE_LANE_PENALTY_M**2


def nearest_segment_brute(lane_map: LaneMap, xy_m: np.ndarray, heading_rad: np.ndarray) -> np.ndarray:
    """Index ``[M]`` of the lowest-cost segment for every point, over all segments (reference method)."""
    a, d = lane_map.seg_start_m, lane_map.seg_end_m - lane_map.seg_start_m
    seg_len2, seg_heading = np.einsum("sk,sk->s", d, d), np.arctan2(d[:, 1], d[:, 0])
    best = np.empty(xy_m.shape[0], np.int64)
    chunk = max(1, _SEGMENT_PAIRS_PER_CHUNK // a.shape[0])
    for lo in range(0, xy_m.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        best[sl] = np.argmin(_segment_cost(xy_m[sl], heading_rad[sl], a, d, seg_len2, seg_heading), axis=1)
    return best


def nearest_segment(lane_map: LaneMap, xy_m: np.ndarray, heading_rad: np.ndarray) -> np.ndarray:
    """Same result as :func:`nearest_segment_brute`, searching only nearby segments.

    Segments are bucketed into square cells of ``GRID_CELL_M`` by their bounding boxes;
    every segment within ``GRID_CELL_M`` of a point touches one of the 3 x 3 cells around
    it. A point whose best candidate costs more than ``GRID_CELL_M**2`` (nothing close, or
    only lanes pointing against it) is settled by brute force, so the answer is exact.
    """
    g = GRID_CELL_M
    a, b = lane_map.seg_start_m, lane_map.seg_end_m
    d = b - a
    seg_len2, seg_heading = np.einsum("sk,sk->s", d, d), np.arctan2(d[:, 1], d[:, 0])
    lo_cell = np.floor(np.minimum(a, b) / g).astype(np.int64)
    n_cells = np.floor(np.maximum(a, b) / g).astype(np.int64) - lo_cell + 1  # [S, 2]
    # (cell, segment) pairs for every cell a segment's bounding box covers.
    span = n_cells[:, 0] * n_cells[:, 1]
    seg = np.repeat(np.arange(a.shape[0]), span)
    k = np.arange(seg.size) - np.repeat(np.cumsum(span) - span, span)
    cx = lo_cell[seg, 0] + k % n_cells[seg, 0]
    cy = lo_cell[seg, 1] + k // n_cells[seg, 0]
    key = _cell_key(cx, cy)
    order = np.argsort(key, kind="stable")
    key, seg = key[order], seg[order]

    best = np.full(xy_m.shape[0], -1, np.int64)
    point_cell = np.floor(xy_m / g).astype(np.int64)
    cells, inverse = np.unique(point_cell, axis=0, return_inverse=True)
    groups = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[groups], np.arange(cells.shape[0] + 1))
    for c in range(cells.shape[0]):
        pts = groups[bounds[c] : bounds[c + 1]]
        near = _cell_key(cells[c, 0] + _NEIGHBOUR_DX, cells[c, 1] + _NEIGHBOUR_DY)  # the 3 x 3 cells around
        start, stop = np.searchsorted(key, near, "left"), np.searchsorted(key, near, "right")
        cand = np.unique(np.concatenate([seg[s0:s1] for s0, s1 in zip(start, stop)]))
        if cand.size == 0:
            continue
        cost = _segment_cost(xy_m[pts], heading_rad[pts], a[cand], d[cand], seg_len2[cand], seg_heading[cand])
        j = np.argmin(cost, axis=1)
        ok = cost[np.arange(pts.size), j] <= g * g
        best[pts[ok]] = cand[j[ok]]
    rest = np.flatnonzero(best < 0)
    if rest.size:
        best[rest] = nearest_segment_brute(lane_map, xy_m[rest], heading_rad[rest])
    return best


_NEIGHBOUR_DX = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1])
_NEIGHBOUR_DY = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])


def _cell_key(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """One int64 per grid cell (cells within +-2**31 of the origin: +-43 000 km at 20 m)."""
    return ((np.asarray(cx, np.int64) + 2**31) << 32) | (np.asarray(cy, np.int64) + 2**31)


def lane_context(
    lane_map: LaneMap | None, xy_m: np.ndarray, heading_rad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The nearest lane of every point (:func:`nearest_segment`).

    ``xy_m``: ``[M, 2]`` positions; ``heading_rad``: ``[M]``. Returns ``(lane_index,
    lane_count, lane_offset_m, lane_heading_rad, on_ramp)``, each ``[M]``.
    """
    m = xy_m.shape[0]
    if lane_map is None:
        return (np.full(m, -1, np.int64), np.ones(m, np.int64), np.zeros(m), heading_rad.copy(), np.zeros(m, bool))
    if m == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, bool))
    best = nearest_segment(lane_map, xy_m, heading_rad)
    a, d = lane_map.seg_start_m[best], lane_map.seg_end_m[best] - lane_map.seg_start_m[best]
    u = d / np.hypot(d[:, 0], d[:, 1])[:, None]  # unit direction of the chosen segment
    rel = xy_m - a
    offset_m = u[:, 0] * rel[:, 1] - u[:, 1] * rel[:, 0]  # cross(u, rel): + = left of the centre line
    lane = lane_map.seg_lane[best]
    return (
        lane_map.lane_index[lane],
        lane_map.lane_count[lane],
        offset_m,
        np.arctan2(d[:, 1], d[:, 0]),
        lane_map.lane_on_ramp[lane],
    )
