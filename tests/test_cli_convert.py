"""`drive-drail convert` end to end through the real console script: good logs and bad ones."""

import subprocess
import sys

import pandas as pd
import pytest

from drive_drail import spec
from drive_drail.pairs.storage import read_pairs

from log_factories import make_highd, make_ngsim, make_scenarionet
from terminal import stderr_on_a_terminal


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "drive_drail.cli", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", ["highd", "ngsim", "scenarionet"])
def test_convert_each_format_writes_pairs_and_summary(tmp_path, fmt):
    if fmt == "highd":
        src = make_highd(tmp_path / "highd").tracks
    elif fmt == "ngsim":
        src = make_ngsim(tmp_path / "trajectories-0750am-0805am.csv")
    else:
        src = make_scenarionet(tmp_path / "sn")
    out = tmp_path / "pairs.parquet"
    proc = run_cli("convert", src, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "pairs dataset" in proc.stdout and "manoeuvres" in proc.stdout
    pairs, meta = read_pairs(out)
    assert meta["format"] == fmt and len(pairs) > 10
    assert pairs[list(spec.OBS_NAMES)].notna().all().all()
    assert len(pd.read_parquet(out)) == len(pairs)


def test_convert_shows_its_stages_on_a_terminal(tmp_path):
    """On a terminal a bar names each stage; piped (above), stderr holds nothing but errors."""
    src = make_highd(tmp_path / "highd").tracks
    rc, text = stderr_on_a_terminal([sys.executable, "-m", "drive_drail.cli", "convert", str(src), "-o", str(tmp_path / "p.parquet")])
    assert rc == 0
    assert "3/3" in text and "write p.parquet" in text and "stage" in text


def _highd_with(tmp_path, edit):
    files = make_highd(tmp_path / "h")
    df = pd.read_csv(files.tracks)
    df = edit(df)
    df.to_csv(files.tracks, index=False)
    return files.tracks


BAD = {
    "missing column": (lambda df: df.drop(columns=["xVelocity"]), "xVelocity"),
    "wrong type": (lambda df: df.assign(y=df["y"].astype(object).where(df.index != 5, "abc")), "'y'"),
    "nan": (lambda df: df.assign(x=df["x"].where(df.index != 7, float("nan"))), "'x'"),
    "duplicated frame": (lambda df: pd.concat([df.iloc[:4], df.iloc[3:4], df.iloc[4:]]), "frame"),
    "feet not metres": (lambda df: df.assign(xVelocity=df["xVelocity"] * 3.28084 * 3.0), "xVelocity"),
    "overflows float32": (lambda df: df.assign(x=df["x"] + 1e300), "'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, case):
    edit, column = BAD[case]
    src = _highd_with(tmp_path, edit)
    out = tmp_path / "out" / "pairs.parquet"
    proc = run_cli("convert", src, "-o", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(src) in lines[0] and column in lines[0]
    assert not out.exists()
    leftovers = list(out.parent.iterdir()) if out.parent.exists() else []
    assert leftovers == []  # no partial or temp file


def test_unknown_format_and_empty_file(tmp_path):
    weird = tmp_path / "log.txt"
    weird.write_text("hello\n")
    proc = run_cli("convert", weird, "-o", tmp_path / "p.parquet")
    assert proc.returncode == 2 and "log.txt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    empty = tmp_path / "01_tracks.csv"
    empty.write_text("")
    proc = run_cli("convert", empty, "-o", tmp_path / "p.parquet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_every_command_has_help():
    for cmd in ["convert", "summary", "record", "train", "evaluate", "replay", "report", "export", "scenarios"]:
        proc = run_cli(cmd, "--help")
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), cmd


@pytest.mark.parametrize("flags, says", [
    (["--action-hz", "0"], "--action-hz"), (["--action-hz", "nan"], "--action-hz"), (["--smooth-s", "-1"], "--smooth-s"),
])
def test_nonsense_convert_flags_are_refused_before_any_work(tmp_path, flags, says):
    src = make_highd(tmp_path / "highd").tracks
    out = tmp_path / "pairs.parquet"
    proc = run_cli("convert", src, "-o", out, *flags)
    assert proc.returncode == 2 and not out.exists() and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr


def test_convert_refuses_to_write_over_its_input(tmp_path):
    src = make_highd(tmp_path / "highd").tracks
    before = src.read_bytes()
    proc = run_cli("convert", src, "-o", src)
    assert proc.returncode == 2 and "would overwrite the input log" in proc.stderr and src.read_bytes() == before


def test_an_unwritable_output_is_one_line_not_a_traceback(tmp_path):
    src = make_highd(tmp_path / "highd").tracks
    (tmp_path / "taken").mkdir()
    proc = run_cli("convert", src, "-o", tmp_path / "taken")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [
    ["evaluate", "--policy", "expert", "--scenario", "stop", "--episodes", "1"],
    ["report", "RESULTS"],
    ["export", "RESULTS"],
])
def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path, command):
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    (tmp_path / "RESULTS").mkdir()
    argv = [str(tmp_path / a) if a == "RESULTS" else a for a in command]
    proc = run_cli(*argv, "-o", taken)
    assert proc.returncode == 2 and "is a file, expected a folder" in proc.stderr and taken.read_text() == "keep me"


@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--workers", "-4"), ("--episodes", "0")])
def test_evaluate_refuses_nonsense_counts(tmp_path, flag, value):
    proc = run_cli("evaluate", "--policy", "expert", "--scenario", "stop", flag, value, "-o", tmp_path / "out")
    assert proc.returncode == 2 and flag in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("repeated, expect_column, expected", [
    (["--scenario", "stop", "--scenario", "lane_change"], "scenario", {"stop", "lane_change"}),
    (["--scenario", "stop", "--split", "heldout", "--split", "short_notice"], "split", {"eval", "short_notice"}),
])
def test_evaluate_takes_repeated_scenarios_and_splits(tmp_path, repeated, expect_column, expected):
    proc = run_cli("evaluate", "--policy", "constant", *repeated, "--episodes", "1", "--workers", "1", "--quiet",
                   "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(table[expect_column]) == expected and len(table) == 2
