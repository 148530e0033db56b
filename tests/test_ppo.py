"""The project's PPO update against SB3's PPO.train, and what its BC term and separate clipping add."""

import copy

import numpy as np
import pytest
import torch

from drive_drail import spec
from drive_drail.train.bc import policy_mean
from drive_drail.train.config import PolicyConfig, PPOConfig, TrainConfig
from drive_drail.train.ppo import PPOSettings, ppo_update

from rollout_factories import collected_model


@pytest.fixture(scope="module")
def filled():
    """An SB3 PPO whose rollout buffer holds 64 real stop transitions (batched simulator) with returns computed."""
    config = TrainConfig(scenario="stop", n_envs=4, ppo=PPOConfig(n_steps=16, batch_size=16, epochs=3, max_grad_norm=0.5),
                         policy=PolicyConfig(hidden=(32, 32), init_action_std=(0.3, 0.3)))
    model = collected_model(config, obs_std=5.0, sim="batched")
    buf = model.rollout_buffer
    buf.rewards[:] = np.random.default_rng(0).normal(size=buf.rewards.shape).astype(np.float32) * 3.0
    with torch.no_grad():
        last = model.policy.predict_values(torch.as_tensor(model._last_obs))
    buf.compute_returns_and_advantage(last_values=last, dones=model._last_episode_starts)
    next(buf.get(16))  # SB3 flattens the buffer's arrays in place on the first get: snapshot them flat
    snapshot = (copy.deepcopy(model.policy.state_dict()), copy.deepcopy(model.policy.optimizer.state_dict()),
                buf.returns.copy())
    return config, model, snapshot


def _restored(model, snapshot):
    """The fixture's model back at its pre-update state (the PPO object itself cannot be deep-copied)."""
    weights, optimizer, returns = snapshot
    model.policy.load_state_dict(weights)
    model.policy.optimizer.load_state_dict(optimizer)
    model.rollout_buffer.returns[:] = returns
    return model


def _params(model):
    return [p.detach().clone() for p in model.policy.parameters()]


def _settings(config, **kw):
    return PPOSettings(config.ppo.epochs, config.ppo.batch_size, config.ppo.clip_range, config.ppo.ent_coef, config.ppo.vf_coef,
                       config.ppo.max_grad_norm, **kw)


def test_the_update_is_sb3s_ppo_train_step_for_step(filled):
    config, model, snapshot = filled
    start = _params(_restored(model, snapshot))
    np.random.seed(7)  # the buffer's minibatch shuffle
    model._current_progress_remaining = 0.5
    model.train()
    theirs = _params(model)
    sb3 = dict(model.logger.name_to_value)
    _restored(model, snapshot)
    np.random.seed(7)
    log = ppo_update(model.policy, model.rollout_buffer, _settings(config), lr=model.learning_rate(0.5))
    for (name, a), b in zip(model.policy.named_parameters(), theirs):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert max(float((a - b).abs().max()) for a, b in zip(theirs, start)) > 1e-5  # the update did something to compare
    assert log["losses/approx_kl"] == pytest.approx(sb3["train/approx_kl"], rel=1e-4)
    assert log["losses/clip_fraction"] == pytest.approx(sb3["train/clip_fraction"], rel=1e-6, abs=1e-9)
    assert log["losses/value_loss"] == pytest.approx(sb3["train/value_loss"], rel=1e-5)
    assert log["losses/entropy"] == pytest.approx(-sb3["train/entropy_loss"], rel=1e-5)
    assert log["charts/learning_rate"] == pytest.approx(config.ppo.learning_rate * 0.5)


def test_the_bc_term_pulls_the_mean_to_the_expert_actions(filled):
    config, model, snapshot = filled
    rng = np.random.default_rng(1)
    expert_obs = rng.normal(size=(256, spec.OBS_DIM)).astype(np.float32)
    expert_act = np.tile(np.array([[0.8, -0.5]], np.float32), (256, 1))  # far from the untrained mean (~0)

    def mse(policy):
        with torch.no_grad():
            return float(torch.mean((policy_mean(policy, torch.as_tensor(expert_obs)) - torch.as_tensor(expert_act)) ** 2))

    results = {}
    for coef in (0.0, 10.0):
        trained = _restored(model, snapshot)
        np.random.seed(7)
        settings = PPOSettings(10, 16, config.ppo.clip_range, config.ppo.ent_coef, config.ppo.vf_coef, config.ppo.max_grad_norm, bc_coef=coef)
        log = ppo_update(trained.policy, trained.rollout_buffer, settings, lr=1e-2,
                         expert=(expert_obs, expert_act), rng=np.random.default_rng(0))
        results[coef] = (mse(trained.policy), log)
    assert results[10.0][0] < 0.5 * results[0.0][0]
    assert "losses/bc_loss" in results[10.0][1] and "losses/bc_loss" not in results[0.0][1]


def test_separate_clipping_keeps_the_actor_step_whatever_the_critic_gradient(filled):
    """A huge critic gradient (returns x 1e4) leaves the actor's step unchanged under separate clipping,
    and shrinks it under SB3's one joint clip."""
    config, model, snapshot = filled

    def actor_step(separate: bool, scale: float):
        m = _restored(model, snapshot)
        m.rollout_buffer.returns *= scale
        before = [p.detach().clone() for p in m.policy.action_net.parameters()]
        np.random.seed(7)
        ppo_update(m.policy, m.rollout_buffer, PPOSettings(1, 64, 0.2, 0.0, 0.5, 0.5, separate_clip=separate), lr=1e-3)
        sgd = [p.grad.detach().clone() for p in m.policy.action_net.parameters()]
        return float(sum((p.detach() - b).abs().sum() for p, b in zip(m.policy.action_net.parameters(), before))), sgd

    joint_small, _ = actor_step(False, 1.0)
    joint_big, _ = actor_step(False, 1e4)
    sep_small, g_small = actor_step(True, 1.0)
    sep_big, g_big = actor_step(True, 1e4)
    assert all(torch.allclose(a, b) for a, b in zip(g_small, g_big))  # the actor's clipped gradient ignores the critic
    assert sep_big == pytest.approx(sep_small, rel=1e-4)
    assert joint_big < 0.5 * joint_small
