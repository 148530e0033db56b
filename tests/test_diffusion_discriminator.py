"""DRAIL's diffusion discriminator: schedule, Eq. 1-4, fused scoring, training, checkpoints."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drive_drail.models.diffusion import add_noise, alpha_bar_from_betas, cosine_beta_schedule, sample_mirrored_timesteps
from drive_drail.models.diffusion_discriminator import DiffusionDiscriminator, DiffusionDiscriminatorConfig
from drive_drail.models.discriminator_base import bce_on_logits, minibatch_indices
from disc_helpers import auc, single_thread, toy, toy_pairs  # noqa: F401 (single_thread, toy: fixtures)

SMALL = DiffusionDiscriminatorConfig(hidden_dim=64, n_hidden_layers=2, lr=1e-3)


@pytest.fixture(scope="module")
def trained(toy):
    """DRAIL trained for 240 minibatch steps on the toy problem, and its state."""
    disc = DiffusionDiscriminator(1, 1, SMALL, seed=0)
    for _ in range(15):
        metrics = disc.update(*toy["expert"], *toy["agent"])
    return disc, metrics, disc.state_dict()


def fresh_copy(state: dict, config: DiffusionDiscriminatorConfig = SMALL) -> DiffusionDiscriminator:
    disc = DiffusionDiscriminator(1, 1, config, seed=123)
    disc.load_state_dict(state)
    return disc


# ---------------------------------------------------------------- noise schedule


def test_cosine_schedule_matches_closed_form_and_clips():
    betas = cosine_beta_schedule(1000)
    alpha_bar = alpha_bar_from_betas(betas)
    assert betas.shape == (1000,)
    assert betas.min() >= 1e-4 and betas.max() <= 0.9999
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1])
    # away from the clipped ends, alpha_bar_t = f(t + 1) / f(0) with f(u) = cos^2((u/T + s)/(1 + s) pi/2)
    f = lambda k: math.cos((k / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (10, 250, 500, 750):
        assert alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-3)
    assert alpha_bar[-1].item() < 1e-3  # the last step is (almost) pure noise


def test_add_noise_is_the_ddpm_forward_process():
    alpha_bar = alpha_bar_from_betas(cosine_beta_schedule(1000)).float()
    x0, eps = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 10, 500, 999])
    x_t = add_noise(x0, eps, t, alpha_bar)
    for i in range(4):
        a = alpha_bar[t[i]]
        assert torch.allclose(x_t[i], a.sqrt() * x0[i] + (1 - a).sqrt() * eps[i])


@pytest.mark.parametrize("batch", [8, 9])
def test_timesteps_come_in_mirrored_pairs(batch):
    t = sample_mirrored_timesteps(batch, 1000, torch.Generator().manual_seed(0))
    half = (batch + 1) // 2
    assert t.shape == (batch,) and t.dtype == torch.int64
    assert t.min() >= 0 and t.max() <= 999
    assert torch.equal(t[half:], 999 - t[: batch - half])
    assert len(set(t[:half].tolist())) > 1  # the first half is random, not a constant


# ---------------------------------------------------------------- Eq. 1 and 2


def test_fused_pass_matches_two_separate_passes_with_the_same_noise(trained):
    disc = trained[0]
    x0 = disc.pairs(*toy_pairs(64, 0.0, seed=5))
    t, eps = disc.draw_noise(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused = disc.label_losses(x0, t, eps)
        separate = disc.label_losses_two_passes(x0, t, eps)
    for a, b in zip(fused, separate):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fused[0], fused[1])  # the label changes the prediction


@pytest.mark.parametrize("scoring, conditional", [("fused", True), ("unshared", True), ("fused", False)])
def test_chunked_scoring_never_changes_a_reward(scoring, conditional):
    config = DiffusionDiscriminatorConfig(hidden_dim=64, scoring=scoring)
    whole = DiffusionDiscriminator(1, 1, config, conditional=conditional)
    chunked = DiffusionDiscriminator(1, 1, dataclasses.replace(config, chunk_size=7), conditional=conditional)
    obs, act = toy_pairs(50, 0.0, seed=14)
    np.testing.assert_allclose(whole.reward(obs, act, seed=2), chunked.reward(obs, act, seed=2), rtol=1e-5, atol=1e-6)


def test_d_is_sigmoid_of_per_label_loss_difference(trained):
    disc = trained[0]
    obs, act = toy_pairs(32, 0.5, seed=6)
    out = disc.classify(obs, act, generator=torch.Generator().manual_seed(7))
    # recompute L+ and L- by hand from the network, with the same (t, eps) draw
    x0 = torch.as_tensor(np.concatenate([obs, act], axis=1))
    t, eps = disc.draw_noise(32, torch.Generator().manual_seed(7))
    x_t = add_noise(x0, eps, t, disc.alpha_bar)
    with torch.no_grad():
        l_pos = ((disc.net(x_t, t, torch.ones(32, 10)) - eps) ** 2).mean(dim=1)
        l_neg = ((disc.net(x_t, t, torch.zeros(32, 10)) - eps) ** 2).mean(dim=1)
    assert torch.allclose(out.l_pos, l_pos, atol=1e-6) and torch.allclose(out.l_neg, l_neg, atol=1e-6)
    expected_d = torch.exp(-l_pos) / (torch.exp(-l_pos) + torch.exp(-l_neg))  # Eq. 2 as written
    assert torch.allclose(out.d, expected_d, atol=1e-6)
    assert torch.allclose(out.d, torch.sigmoid(l_neg - l_pos), atol=1e-6)


# ---------------------------------------------------------------- Eq. 3: gradient direction


@pytest.mark.parametrize("target", [1.0, 0.0])
def test_one_bce_step_moves_label_losses_the_right_way(target):
    """Expert pairs (target 1): Eq. 3 pushes L+ down and L- up; agent pairs (target 0): the reverse.

    Per pair, dL_D/dL+ and dL_D/dL- have the right signs; through the shared weights one
    optimiser step need not move each loss on its own way (both may fall together), but it
    always moves their difference, the logit L- - L+, on those same pairs with fixed t, eps.
    """
    disc = DiffusionDiscriminator(1, 1, SMALL, seed=0)
    obs, act = toy_pairs(256, 1.0 if target else -1.0, seed=8)
    x0 = disc.pairs(obs, act)
    t, eps = disc.draw_noise(256, torch.Generator().manual_seed(9))
    with torch.no_grad():
        before_pos, before_neg = disc.label_losses(x0, t, eps)
    l_pos, l_neg = disc.label_losses(x0, t, eps)
    l_pos.retain_grad()
    l_neg.retain_grad()
    loss = F.binary_cross_entropy_with_logits(l_neg - l_pos, torch.full_like(l_pos, target))  # Eq. 3
    disc.optimizer.zero_grad()
    loss.backward()
    sign = 1.0 if target == 1.0 else -1.0
    assert torch.all(sign * l_pos.grad > 0) and torch.all(sign * l_neg.grad < 0)
    disc.optimizer.step()
    with torch.no_grad():
        after_pos, after_neg = disc.label_losses(x0, t, eps)
    gap_change = (after_neg - after_pos).mean() - (before_neg - before_pos).mean()
    assert sign * gap_change > 0


def test_weighted_bce_counts_a_pair_as_its_weight_in_copies():
    """An agent pair of weight k contributes exactly as k copies of it would (the absorbing state's
    discounted visits); unit weights are the plain Eq. 3."""
    gen = torch.Generator().manual_seed(0)
    logit_expert, logit_agent = torch.randn(8, generator=gen), torch.randn(5, generator=gen)
    weight = torch.tensor([1.0, 1.0, 1.0, 1.0, 3.0])
    copies = torch.cat([logit_agent, logit_agent[-1:].expand(2)])
    assert torch.allclose(bce_on_logits(logit_expert, logit_agent, weight), bce_on_logits(logit_expert, copies))
    assert torch.allclose(bce_on_logits(logit_expert, logit_agent, torch.ones(5)), bce_on_logits(logit_expert, logit_agent))


def test_weighted_agent_pairs_are_pushed_harder_toward_fake(toy):
    """The same rare agent pair, weighted 50x, ends with a lower D than unweighted after the same updates."""
    rare_obs, rare_act = np.full((1, 1), 2.5, np.float32), np.full((1, 1), -0.5, np.float32)  # between the modes
    agent_obs = np.concatenate([toy["agent"][0][:255], rare_obs])
    agent_act = np.concatenate([toy["agent"][1][:255], rare_act])
    rewards = {}
    for w in (1.0, 50.0):
        disc = DiffusionDiscriminator(1, 1, SMALL, seed=0)
        weight = np.ones(256, np.float32)
        weight[-1] = w
        for _ in range(30):
            disc.update(*toy["expert"], agent_obs, agent_act, weight)
        rewards[w] = disc.reward(np.repeat(rare_obs, 512, 0), np.repeat(rare_act, 512, 0), seed=0).mean()
    assert rewards[50.0] < rewards[1.0]


# ---------------------------------------------------------------- training and Eq. 4


def test_drail_separates_toy_classes(toy, trained):
    disc, metrics, _ = trained
    assert metrics["disc/accuracy"] > 0.9
    assert metrics["disc/d_expert"] > 0.8 > 0.2 > metrics["disc/d_agent"]
    assert metrics["disc/n_updates"] == 15 * 16  # 2000 agent pairs / 128 -> 16 minibatches per epoch
    r_expert = disc.reward(*toy["expert_test"], seed=0)
    r_agent = disc.reward(*toy["agent_test"], seed=0)
    assert auc(r_expert, r_agent) > 0.95  # held-out, one (t, eps) draw per pair
    # Eq. 4 is signed: positive where the pair looks expert, negative where it looks like the agent
    assert (r_expert > 0).mean() > 0.9 and (r_agent < 0).mean() > 0.9


def test_reward_equals_log_d_minus_log_one_minus_d(trained):
    disc = trained[0]
    obs, act = toy_pairs(200, 0.0, seed=10)
    reward = disc.reward(obs, act, seed=11)
    with torch.no_grad():
        d = disc.classify(obs, act, generator=torch.Generator().manual_seed(11)).d.double().numpy()
    finite = (d > 1e-4) & (d < 1 - 1e-4)  # where float32 D keeps enough digits
    assert finite.sum() > 50
    published = np.log(d + 1e-20) - np.log(1 - d + 1e-20)  # the public implementation's form
    np.testing.assert_allclose(reward[finite], published[finite], rtol=1e-3, atol=1e-3)
    assert reward.dtype == np.float32 and reward.shape == (200,)


def test_reward_is_reproducible_under_a_seed_and_averages_samples(trained):
    disc, _, state = trained
    obs, act = toy_pairs(100, 0.0, seed=12)
    np.testing.assert_array_equal(disc.reward(obs, act, seed=3), disc.reward(obs, act, seed=3))
    assert not np.array_equal(disc.reward(obs, act, seed=3), disc.reward(obs, act, seed=4))
    many = fresh_copy(state, DiffusionDiscriminatorConfig(hidden_dim=64, n_hidden_layers=2, reward_samples=16))
    spread_one = np.std([disc.reward(obs, act, seed=s) for s in range(8)], axis=0).mean()
    spread_many = np.std([many.reward(obs, act, seed=s) for s in range(8)], axis=0).mean()
    assert spread_many < 0.5 * spread_one  # 16 draws: ~1/4 of the spread in theory


def test_shared_noise_lowers_reward_variance(trained):
    """Fused (shared t, eps) vs unshared scoring of the same trained model."""
    disc, _, state = trained
    unshared = fresh_copy(state, DiffusionDiscriminatorConfig(hidden_dim=64, n_hidden_layers=2, scoring="unshared"))
    obs, act = toy_pairs(200, 0.0, seed=13)
    var_fused = np.var([disc.reward(obs, act, seed=s) for s in range(16)], axis=0).mean()
    var_unshared = np.var([unshared.reward(obs, act, seed=s) for s in range(16)], axis=0).mean()
    assert var_fused < var_unshared


def test_unshared_mode_also_learns(toy):
    config = DiffusionDiscriminatorConfig(hidden_dim=64, n_hidden_layers=2, lr=1e-3, scoring="unshared")
    disc = DiffusionDiscriminator(1, 1, config, seed=0)
    for _ in range(10):
        disc.update(*toy["expert"], *toy["agent"])
    assert auc(disc.reward(*toy["expert_test"], seed=0), disc.reward(*toy["agent_test"], seed=0)) > 0.95


@pytest.mark.parametrize("label_injection", ["film", "input"])
def test_each_label_injection_learns_and_its_fused_pass_matches_two_passes(toy, label_injection):
    """Both places for the label (FiLM of the last hidden layer, the default; or the network input)
    separate the toy classes, and each one's fused pass equals one pass per label. FiLM starts
    with D = 1/2 everywhere (zero-initialised scale and shift: both labels equal)."""
    config = DiffusionDiscriminatorConfig(hidden_dim=64, n_hidden_layers=2, lr=1e-3, label_injection=label_injection)
    disc = DiffusionDiscriminator(1, 1, config, seed=0)
    assert disc.net.film == (label_injection == "film")
    if label_injection == "film":
        assert np.all(disc.reward(*toy["expert_test"], seed=0) == 0.0)
    for _ in range(15):
        disc.update(*toy["expert"], *toy["agent"])
    assert auc(disc.reward(*toy["expert_test"], seed=0), disc.reward(*toy["agent_test"], seed=0)) > 0.95
    x0 = disc.pairs(*toy_pairs(64, 0.0, seed=5))
    t, eps = disc.draw_noise(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused = disc.label_losses(x0, t, eps)
        for a, b in zip(fused, disc.label_losses_two_passes(x0, t, eps)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fused[0], fused[1])


def test_drail_un_learns_with_a_signed_reward(toy):
    disc = DiffusionDiscriminator(1, 1, SMALL, seed=0, conditional=False)
    assert disc.name == "drail-un" and disc.net.label_dim == 0
    for _ in range(10):
        disc.update(*toy["expert"], *toy["agent"])
    r_expert = disc.reward(*toy["expert_test"], seed=0)
    r_agent = disc.reward(*toy["agent_test"], seed=0)
    assert auc(r_expert, r_agent) > 0.95
    assert np.median(r_expert) > 0 > np.median(r_agent)
    # reward = log D - log(1 - D) with D = exp(-L)
    obs, act = toy["expert_test"]
    with torch.no_grad():
        loss = disc.classify(obs, act, generator=torch.Generator().manual_seed(5)).l_pos.double().clamp_min(1e-3)
    d = torch.exp(-loss)
    expected = (torch.log(d) - torch.log1p(-d)).numpy()
    np.testing.assert_allclose(disc.reward(obs, act, seed=5), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- checkpoints and errors


def test_state_dict_round_trip_restores_rewards_and_optimiser(toy, trained, tmp_path):
    disc, _, _ = trained
    original = fresh_copy(trained[2])
    torch.save(original.state_dict(), tmp_path / "disc.pt")
    restored = DiffusionDiscriminator(1, 1, SMALL, seed=999)
    restored.load_state_dict(torch.load(tmp_path / "disc.pt", weights_only=True))
    obs, act = toy["expert_test"]
    # generator state travels with the checkpoint: the next unseeded draws agree
    np.testing.assert_array_equal(original.reward(obs, act), restored.reward(obs, act))
    # Adam moments and shuffling travel too: one more update lands on identical weights
    original.update(*toy["expert"], *toy["agent"])
    restored.update(*toy["expert"], *toy["agent"])
    for a, b in zip(original.net.parameters(), restored.net.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(original.reward(obs, act, seed=1), restored.reward(obs, act, seed=1))
    # without the optimiser state the same update diverges (so the check above has teeth)
    no_opt = fresh_copy(trained[2])
    no_opt.optimizer = torch.optim.Adam(no_opt.net.parameters(), lr=SMALL.lr)
    no_opt.update(*toy["expert"], *toy["agent"])
    assert not all(torch.equal(a, b) for a, b in zip(original.net.parameters(), no_opt.net.parameters()))


def test_load_rejects_a_mismatched_state(trained):
    with pytest.raises(ValueError, match="conditional"):
        DiffusionDiscriminator(1, 1, SMALL, conditional=False).load_state_dict(trained[2])
    with pytest.raises(ValueError, match="obs_dim"):
        DiffusionDiscriminator(2, 1, SMALL).load_state_dict(trained[2])


def test_non_finite_loss_raises(toy):
    disc = DiffusionDiscriminator(1, 1, SMALL, seed=0)
    obs, act = toy["agent"]
    disc.update(*toy["expert"], obs, act)  # 16 good minibatch updates first
    bad_obs = np.full_like(obs, np.nan)
    with pytest.raises(FloatingPointError, match="discriminator loss is NaN/inf at update 16"):
        disc.update(*toy["expert"], bad_obs, act)


def test_bad_inputs_and_config_raise_clear_errors():
    disc = DiffusionDiscriminator(3, 2, SMALL)
    with pytest.raises(ValueError, match=r"obs: expected shape \[B, 3\], got \[4, 2\]"):
        disc.reward(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="4 rows but act has 5"):
        disc.reward(np.zeros((4, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="'scoring'"):
        DiffusionDiscriminatorConfig(scoring="shared")


def test_minibatches_split_the_agent_pairs_evenly():
    """A rollout of 256 pairs plus 10 absorbing ones makes 2 steps of 133, not 128 + 128 + 10."""
    batches = list(minibatch_indices(1000, 266, 128, 2, torch.Generator().manual_seed(0)))
    assert [len(a) for _, a in batches] == [133, 133, 133, 133]
    assert all(len(e) == len(a) for e, a in batches)  # as many expert pairs as agent pairs
    for epoch in (batches[:2], batches[2:]):  # every agent pair once per epoch
        assert sorted(torch.cat([a for _, a in epoch]).tolist()) == list(range(266))
    assert [len(a) for _, a in minibatch_indices(1000, 40, 128, 1, torch.Generator())] == [40]  # fewer than a batch: one step
    assert [len(e) for e, _ in minibatch_indices(30, 200, 128, 1, torch.Generator())] == [30, 30]  # small expert set: all of it
