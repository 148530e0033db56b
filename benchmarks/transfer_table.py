"""Transfer of batched-trained policies to highway-env, from a learning-results folder.

For every policy trained with ``learning_results.py --sim batched``, on the same held-out seeds:
* success in highway-env (the referee), read from the folder's ``eval_episodes.csv``;
* success in the batched simulator from its own initial scenes;
* success in the batched simulator from highway-env's initial scenes (imported), and the
  fraction of episodes whose success agrees with highway-env's, episode by episode.
* on ``--scenes`` seeds (default 1000; the held-out seeds and the ones after them): success in the
  batched simulator from its own scenes, and from highway-env's own scenes for those seeds. The
  second is highway-env's success on ``--scenes`` episodes: from the same start the two simulators
  give the same outcome (the agreement column checks it on the held-out episodes, which really ran
  in highway-env), and only highway-env's reset runs, not its slow step.

The transfer gap is batched (own scenes) minus highway-env success (target: within 5 points).
On 20 or 100 episodes both rates carry several points of scene-sampling noise each (the
policies share the scenes, so that noise does not average out across policies); the
``--scenes`` columns give the gap with a 95% interval. Writes ``TRANSFER.md`` and
``transfer.json`` into the folder and prints the JSON.

    python benchmarks/transfer_table.py [--results benchmarks/results/learning_batched]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from drive_drail.atomic import write_json, write_text


def _gap(own: np.ndarray, highway: np.ndarray) -> dict[str, float]:
    """Batched-minus-highway-env success [points] on independent scene samples, with its 95% half-width."""
    if not len(own):
        return {}
    p, q = own.mean(), highway.mean()
    half = 1.96 * np.sqrt(p * (1 - p) / len(own) + q * (1 - q) / len(highway))
    return {"batched_success_scenes": float(p), "highway_env_success_scenes": float(q),
            "gap_points_scenes": float(100 * (p - q)), "gap_ci95_points": float(100 * half)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="benchmarks/results/learning_batched")
    parser.add_argument("--scenarios", nargs="+", default=None, help="default: every scenario in the folder")
    parser.add_argument("--algos", nargs="+", default=None, help="default: every learned policy")
    parser.add_argument("--episodes", type=int, default=None,
                        help="held-out episodes per policy; more than the folder's evaluation re-runs highway-env")
    parser.add_argument("--scenes", type=int, default=1000, help="scenes per policy for the large-sample gap (0: skip)")
    parser.add_argument("--out-name", default="TRANSFER", help="writes NAME.md and NAME.json (lower case) into the folder")
    args = parser.parse_args()

    from drive_drail.evaluate.batched import score_in_batched_sim
    from drive_drail.evaluate.runner import evaluate
    from drive_drail.models.policy import DeterministicActor
    from drive_drail.scenario import load_scenario

    root = Path(args.results)
    rows = []
    for work in sorted(p for p in (root / "work").iterdir() if (p / "eval_episodes.csv").exists()):
        if args.scenarios and work.name not in args.scenarios:
            continue
        scenario = load_scenario(work.name)
        runs = sorted(p for p in work.iterdir() if (p / "actor.pt").exists()
                      and (args.algos is None or p.name.rsplit("-s", 1)[0] in args.algos))
        table = pd.read_csv(work / "eval_episodes.csv")
        if args.episodes and args.episodes > table.groupby("policy").size().min():
            table = evaluate([f"{run.name}={run}" for run in runs], scenario, episodes=args.episodes, split="eval",
                             workers=2, reference=False)
        for run in runs:
            episodes = table[table.policy == run.name].sort_values("seed")
            seeds = episodes.seed.astype(int).tolist()
            highway = episodes.success.to_numpy(dtype=bool)
            act = DeterministicActor.load(run / "actor.pt").act
            own = score_in_batched_sim(scenario, act, seeds)["success"]
            same = score_in_batched_sim(scenario, act, seeds, highway_starts=True)["success"]
            many = list(range(scenario.eval_seeds[0], scenario.eval_seeds[0] + args.scenes))
            own_many = score_in_batched_sim(scenario, act, many)["success"] if many else np.zeros(0)
            highway_many = score_in_batched_sim(scenario, act, many, highway_starts=True)["success"] if many else np.zeros(0)
            rows.append({
                "scenario": work.name, "policy": run.name, "episodes": len(seeds),
                "highway_env_success": float(highway.mean()), "batched_success": float(own.mean()),
                "batched_success_highway_starts": float(same.mean()),
                "same_outcome_fraction_highway_starts": float((same == highway).mean()),
                "scenes": len(many), **_gap(own_many, highway_many),
            })
    frame = pd.DataFrame(rows)
    frame["gap_points"] = 100 * (frame.batched_success - frame.highway_env_success)
    summary = {
        "runs": len(frame),
        "mean_abs_gap_points": float(frame.gap_points.abs().mean()),
        "runs_within_5_points": float((frame.gap_points.abs() <= 5).mean()),
        "pooled_gap_points": float(100 * (frame.batched_success.mean() - frame.highway_env_success.mean())),
        "mean_same_outcome_fraction_highway_starts": float(frame.same_outcome_fraction_highway_starts.mean()),
    }
    if args.scenes:
        summary |= {
            "scenes_per_policy": args.scenes,
            "mean_abs_gap_points_scenes": float(frame.gap_points_scenes.abs().mean()),
            "runs_within_5_points_scenes": float((frame.gap_points_scenes.abs() <= 5).mean()),
            "runs_gap_ci95_includes_0": float((frame.gap_points_scenes.abs() <= frame.gap_ci95_points).mean()),
            "pooled_gap_points_scenes": float(frame.gap_points_scenes.mean()),
        }
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    result = {"benchmark": "transfer_table", "command": command, "results": str(root), "summary": summary, "runs": rows}
    write_json(root / f"{args.out_name.lower()}.json", result)
    lines = [
        "# Transfer: batched simulator -> highway-env",
        "",
        f"Command: `{result['command']}`",
        "",
        f"{summary['runs']} policies. On the held-out episodes: mean |gap| {summary['mean_abs_gap_points']:.1f} success points, "
        f"{100 * summary['runs_within_5_points']:.0f}% of runs within 5 points, pooled gap {summary['pooled_gap_points']:+.1f} points; "
        f"from highway-env's own initial scenes the batched simulator gives the same episode outcome "
        f"{100 * summary['mean_same_outcome_fraction_highway_starts']:.0f}% of the time.",
    ]
    if args.scenes:
        lines.append(
            f"On {args.scenes} scenes per policy: mean |gap| {summary['mean_abs_gap_points_scenes']:.1f} points, "
            f"{100 * summary['runs_within_5_points_scenes']:.0f}% of runs within 5 points, pooled gap "
            f"{summary['pooled_gap_points_scenes']:+.1f} points; the 95% interval of the gap includes 0 for "
            f"{100 * summary['runs_gap_ci95_includes_0']:.0f}% of runs.")
    lines += [
        "",
        "| scenario | policy | episodes | highway-env success | batched success (own starts) | gap (points) | "
        "batched success (highway-env starts) | same outcome |" + (" scenes | highway-env success | batched success | gap (points, 95%) |" if args.scenes else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if args.scenes else ""),
    ]
    for r in frame.itertuples():
        line = (f"| {r.scenario} | {r.policy} | {r.episodes} | {r.highway_env_success:.2f} | {r.batched_success:.2f} | {r.gap_points:+.0f} | "
                f"{r.batched_success_highway_starts:.2f} | {r.same_outcome_fraction_highway_starts:.2f} |")
        if args.scenes:
            line += (f" {r.scenes} | {r.highway_env_success_scenes:.3f} | {r.batched_success_scenes:.3f} | "
                     f"{r.gap_points_scenes:+.1f} ± {r.gap_ci95_points:.1f} |")
        lines.append(line)
    write_text(root / f"{args.out_name}.md", "\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
