"""The export manifest: what was exported, from what, with which tools, and how well it matches.

``manifest.json`` sits beside the artifacts of one export folder (``policy.onnx``,
``policy.engine``, ...). The runtime loader refuses an artifact whose sha256, spec
version or manifest format does not match, so a vehicle never runs a file that was
changed after export or that speaks another observation spec.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

from drive_drail import spec
from drive_drail.atomic import write_json
from drive_drail.errors import UserError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "drive_drail.deploy.manifest/1"
"""Version of this file's layout; bumped when a field changes meaning."""


class ManifestError(UserError, ValueError):
    """A manifest or an artifact does not match; the message is one line naming file and field."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of the exporter stack (torch, onnx, onnxruntime, onnxscript, drive_drail, ...)."""
    import numpy
    import onnx
    import onnxruntime
    import torch

    import drive_drail

    versions = {
        "drive_drail": drive_drail.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    try:
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    except ImportError:  # only the dynamo exporter needs it; record its absence honestly
        versions["onnxscript"] = "not installed"
    return versions


@dataclass
class Manifest:
    """Contents of ``manifest.json``. Every field is plain JSON data."""

    precision: str
    """'fp32' or 'fp16': the compute precision stored in the ONNX graph (I/O is always fp32)."""
    opset: int
    """ONNX default-domain opset of ``policy.onnx``."""
    batch: dict[str, int]
    """Batch range ``{"min", "opt", "max"}`` of the TensorRT optimisation profile on input ``obs``."""
    inputs: list[dict]
    """``[{"name", "shape", "dtype"}]``; ``"batch"`` marks the dynamic dimension."""
    outputs: list[dict]
    """Same layout as ``inputs``."""
    actor: dict
    """Source actor file, its sha256 and its :class:`ActorConfig` as a dict."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """File name (relative to the export folder) -> sha256, for every file the export wrote."""
    versions: dict[str, str] = field(default_factory=tool_versions)
    """Exporter stack versions, from :func:`tool_versions`."""
    parity: dict = field(default_factory=dict)
    """Per backend (``onnxruntime``, ``tensorrt``): observations used, max abs errors, tolerance."""
    tensorrt: dict = field(default_factory=dict)
    """Engine build record: ``built``, ``message``, and when built the TensorRT version, GPU, CC."""
    exported_utc: str = ""
    """ISO 8601 UTC time of the export."""
    spec_version: str = spec.SPEC_VERSION
    spec: dict = field(default_factory=spec.spec_dict)
    format: str = MANIFEST_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, export_dir: str | Path) -> Path:
        """Atomically write ``export_dir/manifest.json``."""
        path = Path(export_dir) / MANIFEST_NAME
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, export_dir: str | Path) -> Manifest:
        """Read ``export_dir/manifest.json``; raise :class:`ManifestError` on a missing or unknown field."""
        path = Path(export_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{path}: missing (every exported artifact needs its manifest.json)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}: not valid JSON ({e})") from None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"{path}: unknown field '{unknown[0]}'")
        fields = cls.__dataclass_fields__.items()
        missing = [n for n, f in fields if f.default is MISSING and f.default_factory is MISSING and n not in data]
        if missing:
            raise ManifestError(f"{path}: missing field '{missing[0]}'")
        return cls(**data)

    # ------------------------------------------------------------------ checks
    def check_compatible(self, export_dir: str | Path) -> None:
        """Refuse a manifest from another manifest format or another observation/action spec."""
        path = Path(export_dir) / MANIFEST_NAME
        if self.format != MANIFEST_FORMAT:
            raise ManifestError(
                f"{path}: field 'format' is '{self.format}', this drive-drail reads '{MANIFEST_FORMAT}'"
            )
        if self.spec_version != spec.SPEC_VERSION:
            raise ManifestError(
                f"{path}: field 'spec_version' is '{self.spec_version}', this drive-drail uses spec '{spec.SPEC_VERSION}'"
            )
        if self.spec.get("spec_version") != self.spec_version:
            raise ManifestError(f"{path}: field 'spec.spec_version' disagrees with 'spec_version'")

    def check_artifact(self, export_dir: str | Path, name: str) -> Path:
        """Return ``export_dir/name`` after checking its sha256 against ``artifacts[name]``."""
        export_dir = Path(export_dir)
        path = export_dir / name
        if name not in self.artifacts:
            raise ManifestError(f"{export_dir / MANIFEST_NAME}: field 'artifacts' has no entry for '{name}'")
        if not path.is_file():
            raise ManifestError(f"{path}: missing (listed in {MANIFEST_NAME})")
        actual = sha256_file(path)
        if actual != self.artifacts[name]:
            raise ManifestError(
                f"{path}: sha256 {actual[:12]}... does not match field 'artifacts.{name}' "
                f"{self.artifacts[name][:12]}... in {MANIFEST_NAME} (file changed after export)"
            )
        return path
