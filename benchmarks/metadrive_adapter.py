"""MetaDrive adapter overhead: adapter steps/s against raw MetaDrive steps/s, in one run.

Both sides step the SAME ``MetaDriveEnv`` (the adapter's, same config: headless,
state-only, 10 Hz decisions of 5 physics steps) with the same actions from the same
states: ``raw`` calls ``MetaDriveEnv.step`` with MetaDrive's action; ``adapter`` calls
``MetaDriveAdapter.step`` with the spec action (action map, scene extraction of every
vehicle, the spec observation, outcome bookkeeping). Rounds alternate between the two
and restart the episode from the same seed, so traffic and map are the same. The ratio is
the median over rounds of each round's ``adapter / raw`` (the raw episode timed just before
it), so a machine whose speed drifts between rounds moves both sides of a ratio alike.
Target: ``ratio >= 0.9``. Prints JSON only:

    .venv/bin/python benchmarks/metadrive_adapter.py [--scenario metadrive_lane_change] [--steps 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from drive_drail.scenario import load_scenario
from drive_drail.sim import make_env
from drive_drail.sim.metadrive import spec_unit_to_metadrive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="metadrive_lane_change", help="a MetaDrive scenario name or path")
    parser.add_argument("--steps", type=int, default=100, help="policy steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each side; medians are reported")
    parser.add_argument("--seed", type=int, default=0, help="index of the train seed every round starts from")
    args = parser.parse_args()

    scenario = load_scenario(args.scenario)
    env = make_env(scenario, split="train")
    episode_seed = scenario.train_seeds[args.seed]
    action_unit = np.array([0.3, 0.0])  # gentle throttle, straight: long episodes without crashes

    def timed_round(raw: bool) -> tuple[float, int]:
        """Seconds and policy steps of one episode from ``episode_seed``: MetaDrive's own step with
        MetaDrive's action (``raw``) or the adapter's step with the spec action."""
        env.reset(seed=episode_seed)
        step, action = (env.md_env.step, spec_unit_to_metadrive(action_unit, env.limits)) if raw else (env.step, action_unit)
        start, n = time.perf_counter(), 0
        for n in range(1, args.steps + 1):
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                break
        return time.perf_counter() - start, n

    try:
        timed_round(raw=False), timed_round(raw=True)  # warm-up: map generation, first physics steps
        adapter_rates, raw_rates, vehicles = [], [], 0
        for _ in range(args.rounds):
            seconds, n = timed_round(raw=True)
            raw_rates.append(n / seconds)
            seconds, n = timed_round(raw=False)
            adapter_rates.append(n / seconds)
            vehicles = len(env.frame_rows().objects)
    finally:
        env.close()

    adapter, raw = statistics.median(adapter_rates), statistics.median(raw_rates)
    ratio = statistics.median(a / r for a, r in zip(adapter_rates, raw_rates))
    print(
        json.dumps(
            {
                "benchmark": "metadrive_adapter",
                "scenario": scenario.name,
                "policy_frequency_hz": scenario.policy_frequency_hz,
                "physics_steps_per_policy_step": scenario.frames_per_action,
                "objects_in_scene": vehicles,
                "steps_per_round": args.steps,
                "rounds": args.rounds,
                "raw_metadrive_steps_per_s": round(raw, 1),
                "adapter_steps_per_s": round(adapter, 1),
                "ratio": round(ratio, 3),
                "ratio_of_medians": round(adapter / raw, 3),
                "target_ratio": 0.9,
                "meets_target": ratio >= 0.9,
                "raw_rounds_steps_per_s": [round(r, 1) for r in raw_rates],
                "adapter_rounds_steps_per_s": [round(r, 1) for r in adapter_rates],
                "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
