"""Score policies in the batched simulator on given episode seeds: the other side of a transfer check.

Evaluation proper stays in highway-env (the referee); this gives the batched simulator's
own verdict on the SAME seeds, so the two success rates can be compared, and it scores
thousands of held-out scenes where highway-env affords a hundred.
"""

from __future__ import annotations

import copy
from typing import Callable, Mapping

import numpy as np

from drive_drail.scenario import Scenario
from drive_drail.sim.base import INFO_CRASHED, INFO_OFFROAD, INFO_SUCCESS

Act = Callable[[np.ndarray], np.ndarray]
"""Raw observations ``[B, OBS_DIM]`` float32 -> unit actions ``[B, 2]`` (e.g. ``DeterministicActor.act``)."""


def batched_starts(scenario: Scenario, seeds: list[int], highway_starts: bool = False, split: str = "eval"):
    """A :class:`BatchedHighwayEnv` holding the first scene of every seed in ``seeds`` (no autoreset use).

    ``highway_starts``: start from highway-env's own initial scene of each seed (imported), not the
    batched simulator's draw: then only the dynamics differ between the two simulators.
    ``split``: ``eval`` or one of the scenario's generalization splits.
    """
    from drive_drail.sim.batched.env import BatchedHighwayEnv

    n = len(seeds)
    env = BatchedHighwayEnv(scenario, n, split=split)
    env.reset(seeds=np.asarray(seeds, dtype=np.int64))
    if highway_starts:
        from drive_drail.sim.batched.scene_exchange import import_highway_starts

        import_highway_starts(env, np.arange(n), np.asarray(seeds)).close()
    return env


def play_episodes(env, act: Act) -> dict[str, np.ndarray]:
    """Play the current episode of every scene of ``env`` to its end (``env`` is consumed).

    Returns ``{"success", "collision", "offroad"}``: ``[B]`` bool arrays, one per episode.
    """
    n = env.num_envs
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


def score_in_batched_sim(
    scenario: Scenario, act: Act, seeds: list[int], highway_starts: bool = False, split: str = "eval"
) -> dict[str, np.ndarray]:
    """Run the first episode of every seed in ``seeds`` (all scenes stepped together); see :func:`batched_starts`.

    Returns ``{"success", "collision", "offroad"}``: ``[len(seeds)]`` bool arrays, one per episode.
    """
    return play_episodes(batched_starts(scenario, seeds, highway_starts, split), act)


def score_policies_in_batched_sim(
    scenario: Scenario, acts: Mapping[str, Act], seeds: list[int], highway_starts: bool = False, split: str = "eval"
) -> dict[str, dict[str, np.ndarray]]:
    """:func:`score_in_batched_sim` for several policies from ONE set of starts (built once, copied per
    policy): importing highway-env's scenes costs more than playing them."""
    start = batched_starts(scenario, seeds, highway_starts, split)
    return {name: play_episodes(copy.deepcopy(start), act) for name, act in acts.items()}
