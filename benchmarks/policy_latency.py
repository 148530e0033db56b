"""Policy inference latency: torch eager vs torch inference_mode vs onnxruntime (vs TensorRT).

Times one ``act``-style call, NumPy observations in and NumPy actions out, for the
default actor (hidden (256, 256), tanh), at batch 1 and batch 64. All backends run in the
same process and run, taking turns in blocks, and each reports its ratio to torch eager
measured here.

- torch_eager: ``actor(torch.from_numpy(obs)).detach().numpy()``, autograd on (a plain call).
  torch gets 1 intra-op thread by default (``--torch-threads``), the same as onnxruntime.
- torch_inference_mode: ``DeterministicActor.act`` (``torch.inference_mode``).
- onnxruntime: ``drive_drail.deploy.runtime`` on the exported fp32 ONNX, CPU execution
  provider, 1 intra-op thread, sequential execution, all graph optimisations.
- tensorrt / tensorrt_fp16: the fp32 / fp16 engine, only where TensorRT and a CUDA GPU are
  present (CUDA I/O through torch tensors, host copies included in the time).

Prints JSON only. Usage: ``python benchmarks/policy_latency.py [--iters 5000] [--warmup 500]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from drive_drail import spec
from drive_drail.deploy import tensorrt_build as trtb
from drive_drail.deploy.export import export_policy
from drive_drail.deploy.runtime import load_policy
from drive_drail.models.policy import ActorConfig, DeterministicActor

BATCHES = (1, 64)


def make_actor(seed: int = 0) -> DeterministicActor:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    return DeterministicActor(
        ActorConfig(), rng.normal(0.0, 0.5, spec.OBS_DIM), rng.uniform(0.1, 2.0, spec.OBS_DIM)
    ).eval()


def time_backends(
    backends: dict[str, Callable[[np.ndarray], np.ndarray]], obs: np.ndarray, iters: int, warmup: int, rounds: int = 10
) -> dict[str, dict]:
    """p50/p99/mean latency [us] and throughput [observations/s] of each ``fn(obs)``, one call at a time.

    The backends take turns in ``rounds`` blocks of ``iters / rounds`` calls, so load from
    other processes on a shared machine falls on all of them alike.
    """
    for fn in backends.values():
        for _ in range(warmup):
            fn(obs)
    per_round = max(1, iters // rounds)
    samples_ns = {name: [] for name in backends}
    for _ in range(rounds):
        for name, fn in backends.items():
            block = np.empty(per_round, dtype=np.int64)
            for i in range(per_round):
                t0 = time.perf_counter_ns()
                fn(obs)
                block[i] = time.perf_counter_ns() - t0
            samples_ns[name].append(block)
    stats = {}
    for name, blocks in samples_ns.items():
        us = np.concatenate(blocks) / 1e3
        stats[name] = {
            "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()),
            "throughput_obs_per_s": obs.shape[0] / (float(us.mean()) / 1e6),
        }
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5000, help="timed calls per backend and batch")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls before timing")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch intra-op threads (1 = same compute as onnxruntime)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)

    actor = make_actor()
    trt_ok, trt_reason = trtb.tensorrt_status()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        actor.save(tmp_path / "actor.pt")
        export_policy(tmp_path / "actor.pt", tmp_path / "fp32", "fp32", batch="1:64:64")
        backends: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

        def torch_eager(obs: np.ndarray) -> np.ndarray:
            return actor(torch.from_numpy(obs)).detach().numpy()

        backends["torch_eager"] = torch_eager
        backends["torch_inference_mode"] = actor.act
        backends["onnxruntime"] = load_policy(tmp_path / "fp32", backend="onnxruntime", intra_op_threads=1).act
        if trt_ok:
            backends["tensorrt"] = load_policy(tmp_path / "fp32", backend="tensorrt").act
            export_policy(tmp_path / "actor.pt", tmp_path / "fp16", "fp16", batch="1:64:64")
            backends["tensorrt_fp16"] = load_policy(tmp_path / "fp16", backend="tensorrt").act

        rng = np.random.default_rng(1)
        results: dict[str, dict] = {}
        for batch in BATCHES:
            obs = (actor.obs_mean.numpy() + actor.obs_std.numpy() * rng.standard_normal((batch, spec.OBS_DIM))).astype(
                np.float32
            )
            row = time_backends(backends, obs, args.iters, args.warmup)
            base = row["torch_eager"]
            for r in row.values():
                r["speedup_p50_vs_torch_eager"] = base["p50_us"] / r["p50_us"]
                r["speedup_p99_vs_torch_eager"] = base["p99_us"] / r["p99_us"]
            results[f"batch_{batch}"] = row

    import onnxruntime

    report = {
        "benchmark": "policy_latency",
        "actor": {
            "hidden_sizes": list(ActorConfig().hidden_sizes),
            "activation": ActorConfig().activation,
            "obs_dim": spec.OBS_DIM,
        },
        "iters": args.iters,
        "warmup": args.warmup,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "onnxruntime_intra_op_threads": 1,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
        "tensorrt": "measured" if trt_ok else f"not measured: {trt_reason}",
        "targets": {
            "onnxruntime_batch1_p50_speedup_vs_torch_eager_min": 3.0,
            "tensorrt_batch1_p99_us_max": 100.0,
        },
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
