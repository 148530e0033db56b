"""MetaDrive's render assets, handled offline: state-only MetaDrive needs none of them.

What MetaDrive 0.4.3 does. ``BaseEngine.__init__`` calls ``BaseEngine.try_pull_asset()``,
which looks for ``<site-packages>/metadrive/assets/version.txt`` (content ``0.4.3``) and
``assets/textures/grass1/GroundGrassGreen002_COL_1K.jpg``. If either is missing it calls
``metadrive.pull_asset.pull_asset``: that downloads ``assets.zip`` from GitHub under a
``filelock.FileLock("metadrive/assets.lock", timeout=1)``. A process that cannot take the
lock within 1 s waits in ``wait_asset_lock()`` for ``version.txt`` to appear, polling
every 10 s with NO time limit. Offline, the downloader fails and removes its lock, but
every waiter started meanwhile waits forever: the hang of parallel workers.

What we do instead. Headless state-only MetaDrive (``use_render=False``, no image
observation; the adapter never renders) reads none of the asset files, so there is
nothing to prepare and nothing to download:

- :func:`state_only_engine` is a context manager the adapter wraps around every call
  that may build MetaDrive's engine (env construction and ``reset``). Inside it,
  ``BaseEngine.try_pull_asset`` is replaced, in this process only, by a check that keeps
  MetaDrive's own behaviour when the assets are complete and otherwise skips the
  download. On exit the original is restored. Nothing is written anywhere (not into
  site-packages, not into a cache), no lock is taken, so any number of worker
  processes can start at once and none can wait on another.
- :func:`require_render_assets` raises :class:`RenderAssetsMissing`, a one-line message
  saying what is missing and how to get it, when rendering is asked for without assets.

:func:`asset_status` reports what is installed without importing MetaDrive.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from drive_drail.errors import UserError

METADRIVE_VERSION = "0.4.3"
"""The MetaDrive release whose asset check this module knows."""

VERSION_FILE = ("assets", "version.txt")
GRASS_TEXTURE = ("assets", "textures", "grass1", "GroundGrassGreen002_COL_1K.jpg")
"""The two files MetaDrive's ``AssetLoader.should_update_asset`` checks, relative to the package."""

_log = logging.getLogger(__name__)
_patch_lock = threading.RLock()  # one patch at a time per process (threads share the class); nesting is fine


class RenderAssetsMissing(UserError):
    """Rendering (or an image observation) was asked for, but MetaDrive's assets are not installed."""


@dataclass(frozen=True)
class AssetStatus:
    """What MetaDrive render assets are installed next to the ``metadrive`` package."""

    package_dir: Path
    """The ``metadrive`` package folder."""
    version: str | None
    """Content of ``assets/version.txt``, None if the file is missing."""
    grass_texture: bool
    """Whether the grass texture MetaDrive checks for exists."""

    @property
    def render_ready(self) -> bool:
        """True when MetaDrive's own check passes (it would not try to download)."""
        return self.version == METADRIVE_VERSION and self.grass_texture


def metadrive_package_dir() -> Path:
    """The installed ``metadrive`` package folder, found without importing it."""
    spec = importlib.util.find_spec("metadrive")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "MetaDrive is not installed: pip install --no-deps metadrive-simulator==0.4.3 "
            "(see the README for its runtime dependencies)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def asset_status(package_dir: Path | None = None) -> AssetStatus:
    """Inspect the assets next to the installed ``metadrive`` package (or ``package_dir``); reads two paths, writes nothing."""
    package = metadrive_package_dir() if package_dir is None else Path(package_dir)
    version_path = package.joinpath(*VERSION_FILE)
    version = None
    if version_path.is_file():
        lines = version_path.read_text().splitlines()
        version = lines[0].replace(" ", "") if lines else ""
    return AssetStatus(package, version, package.joinpath(*GRASS_TEXTURE).is_file())


def require_render_assets(what: str = "rendering", package_dir: Path | None = None) -> AssetStatus:
    """Return the status if MetaDrive can render, else raise :class:`RenderAssetsMissing` (one line)."""
    status = asset_status(package_dir)
    if not status.render_ready:
        found = f"version.txt says {status.version!r}" if status.version is not None else "no assets/version.txt"
        raise RenderAssetsMissing(
            f"{what} in MetaDrive needs its render assets, which are not installed in {status.package_dir / 'assets'} "
            f"({found}); drive-drail runs MetaDrive headless and state-only, which needs none. "
            f"To render, run `python -m metadrive.pull_asset` once on a machine with internet access."
        )
    return status


def _state_only_try_pull_asset(original):
    """A replacement for ``BaseEngine.try_pull_asset``: MetaDrive's check if assets are complete, else skip."""

    def try_pull_asset() -> None:
        if asset_status().render_ready:
            original()  # assets complete: MetaDrive only logs its version
        else:
            _log.debug("MetaDrive state-only: render assets not installed and not needed; skipping the download")

    return try_pull_asset


@contextlib.contextmanager
def state_only_engine() -> Iterator[None]:
    """Within this block, MetaDrive builds its engine without downloading assets.

    Patches ``metadrive.engine.base_engine.BaseEngine.try_pull_asset`` in this process for
    the duration of the block and restores it afterwards (also on error). Use it only
    around headless, state-only environments; renderers must call
    :func:`require_render_assets` first.
    """
    from metadrive.engine.base_engine import BaseEngine

    with _patch_lock:
        original = BaseEngine.__dict__["try_pull_asset"]
        BaseEngine.try_pull_asset = staticmethod(_state_only_try_pull_asset(original.__func__))
        try:
            yield
        finally:
            BaseEngine.try_pull_asset = original
