"""DeterministicActor -> ``policy.onnx``: the action head only, normaliser and unit mapping in the graph.

Graph (``B`` is a dynamic batch dimension)::

    obs [B, OBS_DIM] f32
      -> (obs - obs_mean) / obs_std                     normaliser, f32
      -> [Cast f16] -> encoder -> MLP -> Clip(-1, 1) -> [Cast f32]  the casts only in fp16 exports
                                                        (encoder: identity, or the neighbour set
                                                        encoder's Reshape, MatMul, Relu, Where, ReduceMax)
      -> action [B, 2] f32
      -> lo + (action + 1) / 2 * (hi - lo)              spec.action_to_physical
      -> action_physical [B, 2] f32

``action_physical`` is :func:`drive_drail.spec.action_to_physical` (``[accel_mps2, steer_rad]``)
computed in the graph, so the vehicle needs no copy of the action ranges.

Precision lives in the graph, not in builder flags: TensorRT 11 builds every network
strongly typed (it runs each tensor in the type the ONNX gives it). For ``fp16`` the MLP
weights and its compute are float16 and Cast nodes at both ends keep the I/O float32. The
normaliser stays float32: it is two cheap elementwise ops, and dividing by a tiny
``obs_std`` of a near-constant feature could overflow float16's range (max 65504).

Exporter: ``torch.onnx.export(..., dynamo=True)``, the torch.export-based exporter that is
the default since torch 2.9 (the TorchScript exporter is deprecated and prints so). It
needs the ``onnxscript`` package.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from drive_drail import spec
from drive_drail.atomic import atomic_path
from drive_drail.models.policy import DeterministicActor

OPSET = 18
"""ONNX opset: the lowest the dynamo exporter emits natively; TensorRT 10/11 and onnxruntime take it."""

INPUT_NAME = "obs"
OUTPUT_NAMES = ("action", "action_physical")
BATCH_DIM = "batch"
PRECISIONS = ("fp32", "fp16")

_COMPUTE_DTYPE = {"fp32": torch.float32, "fp16": torch.float16}


class ExportGraph(nn.Module):
    """The module that is traced into ONNX.

    ``forward``: obs ``[B, obs_dim]`` float32 -> (action ``[B, act_dim]`` float32 in [-1, 1],
    action_physical ``[B, 2]`` float32 in ``[m/s^2, rad]``).
    """

    def __init__(self, actor: DeterministicActor, precision: str):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision '{precision}': expected one of {', '.join(PRECISIONS)}")
        self.compute_dtype = _COMPUTE_DTYPE[precision]
        self.encoder = copy.deepcopy(actor.encoder).to(self.compute_dtype).eval()
        self.net = copy.deepcopy(actor.net).to(self.compute_dtype).eval()
        self.register_buffer("obs_mean", actor.obs_mean.detach().clone().float())
        self.register_buffer("obs_std", actor.obs_std.detach().clone().float())
        lo = [spec.ACCEL_RANGE_MPS2[0], spec.STEER_RANGE_RAD[0]]
        hi = [spec.ACCEL_RANGE_MPS2[1], spec.STEER_RANGE_RAD[1]]
        self.register_buffer("action_lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("action_hi", torch.tensor(hi, dtype=torch.float32))
        self.register_buffer("steer_mask", torch.tensor([0.0, 1.0], dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (obs - self.obs_mean) / self.obs_std  # normaliser in fp32 (see module docstring)
        z = self.net(self.encoder(x.to(self.compute_dtype)))
        action = torch.clamp(z, -1.0, 1.0).to(torch.float32)
        # spec.action_to_physical: accel = lo + (a + 1) / 2 * (hi - lo); steer = s0 u + (max - s0) u^3
        # (masks, not slices: this part of the graph needs no integer constants)
        linear = self.action_lo + (action + 1.0) * 0.5 * (self.action_hi - self.action_lo)
        cubic = spec.steer_from_unit(action)  # plain arithmetic: traces on tensors as it runs on arrays
        action_physical = linear * (1.0 - self.steer_mask) + cubic * self.steer_mask
        return action, action_physical


@dataclass(frozen=True)
class OnnxInfo:
    """What :func:`export_onnx` wrote."""

    path: Path
    opset: int
    precision: str
    inputs: list[dict]
    """``[{"name", "shape", "dtype"}]`` with ``"batch"`` for the dynamic dimension."""
    outputs: list[dict]


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's per-op registry warnings (e.g. torchvision absent); errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch-internal
            yield
    finally:
        logger.setLevel(level)


def _io_table(values: list[onnx.ValueInfoProto]) -> list[dict]:
    table = []
    for v in values:
        tt = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
        table.append({"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name})
    return table


def export_onnx(actor: DeterministicActor, path: str | Path, precision: str = "fp32", opset: int = OPSET) -> OnnxInfo:
    """Export ``actor`` to ``path`` (atomic write) and check the result.

    The batch dimension is dynamic (``batch``, from 1 up); the feature dimension is fixed.
    Raises ``RuntimeError`` naming the field if the exported graph's interface is not the
    one documented above, and ``onnx.checker.ValidationError`` if the checker rejects it.
    """
    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError(
            "ONNX export needs the 'onnxscript' package (torch.onnx.export dynamo=True): pip install onnxscript"
        )
    graph = ExportGraph(actor.eval(), precision).eval()
    obs_dim = actor.config.obs_dim
    # Example batch of 2: torch.export specialises a size-1 dimension to a constant.
    example = torch.zeros(2, obs_dim, dtype=torch.float32)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_shapes={"obs": {0: torch.export.Dim(BATCH_DIM, min=1)}},
            external_data=False,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    model.doc_string = (
        "drive-drail DeterministicActor: obs -> action in [-1, 1], action_physical [accel_mps2, steer_rad]"
    )
    onnx.helper.set_model_props(
        model,
        {
            "drive_drail.spec_version": spec.SPEC_VERSION,
            "drive_drail.precision": precision,
            "drive_drail.action_names": ",".join(spec.ACTION_NAMES),
        },
    )
    onnx.checker.check_model(model, full_check=True)

    inputs, outputs = _io_table(list(model.graph.input)), _io_table(list(model.graph.output))
    expected_in = [{"name": INPUT_NAME, "shape": [BATCH_DIM, obs_dim], "dtype": "float32"}]
    expected_out = [{"name": n, "shape": [BATCH_DIM, actor.config.act_dim], "dtype": "float32"} for n in OUTPUT_NAMES]
    if inputs != expected_in or outputs != expected_out:
        raise RuntimeError(
            f"{path}: exported interface {inputs} -> {outputs}, expected {expected_in} -> {expected_out}"
        )
    opsets = {o.domain: o.version for o in model.opset_import}
    with atomic_path(path) as tmp:
        onnx.save_model(model, tmp)
    return OnnxInfo(Path(path), opsets.get("", opset), precision, inputs, outputs)


def realistic_observations(actor: DeterministicActor, n: int = 10_000, seed: int = 0) -> np.ndarray:
    """``[n, obs_dim]`` float32 observations drawn around the actor's normaliser.

    ``obs = obs_mean + obs_std * z`` with ``z ~ N(0, 1)``: the distribution the actor was
    normalised for. Used for parity when no recorded observations are given.
    """
    rng = np.random.default_rng(seed)
    mean = actor.obs_mean.numpy().astype(np.float64)
    std = actor.obs_std.numpy().astype(np.float64)
    return (mean + std * rng.standard_normal((n, mean.shape[0]))).astype(np.float32)
