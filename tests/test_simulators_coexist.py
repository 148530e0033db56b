"""highway-env and MetaDrive in ONE environment and ONE process.

highway-env needs pygame-ce; MetaDrive declares pygame. Both distributions install into
the same ``pygame`` package folder, so the environment installs MetaDrive with
``--no-deps`` plus its runtime dependencies except pygame: ``import pygame`` is pygame-ce,
which both simulators use.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

pytest.importorskip("metadrive")


def test_pygame_is_pygame_ce_and_both_simulators_import():
    import highway_env  # noqa: F401
    import metadrive
    import pygame

    assert getattr(pygame, "IS_CE", False), f"pygame at {pygame.__file__} is not pygame-ce"
    assert importlib.metadata.version("pygame-ce") == pygame.version.ver
    assert metadrive.MetaDriveEnv is not None
    assert importlib.metadata.version("metadrive-simulator") == "0.4.3"


def test_both_adapters_step_in_one_process():
    from drive_drail import spec
    from drive_drail.scenario import load_scenario
    from drive_drail.sim import make_env

    highway = make_env(load_scenario("lane_change"))
    metadrive = make_env(load_scenario("metadrive_lane_change"))
    try:
        obs_h, _ = highway.reset(seed=0)
        obs_m, _ = metadrive.reset(seed=0)
        for _ in range(3):
            obs_h, *_ = highway.step(np.array([0.2, 0.0]))
            obs_m, *_ = metadrive.step(np.array([0.2, 0.0]))
        assert obs_h.shape == obs_m.shape == (spec.OBS_DIM,)
        np.testing.assert_array_equal(obs_h, spec.observe(highway.scene()))
        np.testing.assert_array_equal(obs_m, spec.observe(metadrive.scene()))
        assert metadrive.ego.speed == pytest.approx(3 * 0.1 * 1.0, abs=0.03)  # 0.2 -> 1 m/s^2 for 0.3 s from rest
        assert highway.ego.speed > 0.0
    finally:
        highway.close()
        metadrive.close()
