"""Closed-loop evaluation throughput: episodes per minute for 1, 2 and N worker processes.

Runs :func:`drive_drail.evaluate.runner.evaluate` on the same episodes (scenario
``--scenario``, its first ``--episodes`` held-out seeds, the scripted expert and a
torch actor, no ADE reference) with 1 worker, 2 workers and all cores, in one run, and
reports each against the 1-worker throughput measured here (``scaling`` = episodes/min
over the 1-worker episodes/min; ideal = workers). Wall time includes starting the
worker processes (spawn), as a user's ``drive-drail evaluate`` pays it. It also checks
that every worker count produced the identical table.

Prints JSON only. Usage:
``python benchmarks/evaluation_throughput.py [--scenario lane_change] [--episodes 8] [--episode-seconds 10]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from drive_drail.process import usable_cores
from drive_drail.evaluate.runner import evaluate
from drive_drail.models.policy import ActorConfig, DeterministicActor
from drive_drail.scenario import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="lane_change")
    parser.add_argument("--episodes", type=int, default=8, help="held-out seeds per measurement (default 8)")
    parser.add_argument("--episode-seconds", type=float, default=10.0, help="episode length override [s] (default 10)")
    args = parser.parse_args()

    scenario = dataclasses.replace(load_scenario(args.scenario), episode_seconds=args.episode_seconds)
    n_cores = usable_cores()
    counts = sorted({1, 2, n_cores})
    with tempfile.TemporaryDirectory() as tmp:
        actor = Path(tmp) / "actor.pt"
        torch.manual_seed(0)
        DeterministicActor(ActorConfig()).save(actor)
        policies = ["expert", f"actor={actor}"]
        runs, tables = [], []
        for workers in counts:
            t0 = time.perf_counter()
            table = evaluate(policies, [scenario], episodes=args.episodes, split="eval", workers=workers, reference=False)
            wall_s = time.perf_counter() - t0
            tables.append(table)
            runs.append({"workers": workers, "episodes": len(table), "policy_steps": int(table.steps.sum()), "wall_s": round(wall_s, 3), "episodes_per_min": round(60.0 * len(table) / wall_s, 2)})
    base = runs[0]["episodes_per_min"]
    for r in runs:
        r["scaling"] = round(r["episodes_per_min"] / base, 3)
        r["steps_per_s"] = round(r["policy_steps"] / r["wall_s"], 1)
    identical = all(t.equals(tables[0]) for t in tables[1:])
    print(
        json.dumps(
            {
                "benchmark": "evaluation_throughput",
                "scenario": args.scenario,
                "episode_seconds": args.episode_seconds,
                "episodes_per_measurement": len(tables[0]),
                "policies": ["expert", "torch actor (256, 256)"],
                "cores": n_cores,
                "runs": runs,
                "scaling_n_workers": runs[-1]["scaling"],
                "tables_identical": identical,
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
