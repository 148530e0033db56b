"""DRAIL reward throughput: fused scoring (c+ and c- in ONE pass sharing t, eps) versus two
separate passes with their own t and eps (the public implementation's way).

Two network designs: the label concatenated to the input (METHOD.md's, the default), and the
label as a FiLM of the last hidden layer (``label_injection="film"``), whose fused pass runs
the label-free trunk once for both labels.

Both paths score the same weights on the same pairs, ``[batch, OBS_DIM + 2]``, with the
default network. Times are medians over repeats after a warm-up, all inside one run.
Prints JSON only:

    .venv/bin/python benchmarks/reward_throughput.py [--batch 4096] [--repeats 20] [--device cpu] [--threads 0]
"""

from __future__ import annotations

import argparse
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
    configs = {
        "fused": DiffusionDiscriminatorConfig(device=args.device),  # the default network and scoring
        "unshared": DiffusionDiscriminatorConfig(device=args.device, scoring="unshared"),
        "fused_unchunked": DiffusionDiscriminatorConfig(device=args.device, chunk_size=args.batch),
        "unshared_unchunked": DiffusionDiscriminatorConfig(
            device=args.device, scoring="unshared", chunk_size=args.batch
        ),
    }
    configs["film_fused"] = DiffusionDiscriminatorConfig(device=args.device, label_injection="film")
    configs["film_unshared"] = DiffusionDiscriminatorConfig(device=args.device, label_injection="film", scoring="unshared")
    discs = {name: DiffusionDiscriminator(obs_dim, act_dim, cfg, seed=0) for name, cfg in configs.items()}
    for name, disc in discs.items():  # identical weights within each network design
        disc.load_state_dict(discs["film_fused" if name.startswith("film") else "fused"].state_dict())

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((args.batch, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, (args.batch, act_dim)).astype(np.float32)
    x0 = discs["fused"].pairs(obs, act)
    sync = torch.cuda.synchronize if x0.device.type == "cuda" else (lambda: None)

    def score(disc: DiffusionDiscriminator) -> Callable[[], torch.Tensor]:
        """The scoring pass alone: Eq. 1 under both labels and the logit, tensors in and out."""

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return disc.logit_from_losses(*disc.expected_losses(x0, disc.noise_generator))

        return run

    def reward(disc: DiffusionDiscriminator) -> Callable[[], np.ndarray]:
        return lambda: disc.reward(obs, act)

    jobs = {f"pass/{name}": score(disc) for name, disc in discs.items()}
    jobs.update({f"reward/{name}": reward(discs[name]) for name in ("fused", "unshared", "film_fused", "film_unshared")})
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

    fused_cfg = configs["fused"]
    result = {
        "benchmark": "reward_throughput",
        "batch": args.batch,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "network": {
            "hidden_dim": fused_cfg.hidden_dim,
            "n_hidden_layers": fused_cfg.n_hidden_layers,
            "activation": fused_cfg.activation,
            "time_embed_dim": fused_cfg.time_embed_dim,
            "label_dim": fused_cfg.label_dim,
        },
        "scoring_pass": {
            "fused_pairs_per_s": args.batch / med["pass/fused"],
            "unshared_two_pass_pairs_per_s": args.batch / med["pass/unshared"],
            "ratio_fused_over_unshared": ratio("pass/unshared", "pass/fused"),
            "fused_unchunked_pairs_per_s": args.batch / med["pass/fused_unchunked"],
            "unshared_unchunked_pairs_per_s": args.batch / med["pass/unshared_unchunked"],
            "ratio_fused_over_unshared_unchunked": ratio("pass/unshared_unchunked", "pass/fused_unchunked"),
            "ratio_chunked_over_unchunked_fused": ratio("pass/fused_unchunked", "pass/fused"),
            "chunk_size": fused_cfg.chunk_size,
        },
        "reward_end_to_end": {
            "fused_pairs_per_s": args.batch / med["reward/fused"],
            "unshared_two_pass_pairs_per_s": args.batch / med["reward/unshared"],
            "ratio_fused_over_unshared": ratio("reward/unshared", "reward/fused"),
            "fused_ms_per_call": 1e3 * med["reward/fused"],
        },
        "film_label_injection": {
            "note": "label as a FiLM of the last hidden layer: the fused pass runs the label-free trunk once",
            "fused_pairs_per_s": args.batch / med["pass/film_fused"],
            "unshared_two_pass_pairs_per_s": args.batch / med["pass/film_unshared"],
            "ratio_fused_over_unshared": ratio("pass/film_unshared", "pass/film_fused"),
            "reward_ratio_fused_over_unshared": ratio("reward/film_unshared", "reward/film_fused"),
            "ratio_over_input_label_fused": ratio("pass/fused", "pass/film_fused"),
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
