"""Benchmark: what the training loop costs on top of the simulator, and what a 2nd worker buys.

In one run, on one scenario:
* raw env steps/s: the adapter alone in this process, driven by the BC warm-start actor (so
  episodes end as often as in training), timing only ``step`` and ``reset``;
* training-loop env steps/s with 1 worker (rollouts + discriminator update + relabel +
  PPO update, all included) -> ratio to raw (target >= 0.85);
* training-loop env steps/s with 2 workers -> ratio to 1 worker (target >= 1.7).
The three are measured one after the other, ``--repeats`` times in turn, so that a drift in
this machine's speed hits every side alike; each ratio is taken within one round, and the
median round is reported with all rounds listed. Prints JSON.

    python benchmarks/trainer_overhead.py [--scenario lane_change] [--steps 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def raw_steps_per_s(scenario_name: str, steps: int, actor_path: Path) -> tuple[float, float]:
    """Env steps/s of the adapter alone, driven like the training loop drives it: actions come from
    the BC warm-start actor (the policy training starts from), so episodes end (and reset) as often
    as in training, but only ``step`` and ``reset`` are timed. Returns (steps/s, mean episode length)."""
    from drive_drail.models.policy import DeterministicActor
    from drive_drail.scenario import load_scenario
    from drive_drail.sim import make_env

    actor = DeterministicActor.load(actor_path)
    env = make_env(load_scenario(scenario_name), split="train")
    obs, _ = env.reset(seed=0)
    timed_s, episodes = 0.0, 0
    for _ in range(steps):
        action = actor.act(obs)
        t0 = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            episodes += 1
        timed_s += time.perf_counter() - t0
    env.close()
    return steps / timed_s, steps / max(episodes, 1)


def training_steps_per_s(scenario_name: str, demos: str, steps: int, n_envs: int, out: Path) -> tuple[float, float, dict]:
    """Env steps per second of the whole loop, from the metrics of iterations 2.. (1 is warm-up),
    the mean episode length over the run, and the median seconds per iteration of each phase."""
    import pandas as pd

    from drive_drail.train.adversarial import train
    from drive_drail.train.config import BCConfig, PPOConfig, TrainConfig

    train(TrainConfig(scenario=scenario_name, algo="drail", demos=demos, steps=steps, n_envs=n_envs,
                      ppo=PPOConfig(n_steps=steps // (8 * n_envs)), bc=BCConfig(epochs=1), out=str(out)), progress=False)
    metrics = pd.read_csv(out / "metrics.csv").dropna(subset=["charts/sps"])
    phases = {c.removeprefix("time/"): round(float(metrics[c].iloc[1:].median()), 3) for c in metrics if c.startswith("time/")}
    return float(metrics["charts/sps"].iloc[1:].median()), float(metrics["charts/episode_length"].mean()), phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="lane_change")
    parser.add_argument("--steps", type=int, default=2048, help="env steps per training run (8 iterations)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (raw, 1 worker, 2 workers)")
    args = parser.parse_args()

    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.record import record_episodes

    work = Path(tempfile.mkdtemp(prefix="trainer-bench-"))
    log = record_episodes(args.scenario, n_episodes=2, seed=0, out_path=work / "log.parquet", progress=False)
    convert_file(str(log), str(work / "pairs.parquet"), "auto", ConvertConfig(action_hz=5.0))
    demos = str(work / "pairs.parquet")

    from drive_drail.train.adversarial import train
    from drive_drail.train.config import BCConfig, TrainConfig

    bc = train(TrainConfig(scenario=args.scenario, algo="bc", demos=demos, bc=BCConfig(epochs=1), out=str(work / "bc")), progress=False)
    rounds = []
    for k in range(args.repeats):
        raw, raw_len = raw_steps_per_s(args.scenario, args.steps // 2, bc / "actor.pt")
        one, one_len, one_phases = training_steps_per_s(args.scenario, demos, args.steps, 1, work / f"one-{k}")
        two, two_len, two_phases = training_steps_per_s(args.scenario, demos, args.steps, 2, work / f"two-{k}")
        rounds.append({
            "raw_env_steps_per_s": round(raw, 1),
            "train_steps_per_s_1_worker": round(one, 1),
            "train_steps_per_s_2_workers": round(two, 1),
            "ratio_train_1_worker_to_raw": round(one / raw, 3),
            "ratio_2_workers_to_1": round(two / one, 3),
            "mean_episode_steps": {"raw": round(raw_len, 1), "1_worker": round(one_len, 1), "2_workers": round(two_len, 1)},
            "iteration_seconds_1_worker": one_phases,
            "iteration_seconds_2_workers": two_phases,
        })
    print(json.dumps({
        "benchmark": "trainer_overhead",
        "scenario": args.scenario,
        "steps_per_iteration": args.steps // 8,
        "learner_torch_threads": TrainConfig().learner_threads(),  # the default: one per core
        "ratio_train_1_worker_to_raw": float(np.median([r["ratio_train_1_worker_to_raw"] for r in rounds])),
        "target_ratio_to_raw": 0.85,
        "ratio_2_workers_to_1": float(np.median([r["ratio_2_workers_to_1"] for r in rounds])),
        "target_ratio_2_to_1": 1.7,
        "rounds": rounds,
    }, indent=2))

if __name__ == "__main__":
    main()
