"""The export manifest: what was exported, from what, with which tools, and how well it matches.

``manifest.json`` sits beside the artifacts of one export folder (``policy.onnx``,
``policy.engine``, ...). The runtime loader refuses an artifact whose sha256, spec
version or manifest format does not match, so a vehicle never runs a file that was
changed after export or that speaks another observation spec.

The sha256 list detects corruption, not tampering: whoever can swap ``policy.onnx`` can rewrite
its hash too. With a signing key (:data:`SIGNING_KEY_ENV`, or ``signing_key=``) the export also
writes ``manifest.sig``, an HMAC-SHA256 of ``manifest.json`` under that key, and the loader
refuses an export whose signature is missing or does not match.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

from drive_drail import spec
from drive_drail.atomic import write_json, write_text
from drive_drail.errors import UserError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
SIGNING_KEY_ENV = "DRIVE_DRAIL_SIGNING_KEY"
"""Environment variable holding the signing key (any secret string); unset = exports are not signed."""
MANIFEST_FORMAT = "drive_drail.deploy.manifest/1"
"""Version of this file's layout; bumped when a field changes meaning."""


class ManifestError(UserError, ValueError):
    """A manifest or an artifact does not match; the message is one line naming file and field."""


FIELD_TYPES: dict[str, type] = {
    "precision": str, "opset": int, "batch": dict, "inputs": list, "outputs": list, "actor": dict, "artifacts": dict,
    "versions": dict, "parity": dict, "tensorrt": dict, "exported_utc": str, "spec_version": str, "spec": dict, "format": str,
}
"""The JSON type of every manifest field (checked on load, so a hand-edited manifest fails by name)."""
_JSON_NAMES = {str: "string", int: "integer", dict: "object", list: "array"}


def _release(version: object, parts: int) -> tuple[int, ...] | None:
    """The first ``parts`` numeric components of a version string ('1.22.0+cpu' -> (1, 22)), or None."""
    import re

    m = re.match(r"^(\d+)(?:\.(\d+))?", version) if isinstance(version, str) else None
    if m is None or (parts == 2 and m.group(2) is None):
        return None
    return tuple(int(g) for g in m.groups()[:parts])


def _signature(manifest_bytes: bytes, key: bytes) -> str:
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def signing_key_from_env() -> bytes | None:
    """The signing key from :data:`SIGNING_KEY_ENV` (its UTF-8 bytes), or None when unset or empty."""
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def verify_signature(export_dir: str | Path, key: bytes) -> None:
    """Refuse ``export_dir`` unless ``manifest.sig`` is the HMAC of its ``manifest.json`` under ``key``."""
    export_dir = Path(export_dir)
    sig_path, manifest_path = export_dir / SIGNATURE_NAME, export_dir / MANIFEST_NAME
    if not sig_path.is_file():
        raise ManifestError(f"{sig_path}: missing; a signing key is set, and this export is not signed")
    if not manifest_path.is_file():
        raise ManifestError(f"{manifest_path}: missing (every exported artifact needs its manifest.json)")
    found = sig_path.read_text(errors="replace").strip()
    if not hmac.compare_digest(found.encode(), _signature(manifest_path.read_bytes(), key).encode()):
        raise ManifestError(f"{sig_path}: the signature does not match manifest.json under this key "
                            "(the export was changed after signing, or signed with another key)")


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

    def save(self, export_dir: str | Path, signing_key: bytes | None = None) -> Path:
        """Atomically write ``export_dir/manifest.json``, and with a key its ``manifest.sig``."""
        path = Path(export_dir) / MANIFEST_NAME
        write_json(path, self.to_dict())
        sig = Path(export_dir) / SIGNATURE_NAME
        if signing_key:
            write_text(sig, _signature(path.read_bytes(), signing_key) + "\n")
        elif sig.exists():
            sig.unlink()  # a signature of an older manifest would never verify
        return path

    @classmethod
    def load(cls, export_dir: str | Path) -> Manifest:
        """Read ``export_dir/manifest.json``; raise :class:`ManifestError` on a missing or unknown field."""
        path = Path(export_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{path}: missing (every exported artifact needs its manifest.json)")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(f"{path}: not valid JSON ({type(e).__name__} at byte {getattr(e, 'pos', getattr(e, 'start', '?'))})") from None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"{path}: unknown field '{unknown[0]}'")
        fields = cls.__dataclass_fields__.items()
        missing = [n for n, f in fields if f.default is MISSING and f.default_factory is MISSING and n not in data]
        if missing:
            raise ManifestError(f"{path}: missing field '{missing[0]}'")
        for name, value in data.items():
            want = FIELD_TYPES[name]
            if isinstance(value, bool) and want is not bool or not isinstance(value, want):
                raise ManifestError(f"{path}: field '{name}' must be a JSON {_JSON_NAMES[want]}, got {type(value).__name__}")
        for key in ("inputs", "outputs"):
            for i, io in enumerate(data[key]):
                if not (isinstance(io, dict) and isinstance(io.get("name"), str) and isinstance(io.get("shape"), list)
                        and len(io["shape"]) == 2 and all(isinstance(d, (int, str)) for d in io["shape"])):
                    raise ManifestError(f"{path}: field '{key}[{i}]' must be {{\"name\": str, \"shape\": [batch, n], ...}}")
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

    def check_versions(self, export_dir: str | Path, backend: str) -> None:
        """Refuse an export whose tool versions this install cannot honour.

        Policy: ``drive_drail`` must share major.minor with this install (0.x minors may change
        the export); on onnxruntime, the running onnxruntime must be at least the exporter's
        major.minor, where the parity figures were measured (older ones may lack the opset);
        ``onnx`` must share its major (the ONNX file's IR). TensorRT engines are checked for the exact
        TensorRT version and GPU by the loader's engine check.
        """
        import onnxruntime

        import drive_drail

        path = Path(export_dir) / MANIFEST_NAME
        running = {"drive_drail": drive_drail.__version__, "onnxruntime": onnxruntime.__version__}
        try:
            import onnx

            running["onnx"] = onnx.__version__
        except ImportError:  # the runtime needs onnxruntime only
            pass
        rules = {"drive_drail": (2, "=="), "onnx": (1, "=="), **({"onnxruntime": (2, ">=")} if backend == "onnxruntime" else {})}
        for tool, (parts, rule) in rules.items():
            if tool not in running:
                continue
            if tool not in self.versions:
                raise ManifestError(f"{path}: field 'versions.{tool}' is missing")
            theirs, ours = _release(self.versions[tool], parts), _release(running[tool], parts)
            if theirs is None:
                raise ManifestError(f"{path}: field 'versions.{tool}' is not a version: {str(self.versions[tool])[:40]!r}")
            if (rule == "==" and theirs != ours) or (rule == ">=" and ours < theirs):
                want = "the same " + ".".join(["major", "minor"][:parts]) if rule == "==" else "at least " + ".".join(map(str, theirs))
                raise ManifestError(f"{path}: field 'versions.{tool}' is '{self.versions[tool]}'; this install has {tool} "
                                    f"{running[tool]}, and the export needs {want}")

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
