"""Score a policy in the batched simulator on given episode seeds: the other side of a transfer check.

Evaluation proper stays in highway-env (the referee); this gives the batched simulator's
own verdict on the SAME seeds, so the two success rates can be compared.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from drive_drail.scenario import Scenario
from drive_drail.sim.base import INFO_CRASHED, INFO_OFFROAD, INFO_SUCCESS


def score_in_batched_sim(
    scenario: Scenario, act: Callable[[np.ndarray], np.ndarray], seeds: list[int], highway_starts: bool = False
) -> dict[str, np.ndarray]:
    """Run the first episode of every seed in ``seeds`` (all scenes stepped together).

    Args:
        act: raw observations ``[B, OBS_DIM]`` float32 -> unit actions ``[B, 2]`` (e.g. ``DeterministicActor.act``).
        seeds: episode seeds, usually the scenario's held-out ``eval_seeds``.
        highway_starts: start from highway-env's own initial scene of each seed (imported), not
            the batched simulator's draw: then only the dynamics differ between the two simulators.

    Returns:
        ``{"success", "collision", "offroad"}``: ``[len(seeds)]`` bool arrays, one per episode.
    """
    from drive_drail.sim.batched.env import BatchedHighwayEnv

    n = len(seeds)
    env = BatchedHighwayEnv(scenario, n, split="eval")
    obs, _ = env.reset(seeds=np.asarray(seeds, dtype=np.int64))
    if highway_starts:
        from drive_drail.sim.batched.scene_exchange import import_highway_starts

        import_highway_starts(env, np.arange(n), np.asarray(seeds)).close()
        obs = env.observe()
    finished = np.zeros(n, dtype=bool)
    outcome = {key: np.zeros(n, dtype=bool) for key in ("success", "collision", "offroad")}
    source = {"success": INFO_SUCCESS, "collision": INFO_CRASHED, "offroad": INFO_OFFROAD}
    while not finished.all():
        result = env.step(act(np.asarray(obs, dtype=np.float32)))
        newly = result.done & ~finished
        for key, info_key in source.items():
            outcome[key][newly] = np.asarray(result.info[info_key])[newly]
        finished |= result.done
        obs = result.obs
    return outcome
