"""Small, valid driving logs in the real on-disk formats, built in a test's tmp_path.

Each factory writes files exactly as the dataset ships them (all columns, real names,
source units and frames) and returns the ground truth the file was built from, in the
SOURCE's terms (image coordinates for highD, feet for NGSIM, map frame for ScenarioNet),
so tests state the expected spec-frame values themselves.

- :func:`make_highd`: one recording, 3 lanes per carriageway, 5 vehicles over 4 s at
  25 Hz, vehicle 2 changes lane, vehicles 4-5 drive the upper carriageway (towards -x).
- :func:`make_ngsim`: US-101 style CSV in feet, 5 vehicles over 6 s at 10 Hz on lanes
  1-3 and the auxiliary lane 6, vehicle 12 changes from lane 3 to lane 2.
- :func:`make_scenarionet`: a dataset folder (summary + mapping + scenario pickles) on a
  straight 3-lane map, 5 vehicles + 1 pedestrian over 6 s at 10 Hz, one lane change and
  one track with an invalid gap.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# ======================================================================================
# highD
# ======================================================================================

HIGHD_UPPER_MARKINGS = [8.51, 12.59, 16.43, 20.27]
"""Image y of the upper carriageway's lane markings (3 lanes; its median side is at 20.27)."""
HIGHD_LOWER_MARKINGS = [24.0, 27.84, 31.68, 35.52]
"""Image y of the lower carriageway's lane markings (3 lanes; its median side is at 24.0)."""
HIGHD_TRACKS_COLUMNS = [
    "frame", "id", "x", "y", "width", "height", "xVelocity", "yVelocity", "xAcceleration", "yAcceleration",
    "frontSightDistance", "backSightDistance", "dhw", "thw", "ttc", "precedingXVelocity", "precedingId",
    "followingId", "leftPrecedingId", "leftAlongsideId", "leftFollowingId", "rightPrecedingId",
    "rightAlongsideId", "rightFollowingId", "laneId",
]  # fmt: skip
HIGHD_META_COLUMNS = [
    "id", "width", "height", "initialFrame", "finalFrame", "numFrames", "class", "drivingDirection",
    "traveledDistance", "minXVelocity", "maxXVelocity", "meanXVelocity", "minDHW", "minTHW", "minTTC",
    "numLaneChanges",
]  # fmt: skip


@dataclass
class HighDVehicle:
    """One synthetic highD vehicle, in image terms."""

    id: int
    direction: int
    """1 = upper carriageway (drives towards -x), 2 = lower (towards +x)."""
    slot: int
    """Image lane counted from the TOP of its carriageway (0, 1, 2)."""
    x0: float
    """Image x of the box corner at the first frame [m]."""
    x_velocity: float
    """Image-frame xVelocity [m/s] (negative for direction 1)."""
    length: float = 4.5
    width: float = 1.8
    first_frame: int = 1
    n_frames: int = 100
    to_slot: int | None = None
    """Image lane after a lane change (cosine blend over 2 s from 1 s in)."""


def highd_default_vehicles() -> list[HighDVehicle]:
    return [
        HighDVehicle(1, 2, slot=1, x0=20.0, x_velocity=30.0),
        HighDVehicle(2, 2, slot=2, x0=40.0, x_velocity=28.0, to_slot=1),
        HighDVehicle(3, 2, slot=0, x0=10.0, x_velocity=35.0, length=12.0, width=2.5),
        HighDVehicle(4, 1, slot=2, x0=400.0, x_velocity=-32.0),
        HighDVehicle(5, 1, slot=0, x0=380.0, x_velocity=-25.0, first_frame=21, n_frames=80),
    ]


def highd_slot_centre(direction: int, slot: int) -> float:
    """Image y of a lane centre."""
    m = HIGHD_UPPER_MARKINGS if direction == 1 else HIGHD_LOWER_MARKINGS
    return 0.5 * (m[slot] + m[slot + 1])


def highd_frames(
    vehicles: list[HighDVehicle] | None = None, recording_id: int = 1, frame_rate_hz: float = 25.0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three highD tables ``(tracks, tracksMeta, recordingMeta)`` as written to disk."""
    vehicles = highd_default_vehicles() if vehicles is None else vehicles
    rows, meta = [], []
    for v in vehicles:
        k = np.arange(v.n_frames)
        t = k / frame_rate_hz
        frame = v.first_frame + k
        cx = v.x0 + 0.5 * v.length + v.x_velocity * t
        cy = np.full(v.n_frames, highd_slot_centre(v.direction, v.slot))
        if v.to_slot is not None:
            y1 = highd_slot_centre(v.direction, v.to_slot)
            s = np.clip((t - 1.0) / 2.0, 0.0, 1.0)
            blend = 0.5 - 0.5 * np.cos(np.pi * s)
            cy = cy + (y1 - cy) * blend
        y_vel = np.gradient(cy, 1.0 / frame_rate_hz)
        markings = HIGHD_UPPER_MARKINGS if v.direction == 1 else HIGHD_LOWER_MARKINGS
        slot_now = np.clip(np.searchsorted(markings, cy) - 1, 0, 2)
        lane_id = np.where(v.direction == 1, 2 + slot_now, 6 + slot_now)  # highD numbers lanes top to bottom
        df = pd.DataFrame({c: np.zeros(v.n_frames) for c in HIGHD_TRACKS_COLUMNS})
        df["frame"], df["id"] = frame, v.id
        df["x"], df["y"] = np.round(cx - 0.5 * v.length, 4), np.round(cy - 0.5 * v.width, 4)
        df["width"], df["height"] = v.length, v.width
        df["xVelocity"], df["yVelocity"] = v.x_velocity, np.round(y_vel, 4)
        df["precedingId"] = df["followingId"] = 0
        for c in (
            "leftPrecedingId",
            "leftAlongsideId",
            "leftFollowingId",
            "rightPrecedingId",
            "rightAlongsideId",
            "rightFollowingId",
        ):
            df[c] = 0
        df["laneId"] = lane_id
        for c in ("frame", "id", "precedingId", "followingId", "laneId"):
            df[c] = df[c].astype(np.int64)
        rows.append(df)
        meta.append(
            {
                "id": v.id, "width": v.length, "height": v.width, "initialFrame": int(frame[0]),
                "finalFrame": int(frame[-1]), "numFrames": v.n_frames, "class": "Truck" if v.length > 8 else "Car",
                "drivingDirection": v.direction, "traveledDistance": abs(v.x_velocity) * t[-1],
                "minXVelocity": v.x_velocity, "maxXVelocity": v.x_velocity, "meanXVelocity": v.x_velocity,
                "minDHW": -1, "minTHW": -1, "minTTC": -1, "numLaneChanges": int(v.to_slot is not None),
            }
        )  # fmt: skip
    tracks = pd.concat(rows, ignore_index=True)
    tracks_meta = pd.DataFrame(meta, columns=HIGHD_META_COLUMNS)
    recording = pd.DataFrame(
        [
            {
                "id": recording_id, "frameRate": frame_rate_hz, "locationId": 2, "speedLimit": -1.0, "month": "09.2017",
                "weekDay": "Tue", "startTime": "08:38", "duration": len(tracks) / frame_rate_hz,
                "totalDrivenDistance": 1000.0, "totalDrivenTime": 100.0, "numVehicles": len(vehicles),
                "numCars": sum(v.length <= 8 for v in vehicles), "numTrucks": sum(v.length > 8 for v in vehicles),
                "upperLaneMarkings": ";".join(f"{m:.2f}" for m in HIGHD_UPPER_MARKINGS),
                "lowerLaneMarkings": ";".join(f"{m:.2f}" for m in HIGHD_LOWER_MARKINGS),
            }
        ]
    )  # fmt: skip
    return tracks, tracks_meta, recording


@dataclass
class HighDFiles:
    tracks: Path
    tracks_meta: Path
    recording_meta: Path
    prefix: Path
    vehicles: list[HighDVehicle]


def write_highd(
    folder: Path, tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], prefix: str = "01"
) -> HighDFiles:
    folder.mkdir(parents=True, exist_ok=True)
    files = HighDFiles(
        tracks=folder / f"{prefix}_tracks.csv",
        tracks_meta=folder / f"{prefix}_tracksMeta.csv",
        recording_meta=folder / f"{prefix}_recordingMeta.csv",
        prefix=folder / prefix,
        vehicles=[],
    )
    tables[0].to_csv(files.tracks, index=False)
    tables[1].to_csv(files.tracks_meta, index=False)
    tables[2].to_csv(files.recording_meta, index=False)
    return files


def make_highd(
    folder: Path, vehicles: list[HighDVehicle] | None = None, prefix: str = "01", recording_id: int = 1
) -> HighDFiles:
    """Write a valid highD recording into ``folder``; see the module docstring."""
    vehicles = highd_default_vehicles() if vehicles is None else vehicles
    files = write_highd(folder, highd_frames(vehicles, recording_id=recording_id), prefix)
    files.vehicles = vehicles
    return files


def synth_highd_vehicles(n_vehicles: int, n_frames: int, seed: int = 0) -> list[HighDVehicle]:
    """Many vehicles for size/speed checks (half per carriageway, random lanes and speeds)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_vehicles):
        direction = 1 + i % 2
        speed = rng.uniform(20.0, 38.0)
        out.append(
            HighDVehicle(
                id=i + 1, direction=direction, slot=int(rng.integers(0, 3)), x0=float(rng.uniform(0, 400)),
                x_velocity=speed if direction == 2 else -speed, first_frame=int(rng.integers(1, 200)), n_frames=n_frames,
            )
        )  # fmt: skip
    return out


# ======================================================================================
# NGSIM
# ======================================================================================

FT = 0.3048
NGSIM_COLUMNS = [
    "Vehicle_ID", "Frame_ID", "Total_Frames", "Global_Time", "Local_X", "Local_Y", "Global_X", "Global_Y",
    "v_Length", "v_Width", "v_Class", "v_Vel", "v_Acc", "Lane_ID", "Preceding", "Following",
    "Space_Headway", "Time_Headway", "Location",
]  # fmt: skip


@dataclass
class NgsimVehicle:
    """One synthetic NGSIM vehicle, in feet."""

    id: int
    lane: int
    """Lane_ID at the start (1 = leftmost)."""
    y0_ft: float
    speed_ftps: float
    first_frame: int = 100
    n_frames: int = 60
    to_lane: int | None = None
    """Lane_ID after a lane change (cosine blend over 2 s from 2 s in)."""
    length_ft: float = 15.0
    width_ft: float = 6.0
    offset_ft: float = 0.0
    """Lateral offset right of the lane centre [ft] (NGSIM Local_X grows to the right)."""


def ngsim_default_vehicles() -> list[NgsimVehicle]:
    return [
        NgsimVehicle(10, lane=1, y0_ft=100.0, speed_ftps=60.0, offset_ft=1.0),
        NgsimVehicle(11, lane=2, y0_ft=80.0, speed_ftps=55.0),
        NgsimVehicle(12, lane=3, y0_ft=120.0, speed_ftps=50.0, to_lane=2),
        NgsimVehicle(13, lane=3, y0_ft=40.0, speed_ftps=45.0, length_ft=40.0, width_ft=8.5),
        NgsimVehicle(14, lane=6, y0_ft=60.0, speed_ftps=40.0, first_frame=120, n_frames=40),
    ]


def ngsim_frame(vehicles: list[NgsimVehicle] | None = None, location: str | None = "us-101") -> pd.DataFrame:
    """An NGSIM table in feet (rows ordered by vehicle then frame, like the per-site files)."""
    vehicles = ngsim_default_vehicles() if vehicles is None else vehicles
    rows = []
    for v in vehicles:
        k = np.arange(v.n_frames)
        t = k * 0.1
        local_y = v.y0_ft + v.speed_ftps * t
        local_x = np.full(v.n_frames, (v.lane - 0.5) * 12.0 + v.offset_ft)
        lane = np.full(v.n_frames, v.lane)
        if v.to_lane is not None:
            target = (v.to_lane - 0.5) * 12.0 + v.offset_ft
            s = np.clip((t - 2.0) / 2.0, 0.0, 1.0)
            local_x = local_x + (target - local_x) * (0.5 - 0.5 * np.cos(np.pi * s))
            lane = np.floor(local_x / 12.0).astype(int) + 1
        df = pd.DataFrame(
            {
                "Vehicle_ID": v.id, "Frame_ID": v.first_frame + k, "Total_Frames": v.n_frames,
                "Global_Time": 1118846980200 + (v.first_frame + k) * 100, "Local_X": np.round(local_x, 3),
                "Local_Y": np.round(local_y, 3), "Global_X": 6451000.0 + local_x, "Global_Y": 1873000.0 + local_y,
                "v_Length": v.length_ft, "v_Width": v.width_ft, "v_Class": 3 if v.length_ft > 30 else 2,
                "v_Vel": v.speed_ftps, "v_Acc": 0.0, "Lane_ID": lane, "Preceding": 0, "Following": 0,
                "Space_Headway": 0.0, "Time_Headway": 0.0, "Location": location or "",
            }
        )  # fmt: skip
        rows.append(df)
    out = pd.concat(rows, ignore_index=True)
    return out if location is not None else out.drop(columns=["Location"])


def make_ngsim(path: Path, vehicles: list[NgsimVehicle] | None = None, location: str | None = "us-101") -> Path:
    """Write a valid NGSIM CSV (feet) at ``path``; see the module docstring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ngsim_frame(vehicles, location).to_csv(path, index=False)
    return path


# ======================================================================================
# ScenarioNet
# ======================================================================================

SN_LANE_WIDTH_M = 3.5
SN_LANES = {"lane_left": 1, "lane_mid": 0, "lane_right": -1}
"""Lane id -> lateral position of the centre line in units of the lane width (+ = left)."""


@dataclass
class SnVehicle:
    """One synthetic ScenarioNet vehicle, in a straight-road frame (before the map yaw)."""

    id: str
    lane: str
    s0_m: float
    speed_mps: float
    to_lane: str | None = None
    """Lane after a lane change (cosine blend over 2 s from 2 s in)."""
    offset_m: float = 0.0
    """Lateral offset from the lane centre, + = left."""
    valid_steps: tuple[int, int] | None = None
    """[start, stop) of valid steps; None = all."""
    invalid_gap: tuple[int, int] | None = None
    """[start, stop) of invalid steps inside the valid range."""
    type: str = "VEHICLE"


def sn_default_vehicles() -> list[SnVehicle]:
    return [
        SnVehicle("ego", "lane_mid", 10.0, 15.0, offset_m=0.4),
        SnVehicle("101", "lane_left", 30.0, 17.0),
        SnVehicle("102", "lane_right", 0.0, 14.0, to_lane="lane_mid"),
        SnVehicle("103", "lane_right", 40.0, 12.0, offset_m=-0.3, valid_steps=(5, 60)),
        SnVehicle("104", "lane_left", 60.0, 16.0, invalid_gap=(20, 25)),
        SnVehicle("ped7", "lane_right", 80.0, 1.2, type="PEDESTRIAN"),
    ]


def sn_to_map(s_m: np.ndarray, l_m: np.ndarray, yaw_rad: float, origin_m: tuple[float, float]) -> np.ndarray:
    """Road coordinates (s along, l left) -> map frame, ``[T, 2]``."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.stack([origin_m[0] + c * s_m - s * l_m, origin_m[1] + s * s_m + c * l_m], axis=1)


def make_scenario(
    scenario_id: str = "sc0",
    vehicles: list[SnVehicle] | None = None,
    length: int = 60,
    yaw_rad: float = 0.0,
    origin_m: tuple[float, float] = (0.0, 0.0),
    with_map: bool = True,
    neighbor_style: str = "waymo",
) -> dict:
    """A ScenarioNet scenario dict on a straight 3-lane road rotated by ``yaw_rad``.

    ``neighbor_style``: ``"waymo"`` writes neighbours as dicts with ``feature_id`` (as the
    Waymo converter does), ``"ids"`` as plain id lists, ``"nuplan"`` every lane to that side
    (the farthest first, as nuPlan's maps do), ``"none"`` no neighbour keys at all
    (as the nuScenes and Argoverse 2 converters do).
    """
    vehicles = sn_default_vehicles() if vehicles is None else vehicles
    ts = np.arange(length) * 0.1
    tracks = {}
    for v in vehicles:
        s_m = v.s0_m + v.speed_mps * ts
        l_m = np.full(length, SN_LANES[v.lane] * SN_LANE_WIDTH_M + v.offset_m)
        if v.to_lane is not None:
            target = SN_LANES[v.to_lane] * SN_LANE_WIDTH_M + v.offset_m
            b = np.clip((ts - 2.0) / 2.0, 0.0, 1.0)
            l_m = l_m + (target - l_m) * (0.5 - 0.5 * np.cos(np.pi * b))
        dl = np.gradient(l_m, 0.1)
        xy = sn_to_map(s_m, l_m, yaw_rad, origin_m)
        heading = yaw_rad + np.arctan2(dl, v.speed_mps)
        vel = np.stack(
            [
                v.speed_mps * np.cos(yaw_rad) - dl * np.sin(yaw_rad),
                v.speed_mps * np.sin(yaw_rad) + dl * np.cos(yaw_rad),
            ],
            1,
        )
        valid = np.ones(length, bool)
        if v.valid_steps is not None:
            valid[:] = False
            valid[v.valid_steps[0] : v.valid_steps[1]] = True
        if v.invalid_gap is not None:
            valid[v.invalid_gap[0] : v.invalid_gap[1]] = False
        position = np.concatenate([xy, np.zeros((length, 1))], axis=1)
        position[~valid] = 0.0  # ScenarioNet zeroes invalid steps
        tracks[v.id] = {
            "type": v.type,
            "state": {
                "position": position.astype(np.float32),
                "heading": np.where(valid, heading, 0.0).astype(np.float32),
                "velocity": np.where(valid[:, None], vel, 0.0).astype(np.float32),
                "valid": valid,
                "length": np.where(valid, 4.6, 0.0)[:, None].astype(np.float32),
                "width": np.where(valid, 1.9, 0.0)[:, None].astype(np.float32),
                "height": np.where(valid, 1.5, 0.0)[:, None].astype(np.float32),
            },
            "metadata": {"track_length": length, "type": v.type, "object_id": v.id, "dataset": "synthetic"},
        }
    map_features = {}
    if with_map:
        s_line = np.arange(-50.0, 251.0, 5.0)
        order = list(SN_LANES)
        for i, lane in enumerate(order):
            left = [order[i - 1]] if i > 0 else []
            right = [order[i + 1]] if i + 1 < len(order) else []
            if neighbor_style == "nuplan":  # every lane to that side, the farthest first
                left, right = order[:i], order[i + 1 :][::-1]
            if neighbor_style == "waymo":
                left = [{"feature_id": n, "self_start_index": 0, "self_end_index": s_line.size - 1} for n in left]
                right = [{"feature_id": n, "self_start_index": 0, "self_end_index": s_line.size - 1} for n in right]
            xy = sn_to_map(s_line, np.full(s_line.size, SN_LANES[lane] * SN_LANE_WIDTH_M), yaw_rad, origin_m)
            map_features[lane] = {
                "type": "LANE_SURFACE_STREET",
                "polyline": np.concatenate([xy, np.zeros((s_line.size, 1))], axis=1),
                "left_neighbor": left,
                "right_neighbor": right,
                "entry_lanes": [],
                "exit_lanes": [],
                "speed_limit_kmh": 60.0,
            }
            if neighbor_style == "none":
                for key in ("left_neighbor", "right_neighbor", "entry_lanes", "exit_lanes"):
                    del map_features[lane][key]
        for j, l in enumerate((-1.5, 0.5, 1.5)):
            xy = sn_to_map(s_line, np.full(s_line.size, l * SN_LANE_WIDTH_M), yaw_rad, origin_m)
            map_features[f"line{j}"] = {"type": "ROAD_LINE_BROKEN_SINGLE_WHITE", "polyline": xy}
    return {
        "id": scenario_id,
        "version": "synthetic_v1",
        "length": length,
        "tracks": tracks,
        "dynamic_map_states": {},
        "map_features": map_features,
        "metadata": {
            "ts": ts,
            "sdc_id": "ego",
            "dataset": "synthetic",
            "scenario_id": scenario_id,
            "metadrive_processed": False,
            "coordinate": "right-handed",
            "id": scenario_id,
        },
    }


def scenario_file_name(scenario_id: str) -> str:
    return f"sd_synthetic_v1_{scenario_id}.pkl"


def write_scenarionet(folder: Path, scenarios: list[dict], subfolder: str = "") -> Path:
    """Write scenarios like ScenarioNet does: files plus dataset_summary.pkl / dataset_mapping.pkl."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / subfolder).mkdir(parents=True, exist_ok=True)
    summary, mapping = {}, {}
    for sd in scenarios:
        name = scenario_file_name(sd["id"])
        with open(folder / subfolder / name, "wb") as f:
            pickle.dump(sd, f)
        summary[name] = sd["metadata"]
        mapping[name] = subfolder
    with open(folder / "dataset_summary.pkl", "wb") as f:
        pickle.dump(summary, f)
    with open(folder / "dataset_mapping.pkl", "wb") as f:
        pickle.dump(mapping, f)
    return folder


def make_scenarionet(folder: Path, n_scenarios: int = 2, **kwargs) -> Path:
    """A valid ScenarioNet dataset folder of ``n_scenarios`` scenarios; kwargs go to :func:`make_scenario`."""
    return write_scenarionet(folder, [make_scenario(f"sc{i}", **kwargs) for i in range(n_scenarios)])
