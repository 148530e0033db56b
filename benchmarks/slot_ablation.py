"""Which neighbour slots does a policy depend on? Score it with slots m..K-1 emptied.

For each policy and each split, the held-out scenes (highway-env's own starts, in the batched
simulator) are played with the policy's observation cut to its ego features, its lead vehicle and
its m nearest neighbours: slots m..K-1 are set to what an empty slot reads (all zeros), m = K..0.
The simulator itself is untouched; only what the policy sees changes.

A policy that fails on a split with all K slots but succeeds when the far slots are emptied is
reading slots it never saw filled in training (the diagnosis of stop's dense split,
``results/learning_v5/READING.md``). Prints JSON: per policy, split and m, the success,
collision and off-road rates and their ratio to the all-slots success.

    python benchmarks/slot_ablation.py --scenario stop --splits eval dense --scenes 300 \\
        --policy benchmarks/results/learning_v5/work/stop/demos100/drail-s0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from drive_drail import spec
from drive_drail.evaluate.batched import score_policies_in_batched_sim
from drive_drail.models.encoders import EGO_DIM, SLOT_DIM
from drive_drail.models.policy import DeterministicActor
from drive_drail.scenario import load_scenario


def keep_nearest(act, m: int):
    """``act`` seeing only its m nearest neighbour slots (the others empty)."""

    def masked(obs: np.ndarray) -> np.ndarray:
        obs = np.array(obs, dtype=np.float32)
        obs[:, EGO_DIM + m * SLOT_DIM :] = 0.0
        return act(obs)

    return masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--policy", action="append", required=True, help="a run folder or actor.pt (repeatable)")
    parser.add_argument("--splits", nargs="+", default=["eval"], help="eval and/or the scenario's generalization splits")
    parser.add_argument("--scenes", type=int, default=300, help="held-out seeds per split")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = load_scenario(args.scenario)
    seeds = list(scenario.eval_seeds[: args.scenes])
    actors = {}
    for p in args.policy:
        path = Path(p) / "actor.pt" if Path(p).is_dir() else Path(p)
        actors[str(p)] = DeterministicActor.load(path)
    acts = {f"{name}|{m}": keep_nearest(actor.act, m) for name, actor in actors.items() for m in range(spec.K_NEIGHBOURS, -1, -1)}
    out: dict = {"scenario": args.scenario, "scenes": len(seeds), "k_neighbours": spec.K_NEIGHBOURS,
                 "command": "python " + " ".join(sys.argv), "policies": {}}
    for split in args.splits:
        scores = score_policies_in_batched_sim(scenario, acts, seeds, highway_starts=True, split=split)
        for name, actor in actors.items():
            rows = {}
            base = float(scores[f"{name}|{spec.K_NEIGHBOURS}"]["success"].mean())
            for m in range(spec.K_NEIGHBOURS, -1, -1):
                o = scores[f"{name}|{m}"]
                success = float(o["success"].mean())
                rows[f"keep_{m}"] = {"success": success, "collision": float(o["collision"].mean()),
                                     "offroad": float(o["offroad"].mean()),
                                     "ratio_to_all_slots": success / base if base else None}
            entry = out["policies"].setdefault(name, {"encoder": actor.config.encoder})
            entry[split] = rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
