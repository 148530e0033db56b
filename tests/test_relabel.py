"""Relabelling a rollout (train/relabel.py): absorbing failures, their price floor, the time-limit bootstrap."""

import numpy as np

from drive_drail import spec
from drive_drail.train import relabel


def test_each_failure_adds_one_absorbing_pair_weighted_by_its_discounted_occupancy():
    obs, act = np.zeros((6, spec.OBS_DIM + 1), np.float32), np.zeros((6, 2), np.float32)
    same = relabel.discriminator_batch(obs, act, 0, 0.99)
    assert same[0] is obs and same[2] is None
    o, a, w = relabel.discriminator_batch(obs, act, 2, 0.99)
    assert o.shape == (8, spec.OBS_DIM + 1) and (o[-2:, -1] == 1.0).all() and (o[:6, -1] == 0.0).all()
    np.testing.assert_allclose(w, [1.0] * 6 + [99.0] * 2, rtol=1e-6)


def test_a_failure_is_never_cheaper_than_driving_on():
    reward = np.array([[-1.0, -2.0], [-3.0, -4.0]], np.float32)
    generous = lambda o, a: np.full(len(o), 5.0)  # noqa: E731  (a discriminator that likes the absorbing state)
    out, logged = relabel.pay_absorbing(reward, [(1, 0)], generous, 0.9, floor_quantile=0.0)
    assert logged["charts/reward_absorbing"] == 5.0 and logged["charts/reward_absorbing_paid"] == -4.0
    np.testing.assert_allclose(out, [[-1.0, -2.0], [-3.0 + 9.0 * -4.0, -4.0]])
    assert reward[1, 0] == -3.0  # the input is not changed


def test_time_limits_are_bootstrapped_with_the_value_of_the_final_observation():
    reward = np.zeros((3, 2), np.float32)
    final = np.full(spec.OBS_DIM, 2.0, np.float32)
    out = relabel.bootstrap_truncations(reward, [(2, 1, final)], lambda o: o[:, 0] * 10.0, 0.5)
    assert out[2, 1] == 10.0 and out.sum() == 10.0
    assert relabel.bootstrap_truncations(reward, [], None, 0.5) is reward
