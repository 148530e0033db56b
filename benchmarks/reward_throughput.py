"""DRAIL reward throughput: fused scoring (c+ and c- in ONE pass sharing t, eps) versus two
separate passes with their own t and eps (the public implementation's way).

Both network designs: the label as a FiLM of the last hidden layer (``label_injection="film"``,
the default), whose fused pass runs the label-free trunk once, and the label concatenated to the
input (METHOD.md's public implementation), whose fused pass shares only the first layer's x_t
part and the time embedding. For each: the scoring pass alone (tensors in and out) and the
reward end to end (numpy pairs in, numpy rewards out), fused against unshared.

All paths of one design score the same weights on the same pairs, ``[batch, OBS_DIM + 2]``.
Jobs run round-robin; each ratio is the median over repeats of the ratio within a repeat.
Prints JSON only:

    .venv/bin/python benchmarks/reward_throughput.py [--batch 4096] [--repeats 20] [--device cpu] [--threads 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from typing import Callable

import numpy as np
import torch

from drive_drail import spec
from drive_drail.models.diffusion_discriminator import DiffusionDiscriminator, DiffusionDiscriminatorConfig


def seconds(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="pairs per call")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls of each job first")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds; medians are reported")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 leaves torch's default")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    obs_dim, act_dim = spec.OBS_DIM, spec.ACTION_DIM
    default = DiffusionDiscriminatorConfig(device=args.device)
    designs = ("film", "input")
    configs = {}
    for design in designs:
        base = dataclasses.replace(default, label_injection=design)
        configs[f"{design}/fused"] = base
        configs[f"{design}/unshared"] = dataclasses.replace(base, scoring="unshared")
    configs["default/fused_unchunked"] = dataclasses.replace(default, chunk_size=args.batch)
    discs = {name: DiffusionDiscriminator(obs_dim, act_dim, cfg, seed=0) for name, cfg in configs.items()}
    for name, disc in discs.items():  # identical weights within each network design
        design = default.label_injection if name.startswith("default/") else name.split("/")[0]
        disc.load_state_dict(discs[f"{design}/fused"].state_dict())

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((args.batch, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, (args.batch, act_dim)).astype(np.float32)
    x0 = discs["film/fused"].pairs(obs, act)
    sync = torch.cuda.synchronize if x0.device.type == "cuda" else (lambda: None)

    def score(disc: DiffusionDiscriminator) -> Callable[[], torch.Tensor]:
        """The scoring pass alone: Eq. 1 under both labels and the logit, tensors in and out."""

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return disc.logit_from_losses(*disc.expected_losses(x0, disc.noise_generator))

        return run

    jobs = {f"pass/{name}": score(disc) for name, disc in discs.items()}
    jobs.update({f"reward/{name}": (lambda d=discs[name]: d.reward(obs, act)) for name in configs if not name.startswith("default/")})
    for job in jobs.values():
        for _ in range(args.warmup):
            job()
    # round-robin: each repeat times every job once, so drifting machine load hits all alike;
    # ratios are taken within a repeat, then the median over repeats
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            times[name].append(seconds(job, sync))
    med = {name: statistics.median(ts) for name, ts in times.items()}

    def ratio(slow: str, fast: str) -> float:
        return statistics.median(a / b for a, b in zip(times[slow], times[fast]))

    def design_result(design: str) -> dict:
        return {
            "scoring_pass": {
                "fused_pairs_per_s": args.batch / med[f"pass/{design}/fused"],
                "unshared_two_pass_pairs_per_s": args.batch / med[f"pass/{design}/unshared"],
                "ratio_fused_over_unshared": ratio(f"pass/{design}/unshared", f"pass/{design}/fused"),
            },
            "reward_end_to_end": {
                "fused_pairs_per_s": args.batch / med[f"reward/{design}/fused"],
                "unshared_two_pass_pairs_per_s": args.batch / med[f"reward/{design}/unshared"],
                "ratio_fused_over_unshared": ratio(f"reward/{design}/unshared", f"reward/{design}/fused"),
                "fused_ms_per_call": 1e3 * med[f"reward/{design}/fused"],
            },
        }

    result = {
        "benchmark": "reward_throughput",
        "batch": args.batch,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "network": {
            "hidden_dim": default.hidden_dim,
            "n_hidden_layers": default.n_hidden_layers,
            "activation": default.activation,
            "time_embed_dim": default.time_embed_dim,
            "label_dim": default.label_dim,
            "default_label_injection": default.label_injection,
        },
        "film_label": design_result("film"),
        "input_label": design_result("input"),
        "ratio_film_fused_over_input_fused": ratio("pass/input/fused", "pass/film/fused"),
        "chunking": {
            "chunk_size": default.chunk_size,
            "ratio_chunked_over_unchunked_fused": ratio("pass/default/fused_unchunked", f"pass/{default.label_injection}/fused"),
        },
        "target_ratio": 1.8,
        "timing": {"warmup": args.warmup, "repeats": args.repeats, "order": "round-robin", "statistic": "median"},
        "device": str(x0.device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
