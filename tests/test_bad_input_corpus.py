"""A corpus of bad, faulty and tampered inputs against the real CLI (issue 15).

Every case starts from valid artefacts (a sim log, highD, NGSIM and ScenarioNet logs, a pairs file,
an actor, an ONNX export, a results table, a scenario file), breaks one thing and runs one command.
A case is clean when:

* the exit code is 2 and nothing escapes ``cli.main`` (no traceback);
* stderr's last line is ``drive-drail CMD: error: ...`` naming the file, key or flag at fault, and
  it is the only line (argparse's own flag errors keep their usage line above it);
* the command's output does not exist afterwards and every input file is byte-for-byte unchanged.

The cases run in-process (each costs what the command does before it refuses, not an interpreter
start); the resource bombs run in their own process so their time and peak memory can be bounded.
``pytest -s`` prints the figures per command.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from drive_drail import cli, spec
from drive_drail.deploy.export import export_policy
from drive_drail.logs.simlog import write_simlog
from drive_drail.models.policy import ActorConfig, DeterministicActor
from drive_drail.scenario import load_scenario

from log_factories import make_highd, make_ngsim, make_scenario, make_scenarionet
from pair_factories import sim_log

TRAIN = ["--scenario", "lane_change", "--sim", "batched", "--steps", "64", "--n-envs", "2", "--n-steps", "8", "--quiet"]


@dataclass
class Case:
    name: str
    command: str
    argv: list[str]
    names: str
    """A string the error line must contain: the path, key or flag at fault."""
    output: Path
    inputs: list[Path] = field(default_factory=list)
    flag: bool = False
    """An argparse-level flag error: its usage line may stand above the error line."""
    marker: Path | None = None
    """A file a code payload would create: it must not exist afterwards."""


@dataclass
class Base:
    root: Path
    simlog: Path
    pairs: Path
    highd: Path
    ngsim: Path
    sn: Path
    run: Path
    export: Path
    results: Path
    scenario: Path


def _run(argv: list[str]) -> tuple[int | None, str, BaseException | None]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(argv)
    except SystemExit as exc:  # argparse
        return exc.code, err.getvalue(), None
    except BaseException as exc:  # noqa: BLE001 (a traceback is what the corpus looks for)
        return None, err.getvalue(), exc
    return rc, err.getvalue(), None


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    root = tmp_path_factory.mktemp("corpus_base")
    log, _ = sim_log()
    simlog = root / "log.parquet"
    write_simlog(simlog, log.tracks, log.frame_rate_hz)
    pairs = root / "pairs.parquet"
    assert _run(["convert", str(simlog), "-o", str(pairs)])[0] == 0
    run = root / "run"
    DeterministicActor(ActorConfig(hidden_sizes=(16, 16))).save(run / "actor.pt")
    export_policy(run, root / "export", build_engine=False)
    results = root / "results"
    rc, err, exc = _run(["evaluate", "--policy", "constant", "--scenario", "stop", "--episodes", "1", "--workers", "1",
                         "--quiet", "-o", str(results)])
    assert rc == 0 and exc is None, err
    scenario = root / "stop.yaml"
    shutil.copy(load_scenario("stop").source, scenario)
    return Base(root, simlog, pairs, make_highd(root / "highd").tracks, make_ngsim(root / "ngsim" / "trajectories.csv"),
                make_scenarionet(root / "sn", n_scenarios=1), run, root / "export", results, scenario)


# ---------------------------------------------------------------------------------------------- mutations


BINARY_CORRUPTIONS = ("empty", "random bytes", "plain text", "a folder", "truncated", "zeroed tail")
TEXT_CORRUPTIONS = ("empty", "random bytes", "plain text", "a folder", "header only", "binary header")


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "random bytes":
        path.write_bytes(np.random.default_rng(len(data)).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif how == "plain text":
        path.write_text("this is not a driving log\n")
    elif how == "a folder":
        path.unlink()
        path.mkdir()
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed tail":
        path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    elif how == "header only":
        path.write_bytes(data.split(b"\n", 1)[0] + b"\n")
    elif how == "binary header":
        path.write_bytes(bytes(range(1, 60)).replace(b"\n", b"\x0b") + data[data.index(b"\n"):])
    else:
        raise AssertionError(how)


def _edit_csv(path: Path, column: str, how: str) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if how == "dropped":
        df = df.drop(columns=[column])
    else:
        df.loc[len(df) // 2, column] = {"text": "abc", "blank": "", "inf": "inf", "huge": "1e308"}[how]
    df.to_csv(path, index=False)


def _edit_parquet_metadata(path: Path, edit: Callable[[dict], object]) -> None:
    table = pq.read_table(path)
    md = dict(table.schema.metadata)
    info = json.loads(md[b"drive_drail"])
    new = edit(info)
    md[b"drive_drail"] = new if isinstance(new, bytes) else json.dumps(info if new is None else new).encode()
    pq.write_table(table.replace_schema_metadata(md), path)


def _edit_parquet_column(path: Path, column: str, how: str) -> None:
    table = pq.read_table(path)
    df = table.to_pandas()
    if how == "dropped":
        df = df.drop(columns=[column])
    else:
        df.loc[df.index[len(df) // 2], column] = {"nan": np.nan, "inf": np.inf}[how]
    pq.write_table(pa_table(df, table.schema.metadata), path)


def pa_table(df: pd.DataFrame, metadata: dict):
    import pyarrow as pa

    t = pa.Table.from_pandas(df, preserve_index=False)
    return t.replace_schema_metadata(metadata)


def _sn_file(folder: Path) -> Path:
    return next(p for p in folder.glob("*.pkl") if not p.name.startswith("dataset_"))


def _edit_scenario(folder: Path, edit: Callable[[dict], None]) -> None:
    path = _sn_file(folder)
    sd = pickle.loads(path.read_bytes())
    edit(sd)
    path.write_bytes(pickle.dumps(sd))


def _first_vehicle(sd: dict) -> dict:
    return next(t for t in sd["tracks"].values() if t["type"] == "VEHICLE")


def _nested(depth: int) -> list:
    nest: list = [0.0]
    for _ in range(depth):
        nest = [nest, nest]  # pickled by reference: a few bytes that unfold into 2^depth elements
    return nest


SN_EDITS: dict[str, tuple[Callable[[dict], None], str]] = {
    "no length": (lambda sd: sd.pop("length"), "length"),
    "length text": (lambda sd: sd.update(length="60"), "length"),
    "length negative": (lambda sd: sd.update(length=-1), "length"),
    "length nested": (lambda sd: sd.update(length=_nested(12)), "length"),
    "no metadata": (lambda sd: sd.pop("metadata"), "metadata"),
    "no ts": (lambda sd: sd["metadata"].pop("ts"), "metadata.ts"),
    "ts text": (lambda sd: sd["metadata"].update(ts="0.1"), "metadata.ts"),
    "ts nested": (lambda sd: sd["metadata"].update(ts=_nested(22)), "metadata.ts"),
    "ts short": (lambda sd: sd["metadata"].update(ts=np.asarray(sd["metadata"]["ts"])[:-5]), "metadata.ts"),
    "ts NaN": (lambda sd: sd["metadata"]["ts"].__setitem__(3, np.nan), "metadata.ts"),
    "ts backwards": (lambda sd: sd["metadata"]["ts"].__setitem__(3, -1.0), "metadata.ts"),
    "no tracks": (lambda sd: sd.pop("tracks"), "tracks"),
    "tracks a list": (lambda sd: sd.update(tracks=[1, 2]), "tracks"),
    "no state": (lambda sd: _first_vehicle(sd).pop("state"), "state"),
    "no position": (lambda sd: _first_vehicle(sd)["state"].pop("position"), "position"),
    "position text": (lambda sd: _first_vehicle(sd)["state"].update(position="here"), "position"),
    "no velocity": (lambda sd: _first_vehicle(sd)["state"].pop("velocity"), "velocity"),
    "no heading": (lambda sd: _first_vehicle(sd)["state"].pop("heading"), "heading"),
    "ragged heading": (lambda sd: _first_vehicle(sd)["state"].update(
        heading=[*map(float, _first_vehicle(sd)["state"]["heading"][:3]), [1.0, 2.0], *map(float, _first_vehicle(sd)["state"]["heading"][4:])]), "heading"),
    "heading NaN": (lambda sd: _first_vehicle(sd)["state"]["heading"].__setitem__(5, np.nan), "heading"),
    "no valid": (lambda sd: _first_vehicle(sd)["state"].pop("valid"), "valid"),
    "velocity 3 wide short": (lambda sd: _first_vehicle(sd)["state"].update(velocity=np.zeros((10, 2))), "velocity"),
}


def _export_edit(field_name: str, value: object) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "manifest.json"
        data = json.loads(path.read_text())
        if callable(value):
            value(data)
        else:
            data[field_name] = value
        path.write_text(json.dumps(data))

    return edit


# ---------------------------------------------------------------------------------------------- the corpus


def build_corpus(base: Base, root: Path) -> list[tuple[Case, Callable[[], None]]]:
    """``(case, prepare)`` pairs; ``prepare`` copies what the case needs into its folder and breaks it."""
    cases: list[tuple[Case, Callable[[], None]]] = []
    counter = iter(range(10**6))

    def folder() -> Path:
        d = root / f"c{next(counter):03d}"
        d.mkdir()
        return d

    def add(name, command, argv, names, output, inputs, prepare, flag=False):
        cases.append((Case(name, command, [command, *argv], str(names), output, inputs, flag), prepare))

    def copy(src: Path, dst: Path) -> Path:
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        return dst

    # 1. Whole files broken: every kind of file a command reads.
    sn_name = _sn_file(base.sn).name
    log_files = {  # kind: (what convert reads, the file broken), relative to the case folder
        "simlog": ("log.parquet", "log.parquet"), "highd": ("01_tracks.csv", "01_tracks.csv"),
        "highd-meta": ("01_tracks.csv", "01_tracksMeta.csv"), "highd-recording": ("01_tracks.csv", "01_recordingMeta.csv"),
        "ngsim": ("trajectories.csv", "trajectories.csv"), "scenarionet": ("sn", f"sn/{sn_name}"),
        "scenarionet-summary": ("sn", "sn/dataset_summary.pkl"),
    }

    def place(kind: str, d: Path) -> None:
        if kind == "simlog":
            copy(base.simlog, d / "log.parquet")
        elif kind.startswith("highd"):
            for f in base.highd.parent.glob("01_*"):
                copy(f, d / f.name)
        elif kind == "ngsim":
            copy(base.ngsim, d / "trajectories.csv")
        else:
            copy(base.sn, d / "sn")

    for kind, (read, broken) in log_files.items():
        for how in BINARY_CORRUPTIONS if kind in ("simlog", "scenarionet", "scenarionet-summary") else TEXT_CORRUPTIONS:
            d = folder()
            fmt = ["--format", "highd"] if kind.startswith("highd") else ["--format", "ngsim"] if kind == "ngsim" else []
            add(f"{kind} {how}", "convert", [str(d / read), *fmt, "-o", str(d / "pairs.parquet")], d / broken,
                d / "pairs.parquet", [], lambda kind=kind, d=d, broken=broken, how=how: (place(kind, d), _corrupt(d / broken, how)))

    file_commands = [
        ("pairs", "train", lambda d: [*TRAIN, "--demos", str(d / "pairs.parquet"), "-o", str(d / "out")], "pairs.parquet", True),
        ("pairs", "summary", lambda d: [str(d / "pairs.parquet")], "pairs.parquet", True),
        ("actor", "evaluate", lambda d: ["--policy", str(d / "run" / "actor.pt"), "--scenario", "stop", "--episodes", "1",
                                         "--workers", "1", "-o", str(d / "out")], "run/actor.pt", True),
        ("actor", "export", lambda d: [str(d / "run"), "-o", str(d / "out")], "run/actor.pt", True),
        ("export", "evaluate", lambda d: ["--policy", str(d / "export"), "--scenario", "stop", "--episodes", "1",
                                          "--workers", "1", "-o", str(d / "out")], "export/manifest.json", False),
        ("export-onnx", "evaluate", lambda d: ["--policy", str(d / "export"), "--scenario", "stop", "--episodes", "1",
                                               "--workers", "1", "-o", str(d / "out")], "export/policy.onnx", True),
        ("results", "report", lambda d: [str(d / "results"), "-o", str(d / "out")], "results/results.parquet", True),
        ("scenario", "evaluate", lambda d: ["--policy", "constant", "--scenario", str(d / "stop.yaml"), "--episodes", "1",
                                            "--workers", "1", "-o", str(d / "out")], "stop.yaml", False),
    ]
    sources = {"pairs": base.pairs, "actor": base.run, "export": base.export, "export-onnx": base.export,
               "results": base.results, "scenario": base.scenario}
    for kind, command, argv, broken_rel, binary in file_commands:
        src = sources[kind]
        for how in BINARY_CORRUPTIONS if binary else TEXT_CORRUPTIONS:
            d = folder()
            add(f"{kind} {how}", command, argv(d), d / broken_rel, d / "out", [],
                lambda src=src, d=d, broken_rel=broken_rel, how=how: (copy(src, d / src.name), _corrupt(d / broken_rel, how)))

    # 2. Columns and cells of the CSV logs.
    csv_columns = {
        "01_tracks.csv": ["frame", "id", "x", "y", "width", "height", "xVelocity", "yVelocity"],
        "01_tracksMeta.csv": ["id", "drivingDirection"],
        "01_recordingMeta.csv": ["id", "frameRate", "upperLaneMarkings", "lowerLaneMarkings"],
    }
    for file_name, columns in csv_columns.items():
        for column in columns:
            for how in ("dropped", "text", "blank", "inf"):
                d = folder()

                def prepare(d=d, file_name=file_name, column=column, how=how):
                    for f in base.highd.parent.glob("01_*"):
                        copy(f, d / f.name)
                    _edit_csv(d / file_name, column, how)

                add(f"highD {file_name} {column} {how}", "convert", [str(d / "01_tracks.csv"), "-o", str(d / "p.parquet")],
                    f"column '{column}'", d / "p.parquet", [], prepare)
    for column, value in (("frameRate", "1e300"), ("frameRate", "-25"), ("frameRate", "0"), ("id", "1e300"), ("x", "1e308")):
        d = folder()
        file_name = "01_recordingMeta.csv" if column in ("frameRate", "id") else "01_tracks.csv"

        # A row in the middle of the tracks file (the reader sorts tracks: the error must name the file's row).
        row = 0 if file_name == "01_recordingMeta.csv" else len(pd.read_csv(base.highd)) // 2 + 3

        def prepare(d=d, file_name=file_name, column=column, value=value, row=row):
            for f in base.highd.parent.glob("01_*"):
                copy(f, d / f.name)
            df = pd.read_csv(d / file_name, dtype=str)
            df.loc[row, column] = value
            df.to_csv(d / file_name, index=False)

        add(f"highD {column}={value}", "convert", [str(d / "01_tracks.csv"), "-o", str(d / "p.parquet")],
            f"column '{column}', row {row + 1}", d / "p.parquet", [], prepare)
    for column in ["Vehicle_ID", "Frame_ID", "Local_X", "Local_Y", "v_Length", "v_Width", "v_Vel", "Lane_ID"]:
        for how in ("dropped", "text", "blank", "inf"):
            d = folder()

            def prepare(d=d, column=column, how=how):
                copy(base.ngsim, d / "trajectories.csv")
                _edit_csv(d / "trajectories.csv", column, how)

            add(f"NGSIM {column} {how}", "convert", [str(d / "trajectories.csv"), "--format", "ngsim", "-o", str(d / "p.parquet")],
                f"column '{column}'", d / "p.parquet", [], prepare)

    # 3. Sim-log columns, cells and metadata.
    for column in ["scene_id", "track_id", "frame", "x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m",
                   "lane_index", "lane_count", "lane_offset_m", "lane_heading_rad", "on_ramp", "expert", "t_s"]:
        hows = ("dropped", "nan", "inf") if column in ("x_m", "y_m", "vx_mps", "vy_mps", "heading_rad", "length_m", "width_m") else ("dropped",)
        for how in hows:
            d = folder()

            def prepare(d=d, column=column, how=how):
                copy(base.simlog, d / "log.parquet")
                _edit_parquet_column(d / "log.parquet", column, how)

            add(f"simlog {column} {how}", "convert", [str(d / "log.parquet"), "-o", str(d / "p.parquet")],
                f"column '{column}'", d / "p.parquet", [], prepare)
    simlog_meta = {
        "metadata not JSON": (lambda info: b"{not json", "metadata"),
        "metadata a list": (lambda info: [1, 2], "metadata"),
        "no frame rate": (lambda info: info.pop("frame_rate_hz") and None, "frame_rate_hz"),
        "frame rate text": (lambda info: info.update(frame_rate_hz="fast"), "frame_rate_hz"),
        "frame rate negative": (lambda info: info.update(frame_rate_hz=-10), "frame_rate_hz"),
        "frame rate 1e300": (lambda info: info.update(frame_rate_hz=1e300), "frame_rate_hz"),
        "track format 9.9": (lambda info: info.update(track_format_version="9.9"), "track_format_version"),
        "ego id text": (lambda info: info.update(ego_track_id="zero"), "ego_track_id"),
    }
    for name, (edit, key) in simlog_meta.items():
        d = folder()

        def prepare(d=d, edit=edit):
            copy(base.simlog, d / "log.parquet")
            _edit_parquet_metadata(d / "log.parquet", edit)

        add(f"simlog {name}", "convert", [str(d / "log.parquet"), "--format", "simlog", "-o", str(d / "p.parquet")],
            key, d / "p.parquet", [], prepare)

    # 4. Pairs files: columns, cells and metadata.
    for column in [*spec.OBS_NAMES[:3], spec.OBS_NAMES[-1], *spec.ACTION_NAMES, "meta_action"]:
        for how in (("dropped", "nan") if column != "meta_action" else ("dropped",)):
            d = folder()

            def prepare(d=d, column=column, how=how):
                copy(base.pairs, d / "pairs.parquet")
                _edit_parquet_column(d / "pairs.parquet", column, how)

            add(f"pairs {column} {how}", "train", [*TRAIN, "--demos", str(d / "pairs.parquet"), "-o", str(d / "out")],
                f"column '{column}'", d / "out", [], prepare)
    pairs_meta = {
        "metadata not JSON": (lambda info: b"[[[", "metadata"),
        "metadata a number": (lambda info: 5, "metadata"),
        "stale spec": (lambda info: info.update(spec_version="0.1"), "spec version"),
        "foreign kind": (lambda info: info.update(kind="drive-drail-log"), "kind"),
        "other action rate": (lambda info: info.update(action_hz=2.0), "Hz"),
    }
    for name, (edit, key) in pairs_meta.items():
        d = folder()

        def prepare(d=d, edit=edit):
            copy(base.pairs, d / "pairs.parquet")
            _edit_parquet_metadata(d / "pairs.parquet", edit)

        add(f"pairs {name}", "train", [*TRAIN, "--demos", str(d / "pairs.parquet"), "-o", str(d / "out")],
            key, d / "out", [], prepare)

    # 5. ScenarioNet keys, types and shapes.
    for name, (edit, key) in SN_EDITS.items():
        d = folder()

        def prepare(d=d, edit=edit):
            copy(base.sn, d / "sn")
            _edit_scenario(d / "sn", edit)

        add(f"scenarionet {name}", "convert", [str(d / "sn"), "-o", str(d / "p.parquet")], key, d / "p.parquet", [], prepare)

    # 6. Flags.
    bad_numbers = {"zero": "0", "negative": "-1", "nan": "nan", "text": "x"}
    train_flags = ["--steps", "--n-envs", "--n-steps", "--ppo-batch", "--ppo-epochs", "--ppo-lr", "--disc-epochs",
                   "--disc-batch", "--bc-epochs", "--reward-samples", "--torch-threads", "--checkpoint-interval-s", "--bc-coef"]
    for flag in train_flags:
        for how, value in bad_numbers.items():
            if how == "zero" and flag in ("--torch-threads", "--checkpoint-interval-s", "--bc-coef"):
                continue  # 0 is meaningful there (auto threads, checkpoint every iteration, plain PPO)
            d = folder()
            argv = [*[a for a in TRAIN if a != flag], "--demos", str(base.pairs), flag, value, "-o", str(d / "out")]
            if flag in TRAIN:  # drop the default's value too
                i = TRAIN.index(flag)
                argv = [*TRAIN[:i], *TRAIN[i + 2:], "--demos", str(base.pairs), flag, value, "-o", str(d / "out")]
            add(f"train {flag} {how}", "train", argv, flag, d / "out", [base.pairs], lambda: None, flag=how == "text" or (how == "nan" and flag not in ("--ppo-lr", "--checkpoint-interval-s", "--bc-coef")))
    for flag in ("--episodes", "--workers"):
        for how, value in bad_numbers.items():
            if how == "nan":
                continue
            d = folder()
            add(f"evaluate {flag} {how}", "evaluate", ["--policy", "constant", "--scenario", "stop", flag, value, "-o", str(d / "out")],
                flag, d / "out", [], lambda: None, flag=how == "text")
    for flag, value, flag_error in (("--action-hz", "0", False), ("--action-hz", "-5", False), ("--action-hz", "nan", False),
                                    ("--action-hz", "inf", False), ("--action-hz", "x", True), ("--smooth-s", "-1", False),
                                    ("--smooth-s", "nan", False)):
        d = folder()
        add(f"convert {flag} {value}", "convert", [str(base.simlog), flag, value, "-o", str(d / "p.parquet")], flag,
            d / "p.parquet", [base.simlog], lambda: None, flag=flag_error)
    for value in ("0", "8:4:x", "4:2:1", "-1", "1:2"):
        d = folder()
        add(f"export --batch {value}", "export", [str(base.run), "--batch", value, "-o", str(d / "out")], "batch", d / "out",
            [base.run / "actor.pt"], lambda: None)

    # 7. Tampered exports (the runtime loader behind evaluate).
    def flip_onnx(folder_: Path) -> None:
        data = bytearray((folder_ / "policy.onnx").read_bytes())
        data[-100] ^= 1
        (folder_ / "policy.onnx").write_bytes(bytes(data))

    export_edits: dict[str, tuple[Callable[[Path], None], str]] = {
        "onnx bit flip": (flip_onnx, "policy.onnx"),
        "manifest gone": (lambda f: (f / "manifest.json").unlink(), "manifest.json"),
        "unknown field": (_export_edit("extra", 1), "extra"),
        "missing field": (_export_edit("", lambda m: m.pop("opset")), "opset"),
        "format 0": (_export_edit("format", "drive_drail.deploy.manifest/0"), "format"),
        "spec 0.9": (_export_edit("spec_version", "0.9"), "spec_version"),
        "obs dim": (_export_edit("", lambda m: m["inputs"][0].update(shape=["batch", 3])), "inputs"),
        "onnxruntime 99": (_export_edit("", lambda m: m["versions"].update(onnxruntime="99.0")), "versions.onnxruntime"),
        "drive_drail 9.9": (_export_edit("", lambda m: m["versions"].update(drive_drail="9.9.0")), "versions.drive_drail"),
        "onnx version text": (_export_edit("", lambda m: m["versions"].update(onnx="latest")), "versions.onnx"),
        "no artifact entry": (_export_edit("", lambda m: m["artifacts"].pop("policy.onnx")), "artifacts"),
    }
    for name, value in [("precision", 32), ("opset", "18"), ("batch", []), ("inputs", 5), ("outputs", {}), ("actor", "a"),
                        ("artifacts", []), ("versions", "1"), ("parity", 0), ("tensorrt", None), ("exported_utc", 0),
                        ("spec_version", 2.0), ("spec", []), ("format", None)]:
        export_edits[f"{name} wrong type"] = (_export_edit(name, value), name)
    for name, (edit, key) in export_edits.items():
        d = folder()

        def prepare(d=d, edit=edit):
            copy(base.export, d / "export")
            edit(d / "export")

        add(f"export {name}", "evaluate", ["--policy", str(d / "export"), "--scenario", "stop", "--episodes", "1", "--workers", "1",
                                           "-o", str(d / "out")], key, d / "out", [], prepare)

    # 8. Scenario files.
    scenario_edits = {
        "unknown key": (lambda s: s.update(colour="red"), "colour"),
        "simulator": (lambda s: s.update(simulator="carla"), "simulator"),
        "env id": (lambda s: s.update(env_id="highway-v99"), "env_id"),
        "task": (lambda s: s.update(task="park"), "task"),
        "policy rate text": (lambda s: s.update(policy_frequency_hz="five"), "policy_frequency_hz"),
        "policy rate negative": (lambda s: s.update(policy_frequency_hz=-5), "policy_frequency_hz"),
        "sim rate not a multiple": (lambda s: s.update(simulation_frequency_hz=7), "simulation_frequency_hz"),
        "episode zero": (lambda s: s.update(episode_seconds=0), "episode_seconds"),
        "seeds overlap": (lambda s: s.update(eval_seeds=dict(s["train_seeds"])), "eval_seeds"),
        "env_config unknown": (lambda s: s["env_config"].update(lanes=3), "env_config.lanes"),
        "env_config type": (lambda s: s["env_config"].update(lanes_count="two"), "env_config.lanes_count"),
        "env_config bool for number": (lambda s: s["env_config"].update(lanes_count=True), "env_config.lanes_count"),
        "split reserved": (lambda s: s.setdefault("splits", {}).update(eval={"lanes_count": 2}), "splits.eval"),
        "split type": (lambda s: s.setdefault("splits", {}).update(dense=[1, 2]), "splits.dense"),
        "success unknown": (lambda s: s["success"].update(fast=True), "success.fast"),
        "training unknown": (lambda s: s.update(training={"lr": 1}), "training.lr"),
        "not a mapping": (lambda s: s.clear() or s.update({"__list__": True}), "stop.yaml"),
    }
    for name, (edit, key) in scenario_edits.items():
        d = folder()

        def prepare(d=d, edit=edit):
            data = yaml.safe_load(base.scenario.read_text())
            edit(data)
            text = "- a\n- list\n" if data.get("__list__") else yaml.safe_dump(data)
            (d / "stop.yaml").write_text(text)

        add(f"scenario {name}", "evaluate", ["--policy", "constant", "--scenario", str(d / "stop.yaml"), "--episodes", "1",
                                             "--workers", "1", "-o", str(d / "out")], key, d / "out", [], prepare)

    # 9. Outputs that would destroy or half-write something.
    d = folder()
    add("convert onto its input", "convert", [str(d / "log.parquet"), "-o", str(d / "log.parquet")], "log.parquet",
        d / "never", [d / "log.parquet"], lambda d=d: copy(base.simlog, d / "log.parquet"))
    d = folder()
    add("convert onto a file of its input folder", "convert", [str(d / "sn"), "-o", str(d / "sn" / sn_name)], sn_name,
        d / "never", [d / "sn"], lambda d=d: copy(base.sn, d / "sn"))
    for command, argv in (("evaluate", ["--policy", "constant", "--scenario", "stop", "--episodes", "1"]),
                          ("export", [str(base.run)]), ("report", [str(base.results)])):
        d = folder()
        add(f"{command} -o a file", command, [*argv, "-o", str(d / "taken")], "taken", d / "never", [d / "taken"],
            lambda d=d: (d / "taken").write_text("keep me\n"))

    # 10. Closed-loop replay of a ScenarioNet folder: everything is refused before MetaDrive starts.
    replay = lambda d, *extra: [str(d / "sn"), "--policy", str(base.run), *extra, "-o", str(d / "replay.csv")]  # noqa: E731
    replay_edits: dict[str, tuple[Callable[[Path], None], str]] = {
        "folder missing": (lambda d: None, "sn"),
        "folder empty": (lambda d: (d / "sn").mkdir(), "sn"),
        "no sdc_id": (lambda d: (copy(base.sn, d / "sn"), _edit_scenario(d / "sn", lambda sd: sd["metadata"].pop("sdc_id"))),
                      "metadata.sdc_id"),
        "sdc_id not a track": (lambda d: (copy(base.sn, d / "sn"),
                                          _edit_scenario(d / "sn", lambda sd: sd["metadata"].update(sdc_id="ghost"))),
                               "metadata.sdc_id"),
    }
    for how in BINARY_CORRUPTIONS:
        replay_edits[f"scenario {how}"] = (lambda d, how=how: (copy(base.sn, d / "sn"), _corrupt(d / "sn" / sn_name, how)),
                                           sn_name)
        replay_edits[f"summary {how}"] = (lambda d, how=how: (copy(base.sn, d / "sn"),
                                                              _corrupt(d / "sn" / "dataset_summary.pkl", how)),
                                          "dataset_summary.pkl")
    for name, (edit, key) in replay_edits.items():
        d = folder()
        add(f"replay {name}", "replay", replay(d), key, d / "replay.csv", [base.run], lambda d=d, edit=edit: edit(d))
    for how, value in {"zero": "0", "negative": "-3", "text": "x"}.items():
        d = folder()
        add(f"replay --max-steps {how}", "replay", replay(d, "--max-steps", value), "--max-steps", d / "replay.csv",
            [base.run], lambda d=d: copy(base.sn, d / "sn"), flag=how == "text")
    for name, policy, key in (("policy missing", "gone", "gone"), ("policy garbage", "run/actor.pt", "actor.pt")):
        d = folder()
        add(f"replay {name}", "replay", [str(d / "sn"), "--policy", str(d / policy), "-o", str(d / "replay.csv")], key,
            d / "replay.csv", [], lambda d=d: (copy(base.sn, d / "sn"), copy(base.run, d / "run"),
                                                 _corrupt(d / "run" / "actor.pt", "random bytes")))
    d = folder()
    add("replay -o onto its scenario", "replay", [str(d / "sn"), "--policy", str(base.run), "-o", str(d / "sn" / sn_name)],
        sn_name, d / "never", [base.run], lambda d=d: copy(base.sn, d / "sn"))
    d = folder()
    add("replay -o a folder", "replay", [str(d / "sn"), "--policy", str(base.run), "-o", str(d / "taken")], "taken",
        d / "never", [base.run], lambda d=d: (copy(base.sn, d / "sn"), (d / "taken").mkdir()))

    # 11. Files that run code when unpickled: every loader refuses them and nothing runs (the case fails if
    # its marker file appears).
    payload = lambda marker: _RunsShell(marker)  # noqa: E731
    for name, target, argv_of in (
        ("scenarionet scenario", f"sn/{sn_name}", lambda d: ["convert", str(d / "sn"), "-o", str(d / "p.parquet")]),
        ("scenarionet summary", "sn/dataset_summary.pkl", lambda d: ["convert", str(d / "sn"), "-o", str(d / "p.parquet")]),
        ("replay scenario", f"sn/{sn_name}", lambda d: ["replay", *replay(d)]),
    ):
        d = folder()

        def prepare(d=d, target=target):
            copy(base.sn, d / "sn")
            with open(d / target, "wb") as f:
                pickle.dump({"metadata": payload(d / "pwned"), "length": 1}, f)

        argv = argv_of(d)
        add(f"code payload in {name}", argv[0], argv[1:], Path(target).name,
            d / ("p.parquet" if argv[0] == "convert" else "replay.csv"), [], prepare)
        cases[-1][0].marker = d / "pwned"
    for victim in ("actor.pt",):
        d = folder()

        def prepare(d=d, victim=victim):
            copy(base.run, d / "run")
            torch.save({"config": payload(d / "pwned")}, d / "run" / victim)

        add(f"code payload in {victim}", "evaluate", ["--policy", str(d / "run" / victim), "--scenario", "stop",
                                                       "--episodes", "1", "--workers", "1", "-o", str(d / "out")],
            victim, d / "out", [], prepare)
        cases[-1][0].marker = d / "pwned"
    return cases


class _RunsShell:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def test_every_case_of_the_corpus_ends_cleanly(base, tmp_path):
    corpus = build_corpus(base, tmp_path)
    assert len(corpus) >= 250, len(corpus)
    failures, by_command, slow = [], Counter(), []
    for case, prepare in corpus:
        prepare()
        # Everything in the case's folder (its broken inputs) and the base files it reads must stay as they are.
        watched = _digest([*case.inputs, *(p for p in case.output.parent.iterdir() if p != case.output)])
        start = time.perf_counter()
        rc, err, exc = _run(case.argv)
        took = time.perf_counter() - start
        lines = [line for line in err.splitlines() if line.strip()]
        problems = []
        if exc is not None:
            problems.append(f"raised {type(exc).__name__}: {str(exc)[:200]}")
        elif rc != 2:
            problems.append(f"exit code {rc}")
        if lines:
            last = lines[-1]
            if not last.startswith(f"drive-drail {case.command}: error: ") and not (case.flag and "error:" in last):
                problems.append(f"last line is not an error line: {last[:200]!r}")
            if case.names not in last:
                problems.append(f"error line does not name {case.names!r}: {last[:300]!r}")
            if len(lines) > 1 and not case.flag:
                problems.append(f"{len(lines)} lines on stderr: {err[-400:]!r}")
        elif exc is None:
            problems.append("nothing on stderr")
        if "Traceback" in err:
            problems.append("a traceback on stderr")
        if case.output.exists():
            problems.append(f"output {case.output.name} left behind")
        if case.marker is not None and case.marker.exists():
            problems.append("CODE RAN: the payload's marker file exists")
        if _digest([Path(f) for f in watched if Path(f).exists()]) != watched:
            problems.append("an input changed or vanished")
        if took > 10:
            slow.append((case.name, round(took, 1)))
        by_command[(case.command, not problems)] += 1
        if problems:
            failures.append(f"{case.name} ({' '.join(case.argv[:1])}): " + "; ".join(problems))
    commands = sorted({c for c, _ in by_command})
    print("\ncorpus figures (command: clean / tried):")
    for c in commands:
        print(f"  {c}: {by_command[(c, True)]} / {by_command[(c, True)] + by_command[(c, False)]}")
    print(f"  all: {len(corpus) - len(failures)} / {len(corpus)}; slower than 10 s: {slow}")
    assert not failures and not slow, f"{len(failures)} of {len(corpus)} cases not clean:\n" + "\n".join(failures) + f"\nslow: {slow}"


BOMBS = {
    "declared 2^27 elements": lambda: pickle.dumps({"length": 1, "metadata": {"ts": _Bomb()}}, protocol=2),
    "nested list as ts": lambda: pickle.dumps({"length": 60, "metadata": {"ts": _nested(26)}}),
    "nested list as length": lambda: pickle.dumps({"length": _nested(24)}),
}


class _Bomb:
    def __reduce__(self):
        return (np.ndarray, ((2**27,), np.int8))  # 128 MB declared by a 60-byte pickle


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_small_resource_bombs_are_refused_within_10_s_and_1_gb(bomb, tmp_path):
    folder = tmp_path / "sn"
    folder.mkdir()
    (folder / "bomb.pkl").write_bytes(BOMBS[bomb]())
    assert (folder / "bomb.pkl").stat().st_size < 10_000_000
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "drive_drail.cli", "convert", str(folder), "-o", str(tmp_path / "p.parquet")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 2, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and "bomb.pkl" in err, err[-2000:]
    assert took < 10, took
    assert usage.ru_maxrss * 1024 < 2**30, f"peak RSS {usage.ru_maxrss / 1024:.0f} MB"
    assert not (tmp_path / "p.parquet").exists()
