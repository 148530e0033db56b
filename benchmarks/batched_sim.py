"""Batched highway simulator throughput against highway-env, measured in the same run.

Env-steps/s (policy steps x scenes per second, including observations, episode logic and
auto-resets) of:

- highway-env, single process: the project's ``HighwayAdapter`` stepping one scene;
- highway-env, 2-process vector env: SB3 ``SubprocVecEnv`` over the trainer's environments, stepped in lock step;
- the batched simulator (``BatchedHighwayEnv.step``) at B = 1, 64, 512, 4096, with its default
  kernel (on a CPU: the compiled one, ``sim/batched/kernel.py``) and with the whole-array torch path
  (``kernel="torch"``), and its SB3 adapter (``make_batched_vec_env``, per-scene info dicts) at the largest B;
- EnvPool's C++ ``HighwayFast-v0`` (the ``[bench]`` extra) at the same B, same road and traffic;
- with ``--contention``: the batched simulator at the largest B beside a competing busy process (a
  pure-Python loop holding one core), with torch's default threads and with 1 thread, quiet and busy.
  Its fair share is the 1-thread rate beside the competitor: the run confined to the one core left
  to it (the JSON also gives the quiet 1-thread rate; on a machine whose cores share hardware the two
  differ). Target: the default run within 1.5x of its fair share. Until 2026-12-08 the "1-thread" runs
  ran on 2 threads after their first step (numba's OpenMP start reset torch's count, fixed in
  ``sim/batched/kernel.py``), so earlier JSON files overstate the 1-thread rates and the fair share.

Every configuration runs in a fresh subprocess, so its peak memory is its own: ``peak_rss_mb``
is the process's peak resident set size and ``rss_delta_mb`` its growth over the process
right after imports (torch CPU tensors are not seen by tracemalloc). On CUDA the peak
allocated GPU memory is reported too. Actions are fixed mild random ones (the ego mostly
stays on the road). Prints JSON only:

    .venv/bin/python benchmarks/batched_sim.py [--scenario lane_change] [--sizes 1 64 512 4096]
        [--seconds 4] [--threads 1] [--device cpu] [--contention] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _actions(rng: np.random.Generator, b: int) -> np.ndarray:
    return np.stack([rng.uniform(-0.3, 0.6, b), rng.normal(0.0, 0.01, b)], axis=1).astype(np.float32)


def _timed(step, seconds: float, min_steps: int) -> tuple[int, float]:
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps, time.perf_counter() - start


def run_job(job: dict, queue: mp.Queue) -> None:
    """One measurement in this (fresh) process; puts a result dict on ``queue``."""
    import torch

    if job["threads"] > 0:
        torch.set_num_threads(job["threads"])
    from drive_drail import spec
    from drive_drail.scenario import load_scenario

    scenario = load_scenario(job["scenario"])
    rng = np.random.default_rng(0)
    base_rss = _rss_mb()
    kind = job["kind"]
    if kind == "highway_1proc":
        from drive_drail.sim.highway import HighwayAdapter

        env = HighwayAdapter(scenario)
        env.reset()

        def step():
            _, _, terminated, truncated, _ = env.step(_actions(rng, 1)[0])
            if terminated or truncated:
                env.reset()

        b = 1
    elif kind == "envpool":
        import envpool

        b = job["b"]
        env = envpool.make("HighwayFast-v0", env_type="gymnasium", num_envs=b, batch_size=b, num_threads=job["envpool_threads"],
                           lanes_count=3, vehicles_count=20, simulation_frequency=10, policy_frequency=5, seed=0)
        env.reset()

        def step():
            env.step(rng.integers(0, 5, size=b))  # EnvPool auto-resets finished envs itself

    elif kind == "highway_2proc":
        from stable_baselines3.common.vec_env import SubprocVecEnv

        from drive_drail.train.envs import env_factory

        b = 2
        env = SubprocVecEnv([env_factory(job["scenario"], w, b, np.zeros(spec.OBS_DIM), np.ones(spec.OBS_DIM), 0) for w in range(b)],
                            start_method="forkserver")
        env.reset()

        def step():
            env.step(_actions(rng, b))

    else:
        from drive_drail.sim.batched.env import BatchedHighwayEnv
        from drive_drail.sim.batched.vec_env import BatchedSB3VecEnv

        b = job["b"]
        core = BatchedHighwayEnv(scenario, b, device=job["device"], kernel=job.get("kernel", "auto"))
        env = BatchedSB3VecEnv(core) if kind == "batched_sb3" else core
        env.reset()
        acts = [_actions(rng, b) for _ in range(8)]
        count = [0]

        def step():
            count[0] += 1
            env.step(acts[count[0] % 8]) if kind == "batched" else (env.step_async(acts[count[0] % 8]), env.step_wait())

        if job["device"].startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
    step()  # warm-up (first-call allocations)
    steps, elapsed = _timed(step, job["seconds"], job["min_steps"])
    if job["device"].startswith("cuda") and kind.startswith("batched"):
        torch.cuda.synchronize()
    result = {
        "kind": kind,
        **({"kernel": core.kernel} if kind.startswith("batched") else {}),
        "b": b,
        "policy_steps": steps,
        "seconds": round(elapsed, 3),
        "env_steps_per_s": round(steps * b / elapsed, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_delta_mb": round(_peak_rss_mb() - base_rss, 1),
    }
    if job["device"].startswith("cuda") and kind.startswith("batched"):
        result["gpu_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if kind == "highway_2proc":
        env.close()
    queue.put(result)


def _busy(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def measure(job: dict) -> dict:
    """``job`` measured in a fresh process; ``job["busy"]``: beside a competing busy process, started first."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    competitor = ctx.Process(target=_busy, args=(stop,)) if job.get("busy") else None
    if competitor:
        competitor.start()
    queue = ctx.Queue()
    proc = ctx.Process(target=run_job, args=(job, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if competitor:
        stop.set()
        competitor.join()
    return {**result, "threads": job["threads"] or "default", "competing_process": bool(competitor)}


def contention(common: dict, b: int, device: str) -> dict:
    """The default run's rate beside a busy process against its fair share (1 thread beside the same process)."""
    job = {**common, "kind": "batched", "b": b, "device": device, "min_steps": 3}
    runs = [measure({**job, "threads": threads, "busy": busy}) for busy in (False, True) for threads in (1, 0)]
    quiet_1, quiet_default, fair, default_busy = (r["env_steps_per_s"] for r in runs)
    return {"b": b, "runs": runs, "fair_share_env_steps_per_s": fair, "default_busy_env_steps_per_s": default_busy,
            "fair_share_over_default_busy": round(fair / default_busy, 2), "target_at_most": 1.5,
            "quiet_1_thread_over_busy_1_thread": round(quiet_1 / fair, 2),
            "quiet_default_over_default_busy": round(quiet_default / default_busy, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="lane_change")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 512, 4096], help="batch sizes B")
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum timed seconds per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the batched runs; 0 leaves torch's default")
    parser.add_argument("--device", default="cpu", help="torch device of the batched simulator (cuda runs float32)")
    parser.add_argument("--envpool-threads", type=int, default=2, help="EnvPool worker threads (0: skip EnvPool)")
    parser.add_argument("--contention", action="store_true", help="also measure beside a competing busy process")
    parser.add_argument("--out", default=None, help="also write the JSON here (atomically)")
    args = parser.parse_args()

    common = {"scenario": args.scenario, "threads": args.threads, "device": "cpu", "seconds": args.seconds}
    highway = [measure({**common, "kind": "highway_1proc", "min_steps": 20}), measure({**common, "kind": "highway_2proc", "min_steps": 20})]
    batched = [measure({**common, "kind": "batched", "b": b, "device": args.device, "min_steps": 3}) for b in args.sizes]
    torch_path = [measure({**common, "kind": "batched", "kernel": "torch", "b": b, "device": args.device, "min_steps": 3}) for b in args.sizes]
    sb3 = measure({**common, "kind": "batched_sb3", "b": max(args.sizes), "device": args.device, "min_steps": 3})
    try:
        import envpool  # noqa: F401  (the peer is optional)

        peer = [measure({**common, "kind": "envpool", "b": b, "envpool_threads": args.envpool_threads, "min_steps": 3})
                for b in args.sizes] if args.envpool_threads > 0 else []
    except ImportError:
        peer = []
    two_proc = highway[1]["env_steps_per_s"]
    best = max(batched, key=lambda r: r["env_steps_per_s"])
    report = {
        "benchmark": "batched_sim",
        "scenario": args.scenario,
        "device": args.device,
        "torch_threads": args.threads,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": mp.cpu_count()},
        "highway_env": highway,
        "batched": batched,
        "batched_torch_path": torch_path,
        "kernel_speedup_vs_torch_path": {str(r["b"]): round(r["env_steps_per_s"] / t["env_steps_per_s"], 2) for r, t in zip(batched, torch_path)},
        "batched_sb3_vecenv": sb3,
        "best_b": best["b"],
        "speedup_vs_highway_2proc": {str(r["b"]): round(r["env_steps_per_s"] / two_proc, 1) for r in batched},
        "best_speedup_vs_highway_2proc": round(best["env_steps_per_s"] / two_proc, 1),
        "target_speedup": 100.0,
    }
    if peer:
        best_peer = max(peer, key=lambda r: r["env_steps_per_s"])
        report["envpool"] = {"threads": args.envpool_threads, "runs": peer,
                             "ratio_to_envpool": {str(r["b"]): round(r["env_steps_per_s"] / p["env_steps_per_s"], 3)
                                                  for r, p in zip(batched, peer)},
                             "best_ratio_to_envpool": round(best["env_steps_per_s"] / best_peer["env_steps_per_s"], 3)}
    if args.contention:
        report["contention"] = contention(common, max(args.sizes), args.device)
    text = json.dumps(report, indent=2)
    if args.out:
        from drive_drail.atomic import write_text

        write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
