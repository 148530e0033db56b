"""Benchmark: batched-simulator training throughput by torch thread count, with and without
numpy's BLAS held to one thread during rollouts, alone and beside a competing busy process.

Each configuration trains DRAIL on lane_change in the batched simulator (the demo's settings:
128 scenes x 16 steps, PPO batch 512 x 5 epochs, discriminator 512 x 1) for ``--steps`` env steps
in a fresh subprocess, on pairs converted from the embedded demo log. Reported per configuration:
env steps/s over the run after its first iterations (threads "default: n" is ``torch_threads=0``, with n the
idle cores the same rule finds right after the run, its competitor still running), and the seconds spent in rollouts,
discriminator and PPO (``metrics.csv``'s ``time/*``). Ratios are against the 1-thread run with the
BLAS limit on, measured in the same invocation. ``blas_limit: false`` patches the limit out
(``drive_drail.train.rollout.single_threaded_blas``), which is how the trainer ran before it.
The competing process is a pure-Python busy loop on one core. Prints JSON:

    python benchmarks/training_threads.py [--steps 60000] [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import platform
import tempfile
import time
from pathlib import Path

DEMO_LOG = Path(__file__).resolve().parents[1] / "datasets" / "highway_lane_change" / "expert_log.parquet"


def _busy(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _train(job: dict, queue) -> None:
    import pandas as pd
    import torch

    import drive_drail.train.rollout as rollout
    from drive_drail.train.adversarial import train
    from drive_drail.train.config import DiscConfig, PPOConfig, TrainConfig

    if not job["blas_limit"]:
        rollout.single_threaded_blas = contextlib.nullcontext
    if job.get("kernel", "auto") != "auto":  # how the batched simulator steps frames (sim/batched/env.KERNELS)
        import drive_drail.sim.batched.env as batched_env

        init = batched_env.BatchedHighwayEnv.__init__
        batched_env.BatchedHighwayEnv.__init__ = lambda self, *a, **k: init(self, *a, **{**k, "kernel": job["kernel"]})
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    config = TrainConfig(scenario="lane_change", algo="drail", demos=job["demos"], sim="batched", steps=job["steps"],
                         n_envs=128, ppo=PPOConfig(n_steps=16, batch_size=512, epochs=5), disc=DiscConfig(epochs=1, batch=512),
                         torch_threads=job["threads"], seed=0, out=job["out"])
    start = time.perf_counter()
    train(config, progress=False)
    wall = time.perf_counter() - start
    m = pd.read_csv(Path(job["out"]) / "metrics.csv")
    steady = m["charts/sps"].dropna().iloc[3:]
    queue.put({"threads": job["threads"] or f"default: {config.learner_threads()}", "blas_limit": job["blas_limit"], "competing_process": job["busy"],
               "kernel": job.get("kernel", "auto"),
               "env_steps_per_s": round(float(steady.mean()), 1), "wall_s": round(wall, 1),
               **{k.split("/")[1]: round(float(m[k].sum()), 2) for k in ("time/rollout_s", "time/discriminator_s", "time/ppo_s")}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60_000, help="env steps per configuration")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    from drive_drail.pairs.convert import ConvertConfig, convert_file

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        demos = str(Path(tmp) / "pairs.parquet")
        convert_file(str(DEMO_LOG), demos, "auto", ConvertConfig(action_hz=5))
        runs = []
        for busy in (False, True):
            for threads, blas_limit in ((1, True), (2, True), (2, False), (0, True)):
                stop = ctx.Event()
                competitor = ctx.Process(target=_busy, args=(stop,)) if busy else None
                if competitor:
                    competitor.start()
                queue = ctx.Queue()
                job = {"threads": threads, "blas_limit": blas_limit, "busy": busy, "steps": args.steps, "demos": demos,
                       "out": str(Path(tmp) / f"t{threads}-{blas_limit}-{busy}")}
                proc = ctx.Process(target=_train, args=(job, queue))
                proc.start()
                runs.append(queue.get())
                proc.join()
                if competitor:
                    stop.set()
                    competitor.join()
    for busy in (False, True):
        base = next(r for r in runs if r["threads"] == 1 and r["blas_limit"] and r["competing_process"] == busy)
        for r in runs:
            if r["competing_process"] == busy:
                r["ratio_vs_1_thread"] = round(r["env_steps_per_s"] / base["env_steps_per_s"], 2)
    result = {"benchmark": "training_threads", "scenario": "lane_change", "steps_per_config": args.steps,
              "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": mp.cpu_count()},
              "runs": runs}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
