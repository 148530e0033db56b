"""Can a discriminator tell the BC start's pairs from the expert's, on pairs it has not trained on?

The adversarial learners start from the behaviour-cloned policy (``bc_warm_start``). Their reward is
only as useful as the discriminator's separation of the agent's pairs from the expert's. This
benchmark measures it offline, on the data the first iterations of a run would see:

1. the demonstrations, standardised as the trainer does (``train/demos.load_demos``);
2. the BC policy of a run (same PPO networks, same BC epochs), rolled out with its exploration noise
   by the trainer's own collector, ``n_steps`` pairs per iteration, in the scenario's simulator;
3. each discriminator updated as in the loop (``update`` on all expert pairs against one
   iteration's agent pairs), either on the newest rollout only (``--replay 1``, the trainer today) or
   on ``n_steps`` pairs drawn from the last K rollouts (``--replay K``);
4. scored on held-out pairs: agent pairs from later rollouts of the same policy, expert pairs left
   out of training. ``auc`` is the probability that a held-out expert pair gets a higher reward than
   a held-out agent pair (0.5: no separation); ``auc_train`` scores the newest training rollout.

Prints JSON only:

    .venv/bin/python benchmarks/discriminator_separation.py --scenario metadrive_lane_change --demos PAIRS
        [--agent-steps 20480] [--iterations 30] [--replay 1 8 30] [--algos drail gail] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from drive_drail import spec
from drive_drail.models.discriminators import make_discriminator
from drive_drail.scenario import load_scenario
from drive_drail.train import sb3_bridge
from drive_drail.train.adversarial import build_ppo, discriminator_settings
from drive_drail.train.bc import behaviour_clone
from drive_drail.train.config import PPOConfig, TrainConfig
from drive_drail.train.demos import load_demos
from drive_drail.train.envs import make_vec_env
from drive_drail.train.rollout import collect_rollout

HELD_OUT_EXPERT = 3000
"""Expert pairs left out of the discriminator's training, scored against the held-out agent pairs."""


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U / (n_p n_n))."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    n_p, n_n = len(positive), len(negative)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def bc_rollouts(config: TrainConfig, n_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """The run's BC start rolled out by the trainer's collector -> ``(expert_obs, expert_act, agent_obs, agent_act, stats)``."""
    scenario = load_scenario(config.scenario)
    demos = load_demos(config.demos, scenario.task if config.task_filter else None, scenario.policy_frequency_hz,
                       config.obs_std_floor, slot_shared=config.policy.encoder == "set", lane_min_std=config.lane_std_floor)
    expert_obs = ((demos.obs - demos.obs_mean) / demos.obs_std).astype(np.float32)
    expert_act = demos.action_unit.astype(np.float32)
    env = make_vec_env(config.scenario, config.n_envs, demos.obs_mean, demos.obs_std, seed_offset=config.seed, sim=config.sim)
    try:
        model = build_ppo(config, env, config.seed)
        behaviour_clone(model.policy, expert_obs, expert_act, config.bc.epochs, config.bc.lr, config.seed, progress=False)
        per_iteration = config.ppo.n_steps * config.n_envs
        iterations = -(-n_pairs // per_iteration)
        sb3_bridge.start_learning(model, iterations * per_iteration, False)
        obs, act, episodes = [], [], []
        for i in range(iterations):
            rollout = collect_rollout(model, env, config.ppo.n_steps, key=(config.seed, i))
            buf = model.rollout_buffer
            obs.append(buf.observations.reshape(per_iteration, -1).astype(np.float32))
            act.append(np.clip(buf.actions.reshape(per_iteration, -1), -1.0, 1.0).astype(np.float32))
            episodes.extend(rollout.episodes)
    finally:
        env.close()
    stats = {"episodes": len(episodes), "success": float(np.mean([e["success"] for e in episodes])) if episodes else None,
             "mean_length": float(np.mean([e["length"] for e in episodes])) if episodes else None}
    return expert_obs, expert_act, np.concatenate(obs), np.concatenate(act), stats


def separation(algo: str, replay: int, data: dict, config: TrainConfig, iterations: int, seed: int) -> dict:
    """Train one discriminator as the loop would for ``iterations`` rollouts; score held-out pairs."""
    disc = make_discriminator(algo, spec.OBS_DIM, spec.ACTION_DIM, discriminator_settings(config, algo, torch.device("cpu")), seed=seed)
    rng = np.random.default_rng(seed)
    per_iteration = config.ppo.n_steps * config.n_envs
    agent_obs, agent_act = data["agent_obs"], data["agent_act"]
    start = time.perf_counter()
    for i in range(iterations):
        pool = np.arange(max(0, i + 1 - replay) * per_iteration, (i + 1) * per_iteration)
        idx = pool if len(pool) == per_iteration else rng.choice(pool, per_iteration, replace=False)
        disc.update(data["expert_obs"], data["expert_act"], agent_obs[idx], agent_act[idx], None)
    seconds = time.perf_counter() - start
    held = slice(iterations * per_iteration, None)
    newest = slice((iterations - 1) * per_iteration, iterations * per_iteration)
    score = (lambda o, a: disc.reward(o, a, seed=seed + 1)) if algo != "gail" else disc.reward
    r_expert = score(data["held_expert_obs"], data["held_expert_act"])
    r_agent = score(agent_obs[held], agent_act[held])
    r_newest = score(agent_obs[newest], agent_act[newest])
    sigmoid = lambda r: 1.0 / (1.0 + np.exp(-r))  # noqa: E731  (r = logit D for every learner here)
    return {"algo": algo, "replay": replay, "iterations": iterations, "auc": round(auc(r_expert, r_agent), 3),
            "auc_train": round(auc(r_expert, r_newest), 3), "d_expert": round(float(sigmoid(r_expert).mean()), 3),
            "d_agent": round(float(sigmoid(r_agent).mean()), 3), "reward_std": round(float(np.concatenate([r_expert, r_agent]).std()), 3),
            "train_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True, help="scenario name")
    parser.add_argument("--demos", required=True, help="expert pairs (Parquet) the run trains on")
    parser.add_argument("--agent-steps", type=int, default=20480, help="BC-policy steps to collect (default 20480)")
    parser.add_argument("--iterations", type=int, default=30, help="rollouts the discriminator trains on (default 30)")
    parser.add_argument("--replay", type=int, nargs="+", default=[1, 8, 30], help="rollouts in the agent pool (default 1 8 30)")
    parser.add_argument("--algos", nargs="+", default=["drail", "gail"], help="discriminators (default drail gail)")
    parser.add_argument("--n-steps", type=int, default=512, help="rollout steps per iteration (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the BC policy, the rollouts and the discriminators")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig(scenario=args.scenario, algo="drail", demos=args.demos, n_envs=1, ppo=PPOConfig(n_steps=args.n_steps),
                         seed=args.seed, out="unused")
    if args.agent_steps < (args.iterations + 4) * args.n_steps:
        parser.error(f"--agent-steps must leave at least 4 rollouts held out: >= {(args.iterations + 4) * args.n_steps}")
    start = time.perf_counter()
    expert_obs, expert_act, agent_obs, agent_act, stats = bc_rollouts(config, args.agent_steps)
    collect_s = time.perf_counter() - start
    order = np.random.default_rng(args.seed).permutation(len(expert_obs))
    train, held = order[:-HELD_OUT_EXPERT], order[-HELD_OUT_EXPERT:]
    data = {"expert_obs": expert_obs[train], "expert_act": expert_act[train], "held_expert_obs": expert_obs[held],
            "held_expert_act": expert_act[held], "agent_obs": agent_obs, "agent_act": agent_act}
    rows = [separation(algo, k, data, config, args.iterations, args.seed) for algo in args.algos for k in args.replay]
    print(json.dumps({"benchmark": "discriminator_separation", "scenario": args.scenario, "demos": args.demos,
                      "expert_pairs": len(train), "held_out_expert_pairs": len(held), "agent_pairs": len(agent_obs),
                      "held_out_agent_pairs": len(agent_obs) - args.iterations * args.n_steps, "bc_rollouts": stats,
                      "collect_s": round(collect_s, 1), "disc_epochs": config.disc.epochs, "disc_batch": config.disc.batch,
                      "disc_lr": config.disc.lr, "machine": platform.processor() or platform.machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
