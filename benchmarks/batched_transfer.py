"""Transfer: a policy trained in the batched simulator, scored there and in real highway-env.

Records expert demos in highway-env, converts them, trains DRAIL with ``--sim batched``,
then scores the actor on the scenario's held-out seeds in the batched simulator and in
highway-env (the referee). Prints JSON with both success rates and their gap (target:
within 5 success points).

    python benchmarks/batched_transfer.py [--scenario lane_change] [--steps 100000] [--episodes 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="lane_change")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--n-envs", type=int, default=256)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from drive_drail.evaluate.batched import score_in_batched_sim
    from drive_drail.evaluate.runner import evaluate
    from drive_drail.models.policy import DeterministicActor
    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.record import record_episodes
    from drive_drail.scenario import load_scenario
    from drive_drail.train.adversarial import train
    from drive_drail.train.config import PPOConfig, TrainConfig

    work = Path(args.out or tempfile.mkdtemp(prefix="transfer-"))
    scenario = load_scenario(args.scenario)
    log = record_episodes(scenario, n_episodes=10, seed=0, out_path=work / "log.parquet", progress=False)
    convert_file(str(log), str(work / "pairs.parquet"), "auto", ConvertConfig(action_hz=scenario.policy_frequency_hz))
    t0 = time.time()
    run = train(TrainConfig(scenario=args.scenario, algo="drail", demos=str(work / "pairs.parquet"), steps=args.steps,
                            sim="batched", n_envs=args.n_envs, ppo=PPOConfig(n_steps=32, batch_size=1024), out=str(work / "run")),
                progress=False)
    train_s = time.time() - t0
    actor = DeterministicActor.load(run / "actor.pt")
    seeds = list(scenario.eval_seeds[: args.episodes])
    outcome = score_in_batched_sim(scenario, actor.act, seeds)
    batched = {"success": float(outcome["success"].mean()), "collision": float(outcome["collision"].mean())}
    same_starts = score_in_batched_sim(scenario, actor.act, seeds, highway_starts=True)
    table = evaluate([f"drail={run}"], scenario, episodes=args.episodes, split="eval", workers=2, reference=False)
    highway = {"success": float(table.success.mean()), "collision": float(table.collision.mean())}
    hw_success = table.sort_values("seed").success.to_numpy(dtype=bool)
    identical = {
        "success": float(same_starts["success"].mean()),
        "collision": float(same_starts["collision"].mean()),
        "same_outcome_fraction": float((same_starts["success"] == hw_success).mean()),
    }
    print(json.dumps({
        "benchmark": "batched_transfer",
        "scenario": args.scenario,
        "train_env_steps": args.steps,
        "train_wall_s": round(train_s, 1),
        "episodes": args.episodes,
        "batched": batched,
        "batched_from_highway_env_starts": identical,
        "highway_env": highway,
        "success_gap_points": round(100 * (batched["success"] - highway["success"]), 1),
        "target_gap_points": 5.0,
    }, indent=2))


if __name__ == "__main__":
    main()
