"""One entry point for every log format: ``read_log(path, format="auto")``.

Auto-detection asks each reader's ``sniff`` in the order of :data:`READERS` (cheap
checks: Parquet metadata, file names, CSV header lines; pickles are never opened to
sniff). Every failure is a one-line :class:`LogError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from drive_drail.logs.base import LogError, LogReader, TrackLog
from drive_drail.logs.highd import HighDReader
from drive_drail.logs.ngsim import NgsimReader
from drive_drail.logs.scenarionet import ScenarioNetReader
from drive_drail.logs.simlog import SimLogReader

READERS: dict[str, LogReader] = {
    "simlog": SimLogReader(),
    "scenarionet": ScenarioNetReader(),
    "highd": HighDReader(),
    "ngsim": NgsimReader(),
}
"""Format name -> reader, in sniffing order."""


def supported_formats() -> list[str]:
    return sorted(READERS)


def detect_format(path: str | Path) -> str | None:
    """The first format whose reader sniffs ``path``, or None."""
    path = Path(path)
    for name, reader in READERS.items():
        try:
            if reader.sniff(path):
                return name
        except OSError:
            continue
    return None


def read_log(path: str | Path, format: str = "auto") -> TrackLog:
    """Read any supported log into a :class:`TrackLog`.

    ``format``: ``"auto"`` or one of :func:`supported_formats`. Raises :class:`LogError`
    for an unknown format name, a missing or empty file, an unrecognised file, and every
    problem the chosen reader finds.
    """
    path = Path(path)
    supported = ", ".join(supported_formats())
    if format != "auto":
        if format not in READERS:
            raise LogError(path, f"unknown log format {format!r} (supported: {supported}, or auto)")
        if not path.exists() and not (format == "highd" and READERS[format].sniff(path)):
            raise LogError(path, "no such file or folder")
        return READERS[format].read(path)
    name = detect_format(path)
    if name is not None:
        return READERS[name].read(path)
    if not path.exists():
        raise LogError(path, "no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise LogError(path, "empty file")
    if path.suffix == ".parquet":
        try:
            pq.read_schema(path)
        except Exception as exc:  # truncated or corrupt Parquet
            raise LogError(
                path, f"cannot read Parquet, truncated or corrupt? ({type(exc).__name__}: {exc})".replace("\n", " ")
            ) from None
        raise LogError(
            path, "a Parquet file without drive-drail sim log metadata (only sim logs are read from Parquet)"
        )
    from drive_drail.logs.highd import highd_paths

    if highd_paths(path) is not None:  # a highD name without its sibling files: name the one missing
        return READERS["highd"].read(path)
    raise LogError(path, f"unrecognised log format (supported: {supported})")
