"""Learning results: DRAIL against GAIL, BC, DiffAIL-style and DRAIL-UN, side by side.

For each scenario: record the scripted expert (the ego's episodes), convert its log with the
same converter (``--egos auto``: the ego alone), then train every algorithm at the same
environment-step budget for several seeds and score each policy, the expert included, on the
scenario's HELD-OUT seeds:

* in highway-env itself (the referee), ``--eval-episodes`` episodes per policy;
* in the batched simulator from highway-env's own initial scenes, ``--scenes`` held-out seeds per
  policy (from the same start the two simulators give the same outcome, ``TRANSFER.md``), and
  ``--split-scenes`` seeds of every generalization split of the scenario file.

A MetaDrive scenario has no batched twin: its learners train in MetaDrive itself (``--sim adapter``)
and are scored on ``--eval-episodes`` held-out MetaDrive episodes. ``--cross-eval SCENARIO`` also
scores every played policy on a scenario of the other simulator (the same policy file, through the
shared spec): the cross-simulator generalization column, from ``--scenes`` held-out highway-env starts in
the batched simulator when the other scenario is highway-env's, else ``--eval-episodes`` episodes.

Success is given per seed and pooled over seeds with a Wilson 95% interval. ``--demo-episodes``
takes several values for the data-efficiency curve. Every adversarial learner trains with the scenario
file's lambda_BC (``training.bc_coef``) unless ``--bc-coef`` sets one for all. The training runs are the
trials of a sweep on Ray (:mod:`drive_drail.train.sweep`, ``--jobs`` at once, or a cluster with ``--ray``):
a killed run resumes from its checkpoint when the benchmark runs again with ``--reuse``. Each scenario's result is written to
``--out/<scenario>.json`` (runs already finished are reused with ``--reuse``, so a table can be
built in pieces); ``RESULTS.md`` and ``results.json`` are rebuilt from every scenario file in
``--out``.

    python benchmarks/learning_results.py --scenarios lane_change --algos drail gail bc --demo-episodes 100 --out benchmarks/results/learning_v3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from drive_drail.atomic import write_json, write_text
from drive_drail.evaluate.aggregate import wilson
from drive_drail.train.config import POLICY_ENCODERS, DiscConfig, PolicyConfig, PPOConfig, RewardConfig, TrainConfig


def rate(outcomes: np.ndarray) -> dict:
    """``{"rate", "n", "ci95"}`` of a bool array of episode outcomes."""
    k, n = int(np.sum(outcomes)), int(len(outcomes))
    return {"rate": k / n if n else float("nan"), "n": n, "ci95": list(wilson(k, n))}


def train_runs(configs: list, args) -> None:
    """Train ``configs`` as trials of a sweep on Ray (``drive_drail.train.sweep``: one CPU each, ``--jobs``
    at once on a local instance, or on the cluster at ``--ray``); writes each run's ``wall_time.json``."""
    from drive_drail.train.sweep import run_trials

    by_folder: dict[Path, list] = {}
    for config in configs:
        by_folder.setdefault(Path(config.out).parent, []).append(config)
    for folder, group in by_folder.items():
        trials = [(Path(c.out).name, {k: v for k, v in c.settings().items() if k != "out"}) for c in group]
        rows = run_trials(trials, folder, address=args.ray, cpus=args.jobs, progress=False)
        failed = rows[rows["status"] == "failed"]
        if len(failed):
            raise SystemExit(f"training failed: {failed['trial'].iloc[0]}: {failed['error'].iloc[0]}")
        for _, row in rows.iterrows():
            write_json(Path(row["run"]) / "wall_time.json", {"train_s": float(row["wall_s"])})


def train_config(args, scenario: str, algo: str, seed: int, demos: Path, run_dir: Path):
    return TrainConfig(
        scenario=scenario, algo=algo, demos=str(demos), steps=args.steps, seed=seed, sim=args.sim, n_envs=args.n_envs,
        lane_std_floor=args.lane_std_floor, torch_threads=max(1, (os.cpu_count() or 1) // args.jobs), out=str(run_dir),
        ppo=PPOConfig(n_steps=args.n_steps, batch_size=args.ppo_batch, epochs=args.ppo_epochs, learning_rate=args.ppo_lr,
                      bc_coef=args.bc_coef),
        policy=PolicyConfig(encoder=args.policy_encoder),
        disc=DiscConfig(epochs=args.disc_epochs, batch=args.disc_batch, reward_samples=args.reward_samples),
        reward=RewardConfig(norm=args.reward_norm))


def run_scenario(args, name: str) -> dict:
    import shutil

    import pandas as pd

    from drive_drail.evaluate.batched import score_policies_in_batched_sim
    from drive_drail.evaluate.runner import evaluate
    from drive_drail.models.policy import DeterministicActor
    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.record import record_episodes
    from drive_drail.scenario import load_scenario

    scenario = load_scenario(name)
    in_batched = scenario.simulator == "highway"  # the batched simulator re-implements highway-env only
    if not in_batched and args.sim == "batched":
        raise SystemExit(f"{name}: a {scenario.simulator} scenario trains in its own simulator: pass --sim adapter")
    closed_loop = CLOSED_LOOP_KEY[scenario.simulator]
    cross = [load_scenario(c) for c in args.cross_eval]
    work = Path(args.out) / "work" / name
    started = time.time()
    entry: dict = {"curve": {}}
    for n_demo in args.demo_episodes:
        folder = work / f"demos{n_demo}"
        pairs_path = folder / "pairs.parquet"
        if not (args.reuse and pairs_path.exists()):
            log = record_episodes(scenario, n_episodes=n_demo, seed=0, out_path=folder / "expert_log.parquet", progress=False)
            convert_file(str(log), str(pairs_path), "auto", ConvertConfig(action_hz=scenario.policy_frequency_hz))
        n_pairs = len(pd.read_parquet(pairs_path, columns=["frame"]))
        runs = {(algo, seed): folder / f"{algo}-s{seed}" for algo in args.algos for seed in args.seeds}
        todo = []
        for (algo, seed), run_dir in runs.items():
            if args.reuse and (run_dir / "wall_time.json").exists():
                continue
            if not args.reuse:  # with --reuse a killed run resumes from its checkpoint (its wall time: the rest only)
                shutil.rmtree(run_dir, ignore_errors=True)
            todo.append(train_config(args, name, algo, seed, pairs_path, run_dir))
        if todo:
            train_runs(todo, args)
        actors = {f"{algo}-s{seed}": DeterministicActor.load(run_dir / "actor.pt") for (algo, seed), run_dir in runs.items()}
        acts = {label: actor.act for label, actor in actors.items()}  # the scripted expert drives its own simulator only

        # Held-out and generalization scenes in the batched simulator, from highway-env's starts.
        batched: dict = {}
        if in_batched:
            held_out = list(scenario.eval_seeds[: args.scenes])
            batched["eval"] = score_policies_in_batched_sim(scenario, acts, held_out, highway_starts=True)
            for split in scenario.splits if args.split_scenes else []:
                batched[split] = score_policies_in_batched_sim(scenario, acts, held_out[: args.split_scenes], highway_starts=True, split=split)

        # The scenario's own simulator (highway-env or MetaDrive) on the first held-out seeds.
        table = evaluate(["expert"], scenario, episodes=args.expert_episodes, split="eval", workers=2, reference=False)
        specs = [f"{algo}-s{seed}={run_dir}" for (algo, seed), run_dir in runs.items() if algo in (args.eval_algos or args.algos)]
        if args.eval_episodes:
            table = pd.concat([table, evaluate(specs, scenario, episodes=args.eval_episodes, split="eval", workers=2, reference=False)])
        table.to_csv(folder / "eval_episodes.csv", index=False)
        played = {label: group for label, group in table.groupby("policy")}
        # The same policy files in the other simulator's twin scenario (cross-simulator generalization).
        crossed: dict[str, dict] = {}
        for other in cross:
            if other.simulator == "highway":  # highway-env's held-out starts, played in the batched simulator
                scored = score_policies_in_batched_sim(other, acts, list(other.eval_seeds[: args.scenes]), highway_starts=True)
                crossed[other.name] = {label: {"success": r["success"]} for label, r in scored.items()}
            else:
                cross_table = evaluate(specs, other, episodes=args.eval_episodes, split="eval", workers=2, reference=False)
                cross_table.to_csv(folder / f"cross_{other.name}_episodes.csv", index=False)
                crossed[other.name] = {label: {"success": group["success"].to_numpy(bool)} for label, group in cross_table.groupby("policy")}
        # The expert's own success on each generalization split (highway-env): the ceiling of the split columns.
        expert_splits = {}
        if in_batched and args.expert_split_episodes and args.split_scenes and scenario.splits:
            split_table = evaluate(["expert"], scenario, episodes=args.expert_split_episodes, split=list(scenario.splits),
                                   workers=2, reference=False)
            split_table.to_csv(folder / "expert_split_episodes.csv", index=False)
            expert_splits = {f"highway_{split}": rate(group["success"].to_numpy(bool)) for split, group in split_table.groupby("split")}

        def scores(labels: list[str]) -> dict:
            out = {}
            if batched and labels[0] in batched["eval"]:
                for split, by_policy in batched.items():
                    out[f"batched_{split}"] = rate(np.concatenate([by_policy[label]["success"] for label in labels]))
                out["batched_eval_collision"] = rate(np.concatenate([batched["eval"][label]["collision"] for label in labels]))
            if all(label in played for label in labels):
                out[closed_loop] = rate(np.concatenate([played[label]["success"].to_numpy(bool) for label in labels]))
                out[closed_loop + "_collision"] = rate(np.concatenate([played[label]["collision"].to_numpy(bool) for label in labels]))
            for other, by_label in crossed.items():
                if all(label in by_label for label in labels):
                    out[f"cross_{other}"] = rate(np.concatenate([np.asarray(by_label[label]["success"], bool) for label in labels]))
            return out

        point = {"n_pairs": n_pairs, "expert": {**scores(["expert"]), **expert_splits}, "algos": {}}
        for algo in args.algos:
            labels = [f"{algo}-s{seed}" for seed in args.seeds]
            point["algos"][algo] = {
                "pooled": scores(labels),
                "per_seed": [{"seed": seed, "train_s": json.loads((runs[(algo, seed)] / "wall_time.json").read_text())["train_s"],
                              **scores([f"{algo}-s{seed}"])} for seed in args.seeds],
            }
        entry["curve"][str(n_demo)] = point
        # lambda_BC as the trainer resolved it (the flag, else the scenario file's), from a run's config.json
        trained_bc_coef = TrainConfig.from_dict(json.loads((next(iter(runs.values())) / "config.json").read_text())).ppo.bc_coef
    entry["budget"] = {"env_steps_per_run": args.steps, "seeds": args.seeds, "sim": args.sim, "n_envs": args.n_envs,
                       "n_steps": args.n_steps, "ppo_batch": args.ppo_batch, "ppo_epochs": args.ppo_epochs,
                       "ppo_lr": args.ppo_lr, "disc_epochs": args.disc_epochs, "disc_batch": args.disc_batch,
                       "reward_norm": args.reward_norm, "reward_samples": args.reward_samples,
                       "bc_coef": trained_bc_coef, "policy_encoder": args.policy_encoder, "lane_std_floor": args.lane_std_floor,
                       "jobs": args.jobs,
                       "scenes": args.scenes, "split_scenes": args.split_scenes, "eval_episodes": args.eval_episodes,
                       "expert_episodes": args.expert_episodes, "expert_split_episodes": args.expert_split_episodes,
                       "demo_episodes": args.demo_episodes, "cross_eval": args.cross_eval,
                       "eval_algos": args.eval_algos or args.algos}
    entry["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    entry["wall_time_s"] = round(time.time() - started, 1)
    return entry


CLOSED_LOOP_KEY = {"highway": "highway_env", "metadrive": "metadrive"}
"""Result key of the closed-loop episodes in a scenario's own simulator."""
SIM_LABEL = {"highway_env": "highway-env", "metadrive": "MetaDrive"}
SIM_NAME = {"batched": "batched simulator", "adapter": "scenario's own simulator"}


def _cell(r: dict | None) -> str:
    if not r:
        return ""
    lo, hi = r["ci95"]
    return f"{r['rate']:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown(results: dict) -> str:
    lines = ["# Learning results (spec v2; reward normalisation on, observation std floor 0.5)", "",
             "Success rate pooled over seeds with its Wilson 95% interval [lo, hi]; the per-seed rates follow in",
             "parentheses. `batched eval`: held-out seeds in the batched simulator started from highway-env's own",
             "scenes; `highway-env` / `MetaDrive`: the first held-out seeds played in the scenario's own simulator;",
             "split columns: the scenario file's generalization splits, from highway-env's starts; `in X (cross-sim)`:",
             "the same policy files scored on scenario X of the other simulator (highway-env's: in the batched",
             "simulator from its starts). Every learner of a scenario has the same env-step budget; BC uses none.", ""]
    for name, entry in results["scenarios"].items():
        b = entry["budget"]
        lines += [f"## {name}", "", f"Command: `{entry['command']}`  ", f"Wall time: {entry['wall_time_s'] / 60:.1f} min "
                  f"on a 2-core CPU machine ({b['jobs']} runs at once).  ",
                  f"Budget: {b['env_steps_per_run']:,} env steps per run in the {SIM_NAME[b['sim']]} ({b['n_envs']} "
                  f"{'scenes' if b['sim'] == 'batched' else 'workers'} x "
                  f"{b['n_steps']} steps per iteration, PPO batch {b['ppo_batch']} x {b['ppo_epochs']} epochs, lr {b['ppo_lr']}, "
                  f"discriminator batch {b['disc_batch']} x {b['disc_epochs']} epochs, reward norm {b['reward_norm']}, "
                  f"{b['reward_samples']} (t, eps) draws per reward, lambda_BC {b.get('bc_coef', 0.0)}, policy encoder {b.get('policy_encoder', 'flat')}"
                  f"{'' if b.get('lane_std_floor') is None else ', lane-feature std floor ' + str(b['lane_std_floor'])}), seeds {b['seeds']}.", ""]
        for n_demo, point in entry["curve"].items():
            first = next(iter(point["algos"].values()))["pooled"]
            splits = [k for k in first if k.startswith("batched_") and k not in ("batched_eval", "batched_eval_collision")]
            has_batched = "batched_eval" in first
            head = ["policy"] + ([f"batched eval ({b['scenes']} scenes)", "collision (batched eval)"] if has_batched else [])
            sim_key = next((k for k in SIM_LABEL if k in point["expert"]), None)
            sim_label = SIM_LABEL.get(sim_key, "")
            head += [f"{sim_label} ({b['expert_episodes']} expert / {b['eval_episodes']} policy ep.)"] if sim_key else []
            head += [f"collision ({sim_label})"] if sim_key and not has_batched else []
            head += [f"{s.removeprefix('batched_')} ({b['split_scenes']})" for s in splits]
            crosses = [k for k in first if k.startswith("cross_")]
            head += [f"in {k.removeprefix('cross_')} (cross-sim)" for k in crosses] + ["train s/run"]
            lines += [f"### {n_demo} expert episodes ({point['n_pairs']:,} pairs)", "", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]

            def row(label: str, pooled: dict, per_seed: list | None) -> str:
                def col(key: str) -> str:
                    seeds = f" ({', '.join(format(s[key]['rate'], '.2f') for s in per_seed)})" if per_seed and key in pooled else ""
                    return _cell(pooled.get(key)) + seeds
                cells = [label] + ([col("batched_eval") if "batched_eval" in pooled else "", _cell(pooled.get("batched_eval_collision"))]
                                   if has_batched else [])
                cells += [col(sim_key)] if sim_key else []
                cells += [_cell(pooled.get(sim_key + "_collision"))] if sim_key and not has_batched else []
                # The expert plays the splits in highway-env only (its scripted driver has no batched twin).
                cells += [col(s) if s in pooled else (_cell(pooled.get("highway_" + s.removeprefix("batched_"))) + " (hw-env)"
                          if "highway_" + s.removeprefix("batched_") in pooled else "") for s in splits]
                cells += [col(k) for k in crosses]
                cells += [f"{np.mean([s['train_s'] for s in per_seed]):.0f}" if per_seed else ""]
                return "| " + " | ".join(cells) + " |"

            lines.append(row("expert (ceiling)", point["expert"], None))
            for algo, r in point["algos"].items():
                lines.append(row(algo, r["pooled"], r["per_seed"]))
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=["lane_change", "merge", "stop"])
    parser.add_argument("--algos", nargs="+", default=["drail", "gail", "bc", "diffail", "drail-un"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--sim", default="batched", choices=["adapter", "batched"], help="training simulator")
    parser.add_argument("--n-envs", type=int, default=128, help="workers (adapter) or scenes (batched)")
    parser.add_argument("--n-steps", type=int, default=16, help="rollout steps per env per iteration")
    parser.add_argument("--ppo-batch", type=int, default=512)
    parser.add_argument("--ppo-epochs", type=int, default=5)
    parser.add_argument("--ppo-lr", type=float, default=1e-4)
    parser.add_argument("--disc-epochs", type=int, default=1)
    parser.add_argument("--disc-batch", type=int, default=512)
    parser.add_argument("--reward-norm", action=argparse.BooleanOptionalAction, default=RewardConfig.norm,
                        help="divide rewards by the running std of the discounted return (default: TrainConfig's)")
    parser.add_argument("--reward-samples", type=int, default=4)
    parser.add_argument("--bc-coef", type=float, default=PPOConfig.bc_coef,
                        help="lambda_BC of the PPO loss for every adversarial learner (default: each scenario file's)")
    parser.add_argument("--policy-encoder", choices=list(POLICY_ENCODERS), default=PolicyConfig.encoder,
                        help="how actor and critic read the neighbour slots (train --policy-encoder)")
    parser.add_argument("--lane-std-floor", type=float, default=TrainConfig.lane_std_floor,
                        help="std floor of the ego's lane-keeping features (TrainConfig.lane_std_floor; default: the shared floor)")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at once on the local Ray instance (1 torch thread each)")
    parser.add_argument("--ray", default="local", help="Ray address for the training runs: 'local' (default), 'auto' or ray://host:port")
    parser.add_argument("--demo-episodes", nargs="+", type=int, default=[200], help="several values: the data-efficiency curve")
    parser.add_argument("--scenes", type=int, default=2000, help="held-out scenes per policy in the batched simulator")
    parser.add_argument("--split-scenes", type=int, default=500, help="scenes per generalization split (0: skip)")
    parser.add_argument("--eval-episodes", type=int, default=100, help="held-out episodes per learned policy in the scenario's own simulator (0: skip)")
    parser.add_argument("--eval-algos", nargs="+", default=None, help="learners played in the scenario's own simulator (default: all)")
    parser.add_argument("--expert-episodes", type=int, default=100, help="held-out episodes of the scripted expert in the scenario's own simulator")
    parser.add_argument("--expert-split-episodes", type=int, default=50,
                        help="highway-env episodes of the scripted expert per generalization split (0: skip)")
    parser.add_argument("--cross-eval", nargs="*", default=[],
                        help="scenarios of the other simulator to score the played policies on as well (cross-simulator)")
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs and pairs in --out/work")
    parser.add_argument("--out", default="benchmarks/results/learning_v3")
    parser.add_argument("--eval-threads", type=int, default=1,
                        help="torch threads of the scoring process (1: stays fast when another job shares the cores)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.eval_threads)
    out = Path(args.out)
    for name in args.scenarios:
        write_json(out / f"{name}.json", run_scenario(args, name))
    results = {"scenarios": {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "results"}}
    write_json(out / "results.json", results)
    write_text(out / "RESULTS.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
