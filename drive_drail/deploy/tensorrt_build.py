"""``policy.onnx`` -> ``policy.engine`` with the TensorRT Python API (TensorRT 10 and 11).

TensorRT is imported lazily, inside the functions that need it, and only after
:func:`tensorrt_status` has seen a CUDA GPU: on a machine without one, TensorRT can take
the whole process down instead of raising.

Version differences handled here, by feature (``hasattr``) rather than by version number:

- TensorRT 11 builds every network strongly typed (each tensor keeps the type the ONNX
  gives it) and removed ``BuilderFlag.FP16``/``INT8``; the ``STRONGLY_TYPED`` creation flag
  is accepted and ignored. TensorRT 10 has the flag and needs it to keep the fp16 ONNX
  graph in fp16. So: always ask for ``STRONGLY_TYPED`` where it exists; only a TensorRT
  without it (8.x, weakly typed) gets ``BuilderFlag.FP16`` for an fp16 export.
- ``BuilderFlag.TF32`` is cleared where it exists, so fp32 matmuls are real fp32 and the
  engine matches torch to 1e-5.
- ``EXPLICIT_BATCH`` is only set on TensorRT < 10 (deprecated and ignored from 10 on).

Where no engine can be built here, :func:`build_on_target_text` gives the equivalent
``trtexec`` command line and :data:`BUILD_ENGINE_SH` is the script the vehicle runs.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drive_drail.atomic import atomic_path
from drive_drail.errors import ArgumentError
from drive_drail.deploy.onnx_export import INPUT_NAME, OUTPUT_NAMES

ENGINE_NAME = "policy.engine"
TIMING_CACHE_NAME = "timing.cache"
BUILD_ENV_NAME = "build_engine.env"
BUILD_SCRIPT_NAME = "build_engine.sh"
BUILD_DOC_NAME = "BUILD_ON_TARGET.md"
WORKSPACE_BYTES = 256 << 20
"""Builder workspace pool limit [bytes]; the policy MLP needs far less."""


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes of the TensorRT optimisation profile on input ``obs``: ``min <= opt <= max``."""

    min: int
    opt: int
    max: int

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


def parse_batch(text: str | int) -> BatchRange:
    """``"1"`` -> 1:1:1; ``"MIN:OPT:MAX"`` -> that range. One-line ``ValueError`` otherwise."""
    parts = str(text).split(":")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes = sizes * 3
    if len(sizes) != 3 or not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
        raise ArgumentError(f"batch '{text}': expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    return BatchRange(*sizes)


# --------------------------------------------------------------------------------------
# Availability: GPU first, then TensorRT, without importing TensorRT
# --------------------------------------------------------------------------------------


def gpu_status() -> tuple[bool, str]:
    """``(True, gpu name)`` if torch sees a CUDA GPU, else ``(False, reason)``. Cheap and safe."""
    import torch

    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        return False, f"no CUDA GPU here ({why}; torch.cuda.is_available() is False)"
    return True, torch.cuda.get_device_name(0)


def tensorrt_status() -> tuple[bool, str]:
    """``(True, "")`` when an engine can be built and run here, else ``(False, reason)``."""
    ok, reason = gpu_status()
    if not ok:
        return False, reason
    if importlib.util.find_spec("tensorrt") is None:
        return False, "the 'tensorrt' Python package is not installed here"
    return True, ""


def gpu_record() -> dict[str, str]:
    """Name and compute capability of GPU 0, as recorded in the manifest."""
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return {"gpu_name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


# --------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineInfo:
    """What :func:`build_engine` built, for the manifest."""

    path: Path
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    strongly_typed: bool
    tf32: bool
    timing_cache: str


def _major(version: str) -> int:
    return int(version.split(".")[0])


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str,
    batch: BatchRange,
    obs_dim: int,
    timing_cache_path: str | Path | None = None,
) -> EngineInfo:
    """Parse ``onnx_path``, build a serialised engine for ``batch`` and write it atomically.

    The timing cache is loaded from ``timing_cache_path`` when the file exists (and was made
    on a matching GPU/TensorRT) and written back after the build. Call only after
    :func:`tensorrt_status` returned True.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    creation = trt.NetworkDefinitionCreationFlag
    flags = 0
    if _major(trt.__version__) < 10 and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    if hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    strongly_typed = hasattr(creation, "STRONGLY_TYPED") or _major(trt.__version__) >= 11
    network = builder.create_network(flags)

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if not strongly_typed and precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)  # weakly typed TensorRT: fp16 only via the builder flag
    tf32 = False
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # real fp32 matmuls, for 1e-5 parity
        tf32 = config.get_flag(trt.BuilderFlag.TF32)

    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (batch.min, obs_dim), (batch.opt, obs_dim), (batch.max, obs_dim))
    config.add_optimization_profile(profile)

    cache_state = "none"
    if timing_cache_path is not None:
        cache_file = Path(timing_cache_path)
        cache_bytes = cache_file.read_bytes() if cache_file.is_file() else b""
        cache = config.create_timing_cache(cache_bytes)
        if not config.set_timing_cache(cache, False):  # made on another GPU/TensorRT: start afresh
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
            cache_state = "rebuilt (the saved one did not match this GPU/TensorRT)"
        else:
            cache_state = "loaded" if cache_bytes else "new"

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT {trt.__version__} build_serialized_network failed (see log above)")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if timing_cache_path is not None:
        with atomic_path(timing_cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))

    gpu = gpu_record()
    return EngineInfo(
        Path(engine_path),
        trt.__version__,
        gpu["gpu_name"],
        gpu["compute_capability"],
        strongly_typed,
        bool(tf32),
        cache_state,
    )


# --------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------


class TensorRTRunner:
    """Runs a serialised engine with torch CUDA tensors as I/O buffers.

    ``run(obs [B, obs_dim] float32) -> {"action": [B, 2], "action_physical": [B, 2]}``;
    batches above the profile's max are split into chunks.
    """

    def __init__(self, engine_path: str | Path):
        ok, reason = gpu_status()
        if not ok:
            raise RuntimeError(f"{engine_path}: cannot run a TensorRT engine: {reason}")
        import tensorrt as trt
        import torch

        self._torch = torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"{engine_path}: TensorRT {trt.__version__} could not deserialise it (built by another TensorRT or GPU?)"
            )
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {INPUT_NAME, *OUTPUT_NAMES}:
            raise RuntimeError(f"{engine_path}: I/O tensors {sorted(names)}, expected {[INPUT_NAME, *OUTPUT_NAMES]}")
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            if self.engine.get_tensor_dtype(name) != trt.float32:
                raise RuntimeError(
                    f"{engine_path}: tensor '{name}' is {self.engine.get_tensor_dtype(name)}, expected float32"
                )
        self.batch_min, _, batch_max = (shape[0] for shape in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
        self.batch_max = int(batch_max)
        self.obs_dim = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[0][1])
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def _run_chunk(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(obs).to("cuda", non_blocking=True)
            outs = {n: torch.empty((obs.shape[0], 2), dtype=torch.float32, device="cuda") for n in OUTPUT_NAMES}
            self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            for name, t in outs.items():
                self.context.set_tensor_address(name, t.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            host = {n: t.to("cpu", non_blocking=True) for n, t in outs.items()}
        self.stream.synchronize()
        return {n: t.numpy() for n, t in host.items()}

    def run(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"obs shape {obs.shape}: expected [B, {self.obs_dim}]")
        if obs.shape[0] < self.batch_min:
            raise ValueError(f"obs batch {obs.shape[0]} is below the engine's minimum batch {self.batch_min}")
        chunks = [self._run_chunk(obs[i : i + self.batch_max]) for i in range(0, obs.shape[0], self.batch_max)]
        return {n: np.concatenate([c[n] for c in chunks]) for n in OUTPUT_NAMES}


# --------------------------------------------------------------------------------------
# Building on the target
# --------------------------------------------------------------------------------------


def trtexec_command(precision: str, batch: BatchRange, obs_dim: int, export_dir: str = ".") -> list[str]:
    """The ``trtexec`` equivalent of :func:`build_engine`, as an argument list."""
    d = export_dir.rstrip("/")
    cmd = [
        "trtexec",
        f"--onnx={d}/policy.onnx",
        f"--saveEngine={d}/{ENGINE_NAME}",
        f"--minShapes={INPUT_NAME}:{batch.min}x{obs_dim}",
        f"--optShapes={INPUT_NAME}:{batch.opt}x{obs_dim}",
        f"--maxShapes={INPUT_NAME}:{batch.max}x{obs_dim}",
        "--stronglyTyped",  # TensorRT 10: keep the graph's types (fp16 stays fp16); 11: always on
        f"--timingCacheFile={d}/{TIMING_CACHE_NAME}",
        "--skipInference",
    ]
    if precision == "fp32":
        cmd.append("--noTF32")
    return cmd


def build_env_text(precision: str, batch: BatchRange, obs_dim: int, onnx_sha256: str) -> str:
    """``build_engine.env``: the variables :data:`BUILD_ENGINE_SH` reads (shell syntax)."""
    return (
        "# Written by drive-drail export; read by build_engine.sh.\n"
        f"PRECISION={precision}\nOBS_DIM={obs_dim}\n"
        f"BATCH_MIN={batch.min}\nBATCH_OPT={batch.opt}\nBATCH_MAX={batch.max}\n"
        f"ONNX_SHA256={onnx_sha256}\n"
    )


def build_on_target_text(status: str, precision: str, batch: BatchRange, obs_dim: int) -> str:
    """``BUILD_ON_TARGET.md``: what was built here (``status``, one sentence) and how to build on the vehicle."""
    cmd = " \\\n    ".join(trtexec_command(precision, batch, obs_dim))
    return f"""# Build the TensorRT engine on the target

{status}
TensorRT engines are specific to the GPU and TensorRT version that build them, so build
`{ENGINE_NAME}` on the vehicle's computer (or one with the same GPU and TensorRT).

## With trtexec (TensorRT 10 or 11)

From this folder:

```sh
./{BUILD_SCRIPT_NAME}            # checks policy.onnx against {BUILD_ENV_NAME}, then runs trtexec
```

which is equivalent to:

```sh
{cmd}
```

- `--stronglyTyped`: the ONNX graph carries its own precision ({precision}); TensorRT 10 needs
  the flag to keep it, TensorRT 11 always builds strongly typed (the flag is a no-op there).
- `--noTF32` (fp32 exports): real fp32 matmuls, so the engine matches the policy to 1e-5.
- `--timingCacheFile`: reuses kernel timings between builds on the same GPU.
- Do not add `--fp16`: TensorRT 11 removed it; an fp16 export already has fp16 in the graph.

## With the TensorRT Python API (records the engine in manifest.json)

```sh
python -m drive_drail.deploy.export --build-engine .
```

builds with the same settings, checks the engine against the torch actions stored in `parity.npz`
and adds `{ENGINE_NAME}` with its sha256, TensorRT version, GPU name and compute capability
to `manifest.json`, so `drive_drail.deploy.runtime.load_policy(".", backend="tensorrt")`
accepts it.
"""


BUILD_ENGINE_SH = (importlib.resources.files("drive_drail.deploy") / BUILD_SCRIPT_NAME).read_text(encoding="utf-8")
"""The script the vehicle runs, read from the package data file ``drive_drail/deploy/build_engine.sh``
(``deploy/build_engine.sh`` links to it); every export folder gets a copy."""
