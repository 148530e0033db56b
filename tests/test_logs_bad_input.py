"""Bad input to every log reader gives ONE-line LogError naming file, column and row.

Every case starts from a valid factory log (tests/log_factories.py), breaks one thing and
reads it through ``read_log`` (auto-detection, like the CLI). CSV rows are 1-based data
rows (header excluded); pickle rows are 0-based time steps; Parquet rows are 1-based rows
of the table.

Not every defect applies to every format: ScenarioNet stores one array per track
indexed by time step, so duplicated frames and an id at two positions in one frame
cannot be written; NGSIM releases are not ordered, so the reader sorts rows and
"frames out of order" is not an error there (frame gaps start a new track piece).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from drive_drail.logs.base import LogError
from drive_drail.logs.ngsim import NgsimReader
from drive_drail.logs.registry import read_log, supported_formats
from drive_drail.logs.simlog import write_simlog
from log_factories import (
    FT,
    highd_frames,
    make_scenario,
    make_scenarionet,
    ngsim_frame,
    scenario_file_name,
    write_highd,
    write_scenarionet,
)


@dataclass
class Expect:
    read: Path
    """What is passed to read_log."""
    file: Path
    """The file the message must name."""
    column: str | None = None
    row: int | None = None
    contains: tuple[str, ...] = ()
    format: str = "auto"


def _check(e: Expect) -> str:
    with pytest.raises(LogError) as err:
        read_log(e.read, e.format)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert str(e.file) in msg and err.value.path == str(e.file), msg
    if e.column is not None:
        assert err.value.column == e.column and f"column '{e.column}'" in msg, msg
    if e.row is not None:
        assert err.value.row == e.row and f"row {e.row}" in msg, msg
    for text in e.contains:
        assert text in msg, msg
    return msg


def _cut_mid_row(path: Path, data_row: int, keep_chars: int = 7) -> None:
    """Truncate a CSV inside data row ``data_row`` (1-based, header excluded)."""
    lines = path.read_bytes().split(b"\n")
    start = sum(len(line) + 1 for line in lines[:data_row])  # header + earlier data rows
    path.write_bytes(path.read_bytes()[: start + keep_chars])


def _text(df: pd.DataFrame, column: str, index: int, value: str) -> pd.DataFrame:
    df = df.copy()
    df[column] = df[column].astype(object)
    df.loc[index, column] = value
    return df


# ==========================================================================================
# highD
# ==========================================================================================


def _highd(tmp: Path, tracks=None, meta=None, rec=None):
    tr, me, re = highd_frames()
    return write_highd(tmp, (tracks(tr) if tracks else tr, meta(me) if meta else me, rec(re) if rec else re))


def _highd_cases() -> dict[str, Callable[[Path], Expect]]:
    def reused_id(tr):
        row = tr[(tr.id == 1) & (tr.frame == 50)].copy()
        row["x"] += 100.0  # the same id at a second position in frame 50
        return pd.concat([tr, row], ignore_index=True)

    def swap_frames(tr):
        tr = tr.copy()
        tr.loc[[4, 5], "frame"] = tr.loc[[5, 4], "frame"].to_numpy()
        return tr

    def truncated(tmp):
        f = _highd(tmp)
        _cut_mid_row(f.tracks, 30)
        return Expect(f.prefix, f.tracks, row=30, contains=("truncated",))

    def empty(tmp):
        f = _highd(tmp)
        f.tracks.write_bytes(b"")
        return Expect(f.prefix, f.tracks, contains=("empty file",))

    n_rows = len(highd_frames()[0])
    return {
        "missing-column": lambda t: Expect((f := _highd(t, tracks=lambda d: d.drop(columns=["xVelocity"]))).prefix, f.tracks, "xVelocity", contains=("missing column",)),
        "missing-column-meta": lambda t: Expect((f := _highd(t, meta=lambda d: d.drop(columns=["drivingDirection"]))).prefix, f.tracks_meta, "drivingDirection"),
        "missing-column-recording": lambda t: Expect((f := _highd(t, rec=lambda d: d.drop(columns=["lowerLaneMarkings"]))).prefix, f.recording_meta, "lowerLaneMarkings"),
        "text-in-number": lambda t: Expect((f := _highd(t, tracks=lambda d: _text(d, "x", 6, "fast"))).prefix, f.tracks, "x", 7, ("expected a number", "'fast'")),
        "fraction-in-int": lambda t: Expect((f := _highd(t, tracks=lambda d: _text(d, "frame", 2, "3.5"))).prefix, f.tracks, "frame", 3, ("integer",)),
        "nan": lambda t: Expect((f := _highd(t, tracks=lambda d: d.assign(y=d.y.where(d.index != 3, np.nan)))).prefix, f.tracks, "y", 4),
        "inf": lambda t: Expect((f := _highd(t, tracks=lambda d: d.assign(xVelocity=d.xVelocity.where(d.index != 4, np.inf)))).prefix, f.tracks, "xVelocity", 5, ("inf",)),
        "frames-not-increasing": lambda t: Expect((f := _highd(t, tracks=swap_frames)).prefix, f.tracks, "frame", 6, ("not increasing",)),
        "duplicated-frame": lambda t: Expect((f := _highd(t, tracks=lambda d: pd.concat([d.iloc[:10], d.iloc[9:]], ignore_index=True))).prefix, f.tracks, "id", 11, ("appears twice",)),
        "id-at-two-positions": lambda t: Expect((f := _highd(t, tracks=reused_id)).prefix, f.tracks, "id", n_rows + 1, ("appears twice in frame 50",)),
        "frame-gap": lambda t: Expect((f := _highd(t, tracks=lambda d: d.drop(index=19).reset_index(drop=True))).prefix, f.tracks, "frame", 20, ("gap",)),
        "truncated-csv": truncated,
        "empty-file": empty,
        "speed-in-feet": lambda t: Expect((f := _highd(t, tracks=lambda d: d.assign(xVelocity=d.xVelocity / FT))).prefix, f.tracks, "xVelocity", 1, ("implausible speed",)),
        "bad-lane-markings": lambda t: Expect((f := _highd(t, rec=lambda d: d.assign(upperLaneMarkings="8.5;x"))).prefix, f.recording_meta, "upperLaneMarkings", 1),
        "bad-direction": lambda t: Expect((f := _highd(t, meta=lambda d: d.assign(drivingDirection=d.drivingDirection.where(d.index != 2, 3)))).prefix, f.tracks_meta, "drivingDirection", 3),
        "id-missing-from-meta": lambda t: Expect((f := _highd(t, meta=lambda d: d[d.id != 5])).prefix, f.tracks, "id", contains=("no entry",)),
    }  # fmt: skip


# ==========================================================================================
# NGSIM
# ==========================================================================================


def _ngsim(tmp: Path, edit=None) -> Path:
    df = ngsim_frame()
    p = tmp / "trajectories.csv"
    (edit(df) if edit else df).to_csv(p, index=False)
    return p


def _ngsim_cases() -> dict[str, Callable[[Path], Expect]]:
    def reused_id(df):
        row = df[(df.Vehicle_ID == 11) & (df.Frame_ID == 130)].assign(Vehicle_ID=10)  # 10 is elsewhere in frame 130
        return pd.concat([df, row], ignore_index=True)

    def in_metres(df):
        df = df.copy()
        for c in ("Local_X", "Local_Y", "v_Length", "v_Width", "v_Vel", "v_Acc", "Space_Headway"):
            df[c] = df[c] * FT
        return df

    def truncated(tmp):
        p = _ngsim(tmp)
        _cut_mid_row(p, 75)
        return Expect(p, p, row=75, contains=("truncated",))

    def empty(tmp):
        p = tmp / "trajectories.csv"
        p.write_bytes(b"")
        return Expect(p, p, contains=("empty file",))

    n_rows = len(ngsim_frame())
    units = "units look wrong (feet vs metres?)"
    return {
        "missing-column": lambda t: Expect(p := _ngsim(t, lambda d: d.drop(columns=["Lane_ID"])), p, "Lane_ID", format="ngsim"),
        "text-in-number": lambda t: Expect(p := _ngsim(t, lambda d: _text(d, "Local_X", 7, "left")), p, "Local_X", 8, ("'left'",)),
        "nan": lambda t: Expect(p := _ngsim(t, lambda d: d.assign(v_Vel=d.v_Vel.where(d.index != 3, np.nan))), p, "v_Vel", 4),
        "inf": lambda t: Expect(p := _ngsim(t, lambda d: d.assign(Local_Y=d.Local_Y.where(d.index != 8, -np.inf))), p, "Local_Y", 9),
        "duplicated-frame": lambda t: Expect(p := _ngsim(t, lambda d: pd.concat([d.iloc[:12], d.iloc[11:]], ignore_index=True)), p, "Vehicle_ID", 13, ("appears twice",)),
        "id-at-two-positions": lambda t: Expect(p := _ngsim(t, reused_id), p, "Vehicle_ID", n_rows + 1, ("appears twice in frame 130",)),
        "truncated-csv": truncated,
        "empty-file": empty,
        "whole-file-in-metres": lambda t: Expect(p := _ngsim(t, in_metres), p, "v_Length", 1, (units, "already in metres")),
        "v_Vel-in-metres": lambda t: Expect(p := _ngsim(t, lambda d: d.assign(v_Vel=d.v_Vel * FT)), p, "v_Vel", contains=(units, "Local_Y")),
        "positions-in-inches": lambda t: Expect(p := _ngsim(t, lambda d: d.assign(Local_Y=d.Local_Y * 12.0)), p, "Local_Y", contains=(units,)),
        "speed-too-high": lambda t: Expect(p := _ngsim(t, lambda d: d.assign(v_Vel=d.v_Vel.where(d.index != 20, 400.0))), p, "v_Vel", 21, (units,)),
        "lane-zero": lambda t: Expect(p := _ngsim(t, lambda d: d.assign(Lane_ID=d.Lane_ID.where(d.index != 5, 0))), p, "Lane_ID", 6),
    }  # fmt: skip


# ==========================================================================================
# ScenarioNet
# ==========================================================================================


def _sn(tmp: Path, edit=None) -> Expect:
    sd = make_scenario("bad")
    if edit:
        edit(sd)
    folder = write_scenarionet(tmp / "sn", [sd])
    return Expect(folder, folder / scenario_file_name("bad"))


def _with(e: Expect, column=None, row=None, contains=()) -> Expect:
    e.column, e.row, e.contains = column, row, contains
    return e


def _state(sd, track="101"):
    return sd["tracks"][track]["state"]


def _sn_cases() -> dict[str, Callable[[Path], Expect]]:
    def set_(key, fn):
        def edit(sd):
            _state(sd)[key] = fn(_state(sd)[key])

        return edit

    def nan_heading(h):
        h = h.copy()
        h[10] = np.nan
        return h

    def inf_position(p):
        p = p.copy()
        p[3, 0] = np.inf
        return p

    def ts_back(sd):
        sd["metadata"]["ts"] = sd["metadata"]["ts"].copy()
        sd["metadata"]["ts"][30] = sd["metadata"]["ts"][29]

    def truncated(tmp):
        e = _sn(tmp)
        data = e.file.read_bytes()
        e.file.write_bytes(data[: len(data) // 2])
        return _with(e, contains=("truncated or corrupt pickle",))

    def truncated_summary(tmp):
        e = _sn(tmp)
        summary = e.read / "dataset_summary.pkl"
        summary.write_bytes(summary.read_bytes()[:20])
        e.file = summary
        return _with(e, contains=("truncated",))

    def empty(tmp):
        p = tmp / "scenario.pkl"
        p.write_bytes(b"")
        return Expect(p, p, contains=("empty file",))

    def listed_but_missing(tmp):
        folder = make_scenarionet(tmp / "sn", n_scenarios=2)
        victim = folder / scenario_file_name("sc1")
        victim.unlink()
        return Expect(folder, victim, contains=("missing",))

    w = "tracks[101].state"
    return {
        "missing-key": lambda t: _with(_sn(t, lambda sd: _state(sd).pop("velocity")), f"{w}.velocity", contains=("missing key",)),
        "missing-top-level-key": lambda t: _with(_sn(t, lambda sd: sd.pop("tracks")), "tracks"),
        "text-in-number": lambda t: _with(_sn(t, set_("position", lambda p: p.astype(str))), f"{w}.position", contains=("numeric",)),
        "nan": lambda t: _with(_sn(t, set_("heading", nan_heading)), f"{w}.heading", 10),
        "inf": lambda t: _with(_sn(t, set_("position", inf_position)), f"{w}.position", 3),
        "wrong-length": lambda t: _with(_sn(t, set_("velocity", lambda v: v[:-1])), f"{w}.velocity", contains=("shape",)),
        "time-not-increasing": lambda t: _with(_sn(t, ts_back), "metadata.ts", 30, ("not increasing",)),
        "speed-in-kmh": lambda t: _with(_sn(t, set_("velocity", lambda v: v * 3.6 * 1.5)), f"{w}.velocity", 0, ("implausible speed",)),
        "truncated-pickle": truncated,
        "truncated-summary": truncated_summary,
        "empty-file": empty,
        "listed-but-missing": listed_but_missing,
    }  # fmt: skip


# ==========================================================================================
# The project's own sim logs (Parquet)
# ==========================================================================================


def _simlog(tmp: Path, edit=None) -> Path:
    tracks = read_log(write_scenarionet(tmp / "src", [make_scenario("p")])).tracks
    p = tmp / "log.parquet"
    write_simlog(p, edit(tracks) if edit else tracks, 10.0)
    return p


def _simlog_cases() -> dict[str, Callable[[Path], Expect]]:
    def truncated(tmp):
        p = _simlog(tmp)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        return Expect(p, p, contains=("Parquet",))

    def empty(tmp):
        p = tmp / "log.parquet"
        p.write_bytes(b"")
        return Expect(p, p, contains=("empty file",))

    return {
        "truncated-parquet": truncated,
        "empty-file": empty,
        "nan": lambda t: Expect(p := _simlog(t, lambda d: d.assign(x_m=d.x_m.where(d.index != 5, np.nan))), p, "x_m", 6),
        "duplicated-frame": lambda t: Expect(p := _simlog(t, lambda d: pd.concat([d.iloc[:8], d.iloc[7:]], ignore_index=True)), p, "frame"),
    }  # fmt: skip


CASES = [
    pytest.param(build, id=f"{fmt}-{name}")
    for fmt, cases in (
        ("highd", _highd_cases()),
        ("ngsim", _ngsim_cases()),
        ("scenarionet", _sn_cases()),
        ("simlog", _simlog_cases()),
    )
    for name, build in cases.items()
]


@pytest.mark.parametrize("build", CASES)
def test_bad_input_gives_one_line_error(tmp_path, build):
    _check(build(tmp_path))


# ==========================================================================================
# Unknown formats and missing files
# ==========================================================================================


def test_unknown_file_lists_supported_formats(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\nworld\n")
    msg = _check(Expect(p, p, contains=("unrecognised log format",)))
    assert all(f in msg for f in supported_formats())


def test_unknown_format_name(tmp_path):
    p = _ngsim(tmp_path)
    msg = _check(Expect(p, p, contains=("unknown log format 'carla'",), format="carla"))
    assert all(f in msg for f in supported_formats())


@pytest.mark.parametrize("fmt", ["auto", "highd", "ngsim", "scenarionet", "simlog"])
def test_missing_file(tmp_path, fmt):
    p = tmp_path / "nowhere" / "log.csv"
    _check(Expect(p, p, contains=("no such file",), format=fmt))


@pytest.mark.parametrize("missing", ["tracksMeta", "recordingMeta"])
def test_a_highd_tracks_file_without_its_meta_files_names_the_missing_one(tmp_path, missing):
    f = _highd(tmp_path)
    gone = f.tracks.with_name(f.tracks.name.replace("tracks", missing))
    gone.unlink()
    _check(Expect(f.tracks, gone, contains=("no such file", "XX_tracksMeta.csv")))  # not "unrecognised log format"


def test_parquet_that_is_not_a_sim_log(tmp_path):
    p = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(p)
    _check(Expect(p, p, contains=("sim log",)))


def test_wrong_reader_for_the_file(tmp_path):
    # a highD tracks file forced through the NGSIM reader names the first missing NGSIM column
    f = _highd(tmp_path)
    with pytest.raises(LogError) as err:
        NgsimReader().read(f.tracks)
    assert err.value.column == "Vehicle_ID" and "\n" not in str(err.value)


def test_a_pickle_that_is_not_a_scenario(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps([1, 2, 3]))
    _check(Expect(p, p, contains=("expected a scenario dict",)))
