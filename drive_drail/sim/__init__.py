"""Simulator adapters: where the simulators are driven (the scripted experts in ``experts/`` also
import them, to read the road they drive on).

:func:`make_env` dispatches on ``scenario.simulator`` to the adapter module registered
in :data:`ADAPTERS` and imports it lazily, so ``import drive_drail.sim`` pulls in no
simulator. A new simulator adds one entry whose module defines
``make_env(scenario, seed, split)`` returning a :class:`drive_drail.sim.base.SpecAdapter`.
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


GYM_NAMESPACE = "drive-drail"
"""gymnasium ids are ``drive-drail/<scenario>-v0``: ``gymnasium.make("drive-drail/stop-v0")`` after ``import drive_drail``
(the raw highway-env environments under the adapters are ``drive-drail-highway/...``)."""


def make_gym_env(scenario: str, split: str = "train", seed: int = 0, render_mode: str | None = None):
    """gymnasium's entry point: the spec adapter of scenario ``scenario`` (name or path), see :func:`make_env`.

    ``render_mode="rgb_array"`` makes ``env.render()`` return top-down frames (highway-env scenarios),
    which is what ``gymnasium.wrappers.RecordVideo`` records.
    """
    from drive_drail.scenario import load_scenario

    env = make_env(load_scenario(scenario), seed=seed, split=split)
    if render_mode is not None and render_mode not in env.metadata["render_modes"]:
        env.close()
        raise ScenarioError(scenario, f"render_mode {render_mode!r} is not available for this simulator "
                            f"(available: {', '.join(env.metadata['render_modes']) or 'none'})", key="simulator")
    env.render_mode = render_mode
    return env


def register_gym_envs() -> list[str]:
    """Register ``drive-drail/<name>-v0`` with gymnasium for every scenario file; returns the ids."""
    import gymnasium as gym

    from drive_drail.scenario import list_scenarios

    ids = []
    for name in list_scenarios():
        env_id = f"{GYM_NAMESPACE}/{name}-v0"
        if env_id not in gym.registry:  # the adapter truncates at the scenario's episode_seconds itself
            gym.register(id=env_id, entry_point="drive_drail.sim:make_gym_env", kwargs={"scenario": name}, disable_env_checker=True)
        ids.append(env_id)
    return ids
