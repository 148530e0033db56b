"""Load an exported policy and act with it: one ``act`` interface over torch, onnxruntime and TensorRT.

``load_policy(path).act(obs)`` takes ``[B, OBS_DIM]`` or ``[OBS_DIM]`` float observations
and returns ``[B, 2]`` or ``[2]`` unit actions in [-1, 1], exactly like
:meth:`DeterministicActor.act`, so the evaluator can drive a simulator with any of them.

An exported artifact is only loaded after its ``manifest.json`` agrees with it: the
manifest format, the observation/action spec version, the artifact's sha256 and, for a
TensorRT engine, the TensorRT version and GPU compute capability that built it. Any
mismatch raises :class:`~drive_drail.deploy.manifest.ManifestError` with one line naming
the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from drive_drail import spec
from drive_drail.deploy.manifest import MANIFEST_NAME, Manifest, ManifestError, signing_key_from_env, verify_signature
from drive_drail.deploy.onnx_export import INPUT_NAME
from drive_drail.deploy.tensorrt_build import ENGINE_NAME, TensorRTRunner, gpu_record, gpu_status
from drive_drail.errors import ArgumentError

ONNX_NAME = "policy.onnx"
ACTOR_NAME = "actor.pt"
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


class Policy(Protocol):
    """Anything that maps observations to unit actions (``DeterministicActor`` is one)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``[B, obs_dim]`` or ``[obs_dim]`` -> ``[B, 2]`` or ``[2]`` float32 in [-1, 1]."""
        ...


def _as_batch(obs: np.ndarray, obs_dim: int) -> tuple[np.ndarray, bool]:
    """Contiguous float32 ``[B, obs_dim]`` and whether the caller passed a single observation."""
    x = np.ascontiguousarray(obs, dtype=np.float32)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != obs_dim:
        raise ValueError(f"obs shape {np.shape(obs)}: expected [B, {obs_dim}] or [{obs_dim}]")
    return x, single


def make_session(onnx_path: str | Path, intra_op_threads: int = 1):
    """An onnxruntime CPU session tuned for small-batch latency.

    One intra-op thread by default: a 54x256x256x2 MLP is far too small to amortise thread
    hand-offs, and a vehicle pins its control loop to a core. Sequential execution, all
    graph optimisations (Gemm+activation fusion, constant folding).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxRuntimePolicy:
    """``policy.onnx`` on onnxruntime's CPU execution provider."""

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | Path, manifest: Manifest, intra_op_threads: int = 1):
        self.manifest = manifest
        self.session = make_session(onnx_path, intra_op_threads)
        self.obs_dim = int(manifest.inputs[0]["shape"][1])

    def act(self, obs: np.ndarray) -> np.ndarray:
        x, single = _as_batch(obs, self.obs_dim)
        action = self.session.run(["action"], {INPUT_NAME: x})[0]
        return action[0] if single else action


class TensorRTPolicy:
    """``policy.engine`` through the TensorRT runtime (CUDA I/O via torch tensors)."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | Path, manifest: Manifest):
        self.manifest = manifest
        self.runner = TensorRTRunner(engine_path)
        self.obs_dim = self.runner.obs_dim

    def act(self, obs: np.ndarray) -> np.ndarray:
        x, single = _as_batch(obs, self.obs_dim)
        action = self.runner.run(x)["action"]
        return action[0] if single else action


class TorchPolicy:
    """A :class:`DeterministicActor` file (``actor.pt``), run eagerly under inference mode."""

    backend = "torch"

    def __init__(self, actor_path: str | Path):
        from drive_drail.models.policy import DeterministicActor

        self.actor = DeterministicActor.load(actor_path)
        self.obs_dim = self.actor.config.obs_dim

    def act(self, obs: np.ndarray) -> np.ndarray:
        _as_batch(obs, self.obs_dim)  # same shape errors as the other backends
        return self.actor.act(obs)


def _check_engine_matches_here(manifest: Manifest, export_dir: Path) -> None:
    """An engine only runs on the TensorRT version and GPU architecture that built it."""
    record = manifest.tensorrt
    where = export_dir / MANIFEST_NAME
    ok, reason = gpu_status()
    if not ok:
        raise ManifestError(f"{export_dir / ENGINE_NAME}: cannot run a TensorRT engine: {reason}")
    import tensorrt as trt

    if record.get("version") != trt.__version__:
        raise ManifestError(
            f"{where}: field 'tensorrt.version' is '{record.get('version')}', installed TensorRT is '{trt.__version__}'"
        )
    here = gpu_record()["compute_capability"]
    if record.get("compute_capability") != here:
        raise ManifestError(
            f"{where}: field 'tensorrt.compute_capability' is '{record.get('compute_capability')}', this GPU is '{here}'"
        )


def _export_target(path: Path, backend: str) -> tuple[Path, str]:
    """(export folder, backend) for an export folder, a ``policy.onnx`` or a ``policy.engine`` path."""
    if path.is_dir():
        return path, "onnxruntime" if backend == "auto" else backend
    if path.suffix == ".onnx":
        return path.parent, "onnxruntime" if backend == "auto" else backend
    if path.suffix in (".engine", ".plan"):
        return path.parent, "tensorrt" if backend == "auto" else backend
    raise ArgumentError(f"{path}: not an actor .pt, a checkpoint folder, an export folder, a .onnx or a .engine")


def load_policy(path: str | Path, backend: str = "auto", intra_op_threads: int = 1, signing_key: bytes | None = None) -> Policy:
    """Load a policy from any artifact the pipeline produces.

    Args:
        path: an actor ``.pt`` file or a folder with ``actor.pt`` (torch backend); an export
            folder holding ``manifest.json``, or its ``policy.onnx`` / ``policy.engine``.
        backend: ``"auto"`` (torch for actor files, onnxruntime for export folders and .onnx,
            tensorrt for .engine), or one of ``"torch"``, ``"onnxruntime"``, ``"tensorrt"``.
        intra_op_threads: onnxruntime intra-op threads (1 = lowest single-batch latency).
        signing_key: refuse an export whose ``manifest.sig`` does not verify under this key;
            None = the key in ``$DRIVE_DRAIL_SIGNING_KEY``, if set (actor ``.pt`` files are never signed,
            so with a key set only export folders load).

    Raises:
        ManifestError: the artifact does not match its manifest (one line: file and field).
        FileNotFoundError / ArgumentError (a ValueError): nothing loadable at ``path``, or a backend it cannot run on.
    """
    if backend not in BACKENDS:
        raise ArgumentError(f"backend '{backend}': expected one of {', '.join(BACKENDS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")

    signing_key = signing_key or signing_key_from_env()
    is_actor_file = path.is_file() and path.suffix == ".pt"
    is_checkpoint = path.is_dir() and (path / ACTOR_NAME).is_file() and not (path / MANIFEST_NAME).is_file()
    if (is_actor_file or is_checkpoint) and signing_key:
        raise ManifestError(f"{path}: a signing key is set and an actor file carries no signature; load a signed export")
    if is_actor_file or is_checkpoint:
        if backend not in ("auto", "torch"):
            raise ArgumentError(f"{path}: an actor file runs on the torch backend; export it first for '{backend}'")
        return TorchPolicy(path if is_actor_file else path / ACTOR_NAME)

    export_dir, backend = _export_target(path, backend)
    if signing_key:
        verify_signature(export_dir, signing_key)
    manifest = Manifest.load(export_dir)
    manifest.check_compatible(export_dir)
    manifest.check_versions(export_dir, backend)
    if int(manifest.inputs[0]["shape"][1]) != spec.OBS_DIM:
        raise ManifestError(
            f"{export_dir / MANIFEST_NAME}: field 'inputs[0].shape' is {manifest.inputs[0]['shape']}, spec OBS_DIM is {spec.OBS_DIM}"
        )
    if backend == "onnxruntime":
        return OnnxRuntimePolicy(manifest.check_artifact(export_dir, ONNX_NAME), manifest, intra_op_threads)
    if backend == "tensorrt":
        if not manifest.tensorrt.get("built"):
            raise ManifestError(
                f"{export_dir / MANIFEST_NAME}: field 'tensorrt.built' is false (build the engine on the target: see BUILD_ON_TARGET.md)"
            )
        engine = manifest.check_artifact(export_dir, ENGINE_NAME)
        _check_engine_matches_here(manifest, export_dir)
        return TensorRTPolicy(engine, manifest)
    raise ArgumentError(f"{path}: an export folder runs on onnxruntime or tensorrt, not '{backend}'")
