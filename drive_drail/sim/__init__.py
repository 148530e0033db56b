"""Simulator adapters: the only place simulator packages are imported.

:func:`make_env` dispatches on ``scenario.simulator`` to the adapter module registered
in :data:`ADAPTERS` and imports it lazily, so ``import drive_drail.sim`` pulls in no
simulator. A new simulator adds one entry whose module defines
``make_env(scenario, seed, split)`` returning a :class:`drive_drail.sim.base.DrivingEnv`.
"""

from __future__ import annotations

import importlib

from drive_drail.scenario import Scenario, ScenarioError

ADAPTERS: dict[str, str] = {
    "highway": "drive_drail.sim.highway",
    "metadrive": "drive_drail.sim.metadrive",
}
"""simulator name -> module that defines ``make_env(scenario, seed, split)``."""


def make_env(scenario: Scenario, seed: int = 0, split: str = "train"):
    """The simulator adapter (a gymnasium.Env, see ``sim/base.py``) for one split of a scenario.

    ``split`` is ``train`` (train seeds), ``eval`` (held-out seeds) or a generalization
    split named in the scenario (held-out seeds, its ``env_config`` overrides); ``seed``
    orders the episode seeds of ``reset()`` without an explicit seed.
    """
    module = ADAPTERS.get(scenario.simulator)
    if module is None:
        raise ScenarioError(
            scenario.source,
            f"no adapter for simulator '{scenario.simulator}' yet (available: {', '.join(ADAPTERS)})",
            key="simulator",
        )
    scenario.seeds_for(split)  # unknown split -> ScenarioError before building anything
    return importlib.import_module(module).make_env(scenario, seed=seed, split=split)
