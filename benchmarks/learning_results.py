"""Learning results: DRAIL against GAIL, DiffAIL-style and BC, side by side.

For each scenario: record the scripted expert, convert its log with the same converter,
measure the expert's own success (the ceiling), then train every algorithm at the same
environment-step budget for several seeds and evaluate each policy closed loop on the
scenario's HELD-OUT seeds. Writes ``RESULTS.md`` and ``results.json`` into ``--out`` and
prints the JSON.

    python benchmarks/learning_results.py --steps 1536 --seeds 0 1 2 --out benchmarks/results/learning_highway
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from drive_drail.atomic import write_json, write_text


def timed_train(config) -> float:
    """Train one run (in a pool worker); returns its wall time in seconds."""
    from drive_drail.train.adversarial import train

    t0 = time.time()
    train(config, progress=False)
    return time.time() - t0


def run(args: argparse.Namespace) -> dict:
    import shutil

    from drive_drail.evaluate.batched import score_in_batched_sim
    from drive_drail.evaluate.runner import evaluate
    from drive_drail.models.policy import DeterministicActor
    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.record import record_episodes
    from drive_drail.scenario import load_scenario
    from drive_drail.train.config import TrainConfig

    out = Path(args.out)
    started = time.time()
    results: dict = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "scenarios": {}}
    for name in args.scenarios:
        scenario = load_scenario(name)
        work = out / "work" / name
        log = record_episodes(scenario, n_episodes=args.demo_episodes, seed=0, out_path=work / "expert_log.parquet", progress=False)
        pairs, _ = convert_file(str(log), str(work / "pairs.parquet"), "auto", ConvertConfig(action_hz=scenario.policy_frequency_hz))
        eval_seeds = list(scenario.eval_seeds[: args.eval_episodes])
        runs: dict[str, list[tuple[int, Path]]] = {}
        todo = []
        for algo in args.algos:
            for seed in args.seeds:
                run_dir = work / f"{algo}-s{seed}"
                runs.setdefault(algo, []).append((seed, run_dir))
                if not (args.reuse and (run_dir / "actor.pt").exists()):
                    shutil.rmtree(run_dir, ignore_errors=True)
                    todo.append(TrainConfig(
                        scenario=name, algo=algo, demos=str(work / "pairs.parquet"), steps=args.steps, seed=seed,
                        sim=args.sim, n_envs=args.n_envs, n_steps=args.n_steps, batch_size=args.ppo_batch,
                        ppo_epochs=args.ppo_epochs, learning_rate=args.ppo_lr, label_injection=args.label_injection, disc_epochs=args.disc_epochs, disc_batch=args.disc_batch,
                        torch_threads=max(1, (os.cpu_count() or 1) // args.jobs), out=str(run_dir)))
        # Runs are independent: --jobs of them at once, sharing the cores.
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("forkserver")) as pool:
            for config, wall_s in zip(todo, pool.map(timed_train, todo)):
                write_json(Path(config.out) / "wall_time.json", {"train_s": wall_s})
        # One closed-loop evaluation of every policy on the held-out seeds, the expert included.
        specs = ["expert"] + [f"{algo}-s{seed}={run_dir}" for algo, rs in runs.items() for seed, run_dir in rs]
        table = evaluate(specs, scenario, episodes=args.eval_episodes, split="eval", workers=2, reference=False)
        table.to_csv(work / "eval_episodes.csv", index=False)
        by_policy = table.groupby("policy")[["success", "collision", "mean_speed_mps"]].mean()
        expert = by_policy.loc["expert"]
        entry = {"expert": {"success_rate": float(expert.success), "collision_rate": float(expert.collision),
                            "mean_speed_mps": float(expert.mean_speed_mps)},
                 "n_pairs": int(len(pairs)), "eval_seeds": eval_seeds, "algos": {}}
        for algo, rs in runs.items():
            per_seed = [{"seed": seed, "train_s": json.loads((run_dir / "wall_time.json").read_text())["train_s"],
                         **{k: float(by_policy.loc[f"{algo}-s{seed}", k]) for k in ("success", "collision", "mean_speed_mps")}}
                        for seed, run_dir in rs]
            if args.sim == "batched":  # the trainer's own simulator, same held-out seeds: the transfer gap
                for row, (_, run_dir) in zip(per_seed, rs):
                    outcome = score_in_batched_sim(scenario, DeterministicActor.load(run_dir / "actor.pt").act, eval_seeds)
                    row["batched_success"] = float(outcome["success"].mean())
                    row["batched_collision"] = float(outcome["collision"].mean())
            entry["algos"][algo] = {
                "per_seed": per_seed,
                **{f"{k}_mean": float(np.mean([r[k] for r in per_seed])) for k in per_seed[0] if k != "seed"},
                **{f"{k}_std": float(np.std([r[k] for r in per_seed])) for k in per_seed[0] if k != "seed"},
            }
        results["scenarios"][name] = entry
    results["budget"] = {"env_steps_per_run": args.steps, "seeds": args.seeds, "demo_episodes": args.demo_episodes,
                         "eval_episodes_per_policy": args.eval_episodes, "sim": args.sim, "n_envs": args.n_envs,
                         "n_steps": args.n_steps, "ppo_batch": args.ppo_batch, "ppo_epochs": args.ppo_epochs, "ppo_lr": args.ppo_lr, "label_injection": args.label_injection,
                         "disc_epochs": args.disc_epochs, "disc_batch": args.disc_batch, "jobs": args.jobs}
    results["wall_time_s"] = round(time.time() - started, 1)
    return results


def markdown(results: dict) -> str:
    b = results["budget"]
    lines = [
        f"# Learning results: {results.get('title', 'highway-env')}",
        "",
        f"Command: `{results['command']}`  ",
        f"Wall time: {results['wall_time_s'] / 60:.1f} min on a 2-core CPU machine.  ",
        f"Budget: {b['env_steps_per_run']} env steps per run (BC uses none), seeds {b['seeds']}, "
        f"{b['demo_episodes']} expert episodes recorded per scenario, {b['eval_episodes_per_policy']} held-out episodes per policy.",
        "",
        "Mean ± std over seeds, evaluated closed loop on the scenario's held-out seeds.",
        "",
        *([f"Trained in the batched simulator ({b['n_envs']} scenes x {b['n_steps']} steps per iteration, PPO batch "
           f"{b['ppo_batch']} x {b['ppo_epochs']} epochs, discriminator batch {b['disc_batch']} x {b['disc_epochs']} epochs, "
           f"{b['jobs']} runs at once); scored in highway-env.", ""] if b.get("sim") == "batched" else []),
    ]
    transfer = b.get("sim") == "batched"
    lines += [
        "| scenario | policy | success | collision | mean speed (m/s) |" + (" success in the batched sim (same seeds) | train wall (s) |" if transfer else ""),
        "|---|---|---|---|---|" + ("---|---|" if transfer else ""),
    ]
    for name, entry in results["scenarios"].items():
        e = entry["expert"]
        lines.append(f"| {name} | expert (ceiling) | {e['success_rate']:.2f} | {e['collision_rate']:.2f} | {e.get('mean_speed_mps', float('nan')):.1f} |"
                     + (" | |" if transfer else ""))
        for algo, r in entry["algos"].items():
            lines.append(
                f"| {name} | {algo} | {r['success_mean']:.2f} ± {r['success_std']:.2f} | "
                f"{r['collision_mean']:.2f} ± {r['collision_std']:.2f} | {r['mean_speed_mps_mean']:.1f} ± {r['mean_speed_mps_std']:.1f} |"
                + (f" {r['batched_success_mean']:.2f} ± {r['batched_success_std']:.2f} | {r['train_s_mean']:.0f} |"
                   if transfer and "batched_success_mean" in r else " | | " if transfer else "")
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["lane_change", "merge", "stop"])
    parser.add_argument("--algos", nargs="+", default=["drail", "gail", "diffail", "bc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1536)
    parser.add_argument("--sim", default="adapter", choices=["adapter", "batched"], help="training simulator (evaluation is always highway-env)")
    parser.add_argument("--n-envs", type=int, default=2, help="workers (adapter) or scenes (batched)")
    parser.add_argument("--n-steps", type=int, default=128, help="rollout steps per env per iteration")
    parser.add_argument("--ppo-batch", type=int, default=128)
    parser.add_argument("--ppo-epochs", type=int, default=10)
    parser.add_argument("--ppo-lr", type=float, default=1e-4, help="PPO learning rate (tables before 2026-11-25 11:00 used 3e-4)")
    parser.add_argument("--disc-epochs", type=int, default=5)
    parser.add_argument("--label-injection", choices=["input", "film"], default="film",
                        help="DRAIL's label: FiLM (default; tables before 2026-11-25 14:00 used input) or network input")
    parser.add_argument("--disc-batch", type=int, default=128)
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once (use 2 with --sim batched on 2 cores)")
    parser.add_argument("--demo-episodes", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=6)
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs in --out/work")
    parser.add_argument("--out", default="benchmarks/results/learning_highway")
    parser.add_argument("--title", default="highway-env")
    args = parser.parse_args()
    results = run(args)
    results["title"] = args.title
    out = Path(args.out)
    write_json(out / "results.json", results)
    write_text(out / "RESULTS.md", markdown(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
