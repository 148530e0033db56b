"""Benchmark: convert a generated 1M-row highD-format log into pairs.

Prints JSON: rows/s of the whole conversion (read + validate + kinematics + scenes +
observations + inverse dynamics + labels + Parquet write), the ratio of its time to
pyarrow's plain multithreaded CSV read of the same tracks file (both measured in this
run; target <= 3), the same ratio for the CLI (``drive-drail convert`` in a fresh process,
start-up and imports included), and peak memory. For scale, the CLI is also set against the read
done the same way (a fresh Python that imports pyarrow and reads the file): the start-up both pay.
The four are timed interleaved, medians of ``--repeats``.

    python benchmarks/convert_highd.py [--rows 1000000] [--repeats 5] [--keep DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

FRAME_RATE_HZ = 25
UPPER_MARKINGS_M = [8.5, 12.2, 15.9, 19.6]
LOWER_MARKINGS_M = [23.5, 27.2, 30.9, 34.6]
ROAD_LENGTH_M = 420.0
TRACK_COLUMNS = [
    "frame", "id", "x", "y", "width", "height", "xVelocity", "yVelocity", "xAcceleration", "yAcceleration",
    "frontSightDistance", "backSightDistance", "dhw", "thw", "ttc", "precedingXVelocity", "precedingId",
    "followingId", "leftPrecedingId", "leftAlongsideId", "leftFollowingId", "rightPrecedingId",
    "rightAlongsideId", "rightFollowingId", "laneId",
]


def generate(folder: Path, target_rows: int, seed: int = 0) -> Path:
    """Write 01_tracks.csv, 01_tracksMeta.csv, 01_recordingMeta.csv with about ``target_rows`` rows."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / FRAME_RATE_HZ
    mean_frames = ROAD_LENGTH_M / 28.0 * FRAME_RATE_HZ
    n_vehicles = int(target_rows / mean_frames) + 1
    duration_frames = int(n_vehicles * mean_frames / 40)  # ~40 vehicles on the road at a time
    direction = rng.integers(1, 3, n_vehicles)
    lane = rng.integers(0, 3, n_vehicles)  # 0..2 within the carriageway
    speed = rng.uniform(20.0, 36.0, n_vehicles)
    length = np.where(rng.random(n_vehicles) < 0.2, rng.uniform(10, 16, n_vehicles), rng.uniform(4, 5.2, n_vehicles))
    width = np.where(length > 8, 2.5, 1.9)
    start = np.sort(rng.integers(1, duration_frames, n_vehicles))
    n_frames = (ROAD_LENGTH_M / speed * FRAME_RATE_HZ).astype(int)
    changes = rng.random(n_vehicles) < 0.3  # a third change lane once
    lane_to = np.clip(lane + rng.choice([-1, 1], n_vehicles), 0, 2)

    vid = np.repeat(np.arange(1, n_vehicles + 1), n_frames)
    k = np.arange(n_frames.sum()) - np.repeat(np.cumsum(n_frames) - n_frames, n_frames)
    t = k * dt
    v = np.repeat(speed, n_frames) + 0.5 * np.sin(0.3 * t + np.repeat(np.arange(n_vehicles), n_frames))
    s = np.cumsum(v * dt) - np.repeat(np.cumsum(np.bincount(vid - 1, weights=v * dt)) - np.bincount(vid - 1, weights=v * dt), n_frames)
    d = np.repeat(direction, n_frames)
    upper, lower = np.array(UPPER_MARKINGS_M), np.array(LOWER_MARKINGS_M)
    centre_upper = (upper[:-1] + upper[1:]) / 2  # upper carriageway, lane 0 (leftmost) next to the median
    centre_lower = (lower[:-1] + lower[1:]) / 2
    lane0 = np.repeat(lane, n_frames)
    lane1 = np.repeat(np.where(changes, lane_to, lane), n_frames)
    raw = np.clip((t - 4.0) / 4.0, 0, 1)  # lane change between 4 s and 8 s
    blend = 0.5 - 0.5 * np.cos(np.pi * raw)
    dblend_dt = np.where((raw > 0) & (raw < 1), 0.5 * np.pi * np.sin(np.pi * raw) / 4.0, 0.0)
    y_up = centre_upper[::-1]  # leftmost upper lane has the largest image y (next to the median)
    y_from = np.where(d == 1, y_up[lane0], centre_lower[lane0])
    y_to = np.where(d == 1, y_up[lane1], centre_lower[lane1])
    y_centre = y_from + (y_to - y_from) * blend
    L, W = np.repeat(length, n_frames), np.repeat(width, n_frames)
    x_centre = np.where(d == 2, s, ROAD_LENGTH_M - s)
    frame = np.repeat(start, n_frames) + k
    lane_now = np.where(blend < 0.5, lane0, lane1)
    lane_id = np.where(d == 1, 2 + (2 - lane_now), 6 + lane_now)
    vx = np.where(d == 2, v, -v)
    vy = (y_to - y_from) * dblend_dt
    df = pd.DataFrame({c: np.zeros(len(vid)) for c in TRACK_COLUMNS})
    df["frame"], df["id"] = frame, vid
    df["x"], df["y"] = x_centre - L / 2, y_centre - W / 2
    df["width"], df["height"] = L, W
    df["xVelocity"], df["yVelocity"], df["laneId"] = vx, vy, lane_id
    folder.mkdir(parents=True, exist_ok=True)
    tracks = folder / "01_tracks.csv"
    df.to_csv(tracks, index=False, float_format="%.3f")
    pd.DataFrame({
        "id": np.arange(1, n_vehicles + 1), "width": length, "height": width, "initialFrame": start,
        "finalFrame": start + n_frames - 1, "numFrames": n_frames, "class": np.where(length > 8, "Truck", "Car"),
        "drivingDirection": direction, "traveledDistance": ROAD_LENGTH_M, "minXVelocity": speed - 0.5,
        "maxXVelocity": speed + 0.5, "meanXVelocity": speed, "minDHW": -1, "minTHW": -1, "minTTC": -1,
        "numLaneChanges": changes.astype(int),
    }).to_csv(folder / "01_tracksMeta.csv", index=False)
    pd.DataFrame([{
        "id": 1, "frameRate": FRAME_RATE_HZ, "locationId": 1, "speedLimit": -1, "month": "09.2017", "weekDay": "Tue",
        "startTime": "08:00", "duration": duration_frames / FRAME_RATE_HZ, "totalDrivenDistance": 0.0,
        "upperLaneMarkings": ";".join(map(str, UPPER_MARKINGS_M)), "lowerLaneMarkings": ";".join(map(str, LOWER_MARKINGS_M)),
        "numVehicles": n_vehicles, "numCars": int((length <= 8).sum()), "numTrucks": int((length > 8).sum()),
    }]).to_csv(folder / "01_recordingMeta.csv", index=False)
    return tracks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="keep the generated files in this folder")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    from drive_drail.pairs.convert import ConvertConfig, convert_file

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="highd-bench-"))
    tracks = generate(folder, args.rows)
    n_rows = sum(1 for _ in open(tracks)) - 1
    size_mb = tracks.stat().st_size / 1e6

    cli = [sys.executable, "-m", "drive_drail.cli", "convert", str(tracks), "-o", str(folder / "pairs_cli.parquet"), "--format", "highd"]
    fresh_read = [sys.executable, "-c", f"import pyarrow.csv; pyarrow.csv.read_csv({str(tracks)!r})"]
    read_s, convert_s, cli_s, fresh_read_s = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        pacsv.read_csv(tracks)
        read_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pairs, _ = convert_file(str(tracks), str(folder / "pairs.parquet"), "highd", ConvertConfig())
        convert_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(cli, check=True, stdout=subprocess.DEVNULL)
        cli_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(fresh_read, check=True)
        fresh_read_s.append(time.perf_counter() - t0)
    read, conv, cli_time = float(np.median(read_s)), float(np.median(convert_s)), float(np.median(cli_s))
    fresh = float(np.median(fresh_read_s))
    text = json.dumps({
        "benchmark": "convert_highd",
        "rows": n_rows,
        "csv_mb": round(size_mb, 1),
        "pairs": int(len(pairs)),
        "pyarrow_csv_read_s": round(read, 3),
        "convert_s": round(conv, 3),
        "convert_rows_per_s": round(n_rows / conv),
        "ratio_convert_to_read": round(conv / read, 2),
        "cli_s": round(cli_time, 3),
        "ratio_cli_to_read": round(cli_time / read, 2),
        "pyarrow_read_fresh_process_s": round(fresh, 3),
        "ratio_cli_to_fresh_process_read": round(cli_time / fresh, 2),
        "target_ratio": 3.0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "repeats": args.repeats,
        "read_s_all": [round(x, 3) for x in read_s],
        "convert_s_all": [round(x, 3) for x in convert_s],
        "cli_s_all": [round(x, 3) for x in cli_s],
        "read_fresh_process_s_all": [round(x, 3) for x in fresh_read_s],
    }, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
