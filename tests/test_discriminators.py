"""The Discriminator interface, the factory, and the GAIL / DiffAIL-style baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drive_drail.models.diffusion_discriminator import DiffusionDiscriminator, DiffusionDiscriminatorConfig
from drive_drail.models.discriminators import (
    ADVERSARIAL_ALGOS,
    DiffAILDiscriminator,
    Discriminator,
    GAILConfig,
    GAILDiscriminator,
    load_discriminator,
    make_discriminator,
)
from disc_helpers import auc, single_thread, toy, toy_pairs  # noqa: F401 (single_thread, toy: fixtures)

SMALL_DIFFUSION = {"hidden_dim": 64, "n_hidden_layers": 2, "lr": 1e-3}
SMALL_GAIL = {"hidden_sizes": (64, 64)}


def small_config(algo: str) -> dict:
    return dict(SMALL_GAIL if algo == "gail" else SMALL_DIFFUSION)


# ---------------------------------------------------------------- factory and interface


@pytest.mark.parametrize(
    "algo, cls",
    [
        ("drail", DiffusionDiscriminator),
        ("drail-un", DiffusionDiscriminator),
        ("gail", GAILDiscriminator),
        ("diffail", DiffAILDiscriminator),
    ],
)
def test_factory_builds_each_algo_behind_the_protocol(algo, cls):
    disc = make_discriminator(algo, obs_dim=5, act_dim=2, config=small_config(algo), seed=0)
    assert isinstance(disc, cls) and isinstance(disc, Discriminator)
    assert disc.name == algo
    reward = disc.reward(np.zeros((7, 5), np.float32), np.zeros((7, 2), np.float32))
    assert reward.shape == (7,) and reward.dtype == np.float32 and np.all(np.isfinite(reward))


def test_drail_un_is_drail_without_the_label():
    drail = make_discriminator("drail", 5, 2, SMALL_DIFFUSION)
    drail_un = make_discriminator("drail-un", 5, 2, SMALL_DIFFUSION)
    assert drail.conditional and not drail_un.conditional
    # the default FiLM label acts on the last hidden layer; DRAIL-UN has no label anywhere
    assert drail.net.film and drail.net.label_film.in_features == 10 and drail.net.input_layer.in_features == 7
    assert not drail_un.net.film and not hasattr(drail_un.net, "label_film") and drail_un.net.input_layer.in_features == 7
    drail_input = make_discriminator("drail", 5, 2, {**SMALL_DIFFUSION, "label_injection": "input"})
    assert drail_input.net.input_layer.in_features == 7 + 10


def test_factory_names_bad_algo_and_bad_key():
    with pytest.raises(ValueError, match="unknown discriminator algo 'bc'"):
        make_discriminator("bc", 5, 2)
    with pytest.raises(ValueError, match="unknown key 'hiden_dim'"):
        make_discriminator("drail", 5, 2, {"hiden_dim": 64})
    with pytest.raises(ValueError, match="unknown key 'hidden_dim'"):
        make_discriminator("gail", 5, 2, {"hidden_dim": 64})  # a diffusion key is not a GAIL key
    with pytest.raises(TypeError, match="GAILConfig"):
        make_discriminator("gail", 5, 2, DiffusionDiscriminatorConfig())
    with pytest.raises(ValueError, match="'reward'"):
        GAILConfig(reward="log")


@pytest.mark.parametrize("algo", ADVERSARIAL_ALGOS)
def test_load_discriminator_round_trip(algo, toy, tmp_path):
    disc = make_discriminator(algo, 1, 1, small_config(algo), seed=0)
    disc.update(*toy["expert"], *toy["agent"])
    torch.save(disc.state_dict(), tmp_path / "disc.pt")
    restored = load_discriminator(torch.load(tmp_path / "disc.pt", weights_only=True))
    assert restored.name == algo and type(restored) is type(disc)
    obs, act = toy["expert_test"]
    np.testing.assert_array_equal(disc.reward(obs, act), restored.reward(obs, act))
    disc.update(*toy["expert"], *toy["agent"])
    restored.update(*toy["expert"], *toy["agent"])
    np.testing.assert_array_equal(disc.reward(obs, act), restored.reward(obs, act))


@pytest.mark.parametrize("algo", ["gail", "diffail"])
def test_non_finite_loss_raises(algo, toy):
    disc = make_discriminator(algo, 1, 1, small_config(algo), seed=0)
    obs, act = toy["expert"]
    with pytest.raises(FloatingPointError, match=f"{algo}: discriminator loss is NaN/inf at update 0"):
        disc.update(np.full_like(obs, np.nan), act, *toy["agent"])


# ---------------------------------------------------------------- GAIL


def test_gail_separates_toy_classes_with_both_reward_forms(toy):
    disc = make_discriminator("gail", 1, 1, SMALL_GAIL, seed=0)
    for _ in range(5):
        metrics = disc.update(*toy["expert"], *toy["agent"])
    assert metrics["disc/accuracy"] > 0.95 and metrics["disc/d_expert"] > 0.8 > 0.2 > metrics["disc/d_agent"]
    r_expert, r_agent = disc.reward(*toy["expert_test"]), disc.reward(*toy["agent_test"])
    assert auc(r_expert, r_agent) > 0.95
    assert np.median(r_expert) > 0 > np.median(r_agent)  # the logit reward is signed
    # the -log(1 - D) form on the same weights: softplus of the logit, always positive
    positive = GAILDiscriminator(1, 1, GAILConfig(hidden_sizes=(64, 64), reward="softplus"))
    positive.load_state_dict(disc.state_dict())
    r_positive = positive.reward(*toy["agent_test"])
    assert np.all(r_positive > 0)
    d = 1 / (1 + np.exp(-r_agent.astype(np.float64)))
    np.testing.assert_allclose(r_positive, -np.log(1 - d), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- DiffAIL-style


def test_diffail_learns_the_expert_distribution(toy):
    config = {**SMALL_DIFFUSION, "reward_samples": 4}
    disc = make_discriminator("diffail", 1, 1, config, seed=0)
    for _ in range(10):
        metrics = disc.update(*toy["expert"], *toy["agent"])
    assert metrics["disc/d_expert"] > metrics["disc/d_agent"]
    r_expert, r_agent = disc.reward(*toy["expert_test"], seed=0), disc.reward(*toy["agent_test"], seed=0)
    assert auc(r_expert, r_agent) > 0.9
    assert np.all(r_expert > 0) and np.all(r_agent > 0)  # -log(1 - D) is positive
    assert r_expert.max() <= -math.log(-math.expm1(-1e-3)) + 1e-4  # the loss floor caps it


def test_diffail_reward_is_minus_log_one_minus_exp_minus_loss(toy):
    disc = DiffAILDiscriminator(1, 1, DiffusionDiscriminatorConfig(**SMALL_DIFFUSION), seed=0)
    disc.update(*toy["expert"], *toy["agent"])
    obs, act = toy["agent_test"]
    with torch.no_grad():
        loss = disc.unconditional_loss(disc.pairs(obs, act), torch.Generator().manual_seed(4)).double().clamp_min(1e-3)
    expected = -np.log(1 - np.exp(-loss.numpy()))
    np.testing.assert_allclose(disc.reward(obs, act, seed=4), expected, rtol=1e-4, atol=1e-5)


def test_diffail_trains_on_expert_data_only(toy):
    """Different agent pairs (same count) leave the weights exactly as they were."""
    a = make_discriminator("diffail", 1, 1, SMALL_DIFFUSION, seed=0)
    b = make_discriminator("diffail", 1, 1, SMALL_DIFFUSION, seed=0)
    a.update(*toy["expert"], *toy["agent"])
    b.update(*toy["expert"], *toy_pairs(2000, 5.0, seed=9))
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))
    c = make_discriminator("diffail", 1, 1, SMALL_DIFFUSION, seed=0)
    c.update(*toy_pairs(2000, 5.0, seed=9), *toy["agent"])  # other EXPERT pairs do change them
    assert not all(torch.equal(p, q) for p, q in zip(a.net.parameters(), c.net.parameters()))


def test_diffail_chunking_never_changes_a_reward():
    whole = DiffAILDiscriminator(1, 1, DiffusionDiscriminatorConfig(hidden_dim=64), seed=0)
    chunked = DiffAILDiscriminator(1, 1, DiffusionDiscriminatorConfig(hidden_dim=64, chunk_size=7), seed=0)
    obs, act = toy_pairs(50, 0.0, seed=14)
    np.testing.assert_allclose(whole.reward(obs, act, seed=2), chunked.reward(obs, act, seed=2), rtol=1e-5, atol=1e-6)


def test_the_trainers_algorithms_are_the_adversarial_ones_and_bc():
    from drive_drail.train.config import ALGOS

    assert set(ALGOS) == set(ADVERSARIAL_ALGOS) | {"bc"} and len(ALGOS) == len(ADVERSARIAL_ALGOS) + 1
