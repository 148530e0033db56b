"""The built wheel carries what an installed drive-drail needs at run time (scenarios, typing marker)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_ships_every_scenario_and_the_typing_marker(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("drive_drail-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {Path(n).name for n in names if n.startswith("drive_drail/scenarios/")}
    in_tree = {p.name for p in (REPO / "drive_drail" / "scenarios").glob("*.yaml")}
    assert in_tree and shipped == in_tree
    assert "drive_drail/py.typed" in names and "drive_drail/deploy/build_engine.sh" in names
