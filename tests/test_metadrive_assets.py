"""Offline MetaDrive: state-only runs need no render assets, never download, never wait on a lock.

One test holds MetaDrive's OWN asset lock file (``metadrive/assets.lock`` in
site-packages, the lock its downloader takes) while three workers start: stock MetaDrive
would make each worker wait, forever, for another process's download. The test creates
that lock file and removes it afterwards; nothing else is written into MetaDrive's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("metadrive")
import filelock  # noqa: E402  (a MetaDrive dependency)

from drive_drail.sim.metadrive.assets import (  # noqa: E402
    GRASS_TEXTURE,
    METADRIVE_VERSION,
    VERSION_FILE,
    RenderAssetsMissing,
    asset_status,
    metadrive_package_dir,
    require_render_assets,
    state_only_engine,
)

REPO = Path(__file__).resolve().parent.parent


def _listing(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if "__pycache__" not in p.parts}


def test_asset_status_reads_metadrives_own_check(tmp_path):
    package = tmp_path / "metadrive"
    package.mkdir()
    assert not asset_status(package).render_ready
    (package / Path(*VERSION_FILE)).parent.mkdir(parents=True)
    (package / Path(*VERSION_FILE)).write_text(METADRIVE_VERSION + "\n")
    status = asset_status(package)
    assert status.version == METADRIVE_VERSION and not status.grass_texture and not status.render_ready
    texture = package / Path(*GRASS_TEXTURE)
    texture.parent.mkdir(parents=True)
    texture.write_bytes(b"jpg")
    assert asset_status(package).render_ready
    (package / Path(*VERSION_FILE)).write_text("0.4.1\n")  # outdated assets: MetaDrive would re-download
    assert not asset_status(package).render_ready


def test_render_without_assets_gives_one_clear_line(tmp_path):
    package = tmp_path / "metadrive"
    package.mkdir()
    with pytest.raises(RenderAssetsMissing) as err:
        require_render_assets("rendering", package)
    message = str(err.value)
    assert "\n" not in message
    assert str(package / "assets") in message and "state-only" in message and "pull_asset" in message


def test_state_only_engine_skips_the_download_and_restores_metadrive():
    from metadrive.engine.base_engine import BaseEngine

    package = metadrive_package_dir()
    original = BaseEngine.__dict__["try_pull_asset"]
    before = _listing(package)
    with state_only_engine():
        assert BaseEngine.__dict__["try_pull_asset"] is not original
        BaseEngine.try_pull_asset()  # offline: would raise URLError (or hang) unpatched without assets
    assert BaseEngine.__dict__["try_pull_asset"] is original
    assert _listing(package) == before  # nothing written into MetaDrive's package
    with pytest.raises(ZeroDivisionError):
        with state_only_engine():
            1 / 0
    assert BaseEngine.__dict__["try_pull_asset"] is original  # restored on error too


WORKER = textwrap.dedent(
    """
    import numpy as np
    from drive_drail.scenario import load_scenario
    from drive_drail.sim import make_env
    env = make_env(load_scenario("metadrive_stop"))
    obs, _ = env.reset()
    for _ in range(3):
        obs, *_ = env.step(np.zeros(2))
    env.close()
    print("worker ok", obs.shape[0])
    """
)


@pytest.mark.slow
def test_three_workers_start_at_once_while_metadrives_asset_lock_is_held():
    package = metadrive_package_dir()
    lock_path = package / "assets.lock"
    existed = lock_path.exists()
    before = {k for k in _listing(package) if k != "assets.lock"}
    lock = filelock.FileLock(str(lock_path), timeout=1)
    lock.acquire()  # a stuck downloader in another process, as MetaDrive's pull_asset would hold it
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        workers = [subprocess.Popen([sys.executable, "-c", WORKER], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
        outputs = []
        for w in workers:
            try:
                out, _ = w.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                for other in workers:
                    other.kill()
                pytest.fail("a MetaDrive worker hung on the asset lock")
            outputs.append((w.returncode, out))
    finally:
        lock.release()
        if not existed and lock_path.exists():
            lock_path.unlink()
    for rc, out in outputs:
        assert rc == 0, out[-2000:]
        assert "worker ok" in out
    assert {k for k in _listing(package) if k != "assets.lock"} == before  # no assets folder, no zip, nothing
