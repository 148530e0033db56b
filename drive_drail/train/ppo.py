"""The PPO update of the adversarial loop, CleanRL-style: one function, the equations in the code.

It does what SB3's ``PPO.train`` does (and a test checks it step for step against it, with the
BC term off), on SB3's policy and rollout buffer, and adds what imitation needs:

    L(theta) = L_clip + c_v L_V - c_e H[pi_theta] + lambda_BC L_BC                      (PPO + BC)

    L_clip = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)],  rho = pi_theta(a|s) / pi_old(a|s)
    L_V    = E[(V_theta(s) - R)^2]                 R: the GAE(lambda) return of the relabelled rewards
    L_BC   = E_(s,a)~expert[sum_d (mu_theta,d(s) - a_d)^2 / (2 sg[sigma_d]^2)]   an expert minibatch per PPO minibatch

``L_BC`` keeps the policy near the demonstrations while the discriminator is still wrong: on
the stop task, plain adversarial fine-tuning swung rollout success between 0 and 0.9 and ended
below its BC start (``benchmarks/results/learning_v4/READING.md``).
``L_BC`` is the expert actions' negative log-likelihood under pi_theta (DAPG's term, Rajeswaran et al.
2018; the BC-augmented loss of Jena et al. 2020) with the std held fixed (sg: stop-gradient), so the
exploration std is left to PPO. Dividing by sigma^2 puts it on the scale of L_clip, whose gradient
in the mean grows as A (a - mu) / sigma^2: lambda_BC = 1 resists a drift of one std about as
strongly as a typical advantage pushes, on every action dimension (steering's std is 1/5 of
acceleration's, so its deviations weigh 25 times as much, which is what lane keeping needs).

With ``separate_clip`` the actor's and the critic's gradients are clipped to ``max_grad_norm``
each, so that a large critic gradient cannot scale the policy's step away under one joint clip
(how the two norms compare with reward normalisation on: ``benchmarks/results/learning_v4/READING.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from drive_drail.train.bc import actor_parameters, policy_mean


@dataclass(frozen=True)
class PPOSettings:
    epochs: int
    """Passes over the rollout per update."""
    batch_size: int
    """Minibatch size [transitions]."""
    clip_range: float
    """eps of L_clip."""
    ent_coef: float
    vf_coef: float
    max_grad_norm: float
    bc_coef: float = 0.0
    """lambda_BC; 0 = plain PPO."""
    separate_clip: bool = False
    """Clip the actor's and the critic's gradient norms separately (else one joint clip, as SB3)."""


def _actor_parameters(policy) -> list[torch.nn.Parameter]:
    return [*actor_parameters(policy), policy.log_std]


def ppo_update(policy, buffer, settings: PPOSettings, lr: float, expert: tuple[np.ndarray, np.ndarray] | None = None,
               rng: np.random.Generator | None = None) -> dict[str, float]:
    """One PPO update of an SB3 ``ActorCriticPolicy`` from a filled SB3 ``RolloutBuffer`` (returns computed).

    Args:
        lr: Adam step size for this update.
        expert: standardised expert ``(obs [N, obs_dim], unit actions [N, act_dim])`` for L_BC.
        rng: draws the expert minibatches (kept apart from the buffer's shuffling).
    Returns:
        CleanRL-named means over the update's minibatches: ``losses/policy_loss``, ``losses/value_loss``,
        ``losses/entropy``, ``losses/bc_loss``, ``losses/approx_kl`` (of the last epoch), ``losses/clip_fraction``,
        ``losses/actor_grad_norm``, ``losses/critic_grad_norm`` (before clipping) and ``charts/learning_rate``.
    """
    policy.set_training_mode(True)
    for group in policy.optimizer.param_groups:
        group["lr"] = lr
    actor = _actor_parameters(policy)
    actor_ids = {id(p) for p in actor}
    critic = [p for p in policy.parameters() if id(p) not in actor_ids]
    use_bc = settings.bc_coef > 0 and expert is not None
    if use_bc:
        expert_obs = torch.as_tensor(expert[0], dtype=torch.float32, device=policy.device)
        expert_act = torch.as_tensor(expert[1], dtype=torch.float32, device=policy.device)
        rng = rng or np.random.default_rng(0)
    log: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy", "bc_loss", "approx_kl",
                                                   "clip_fraction", "actor_grad_norm", "critic_grad_norm")}
    for _ in range(settings.epochs):
        log["approx_kl"] = []  # reported for the last epoch, where the update ended (as SB3)
        for batch in buffer.get(settings.batch_size):
            values, log_prob, entropy = policy.evaluate_actions(batch.observations, batch.actions)
            advantages = batch.advantages
            if len(advantages) > 1:  # per-minibatch normalisation, as SB3 and CleanRL
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            log_ratio = log_prob - batch.old_log_prob
            ratio = torch.exp(log_ratio)  # rho
            policy_loss = -torch.min(advantages * ratio,
                                     advantages * torch.clamp(ratio, 1 - settings.clip_range, 1 + settings.clip_range)).mean()
            value_loss = F.mse_loss(batch.returns, values.flatten())
            entropy_mean = entropy.mean()
            loss = policy_loss + settings.ent_coef * -entropy_mean + settings.vf_coef * value_loss  # SB3's order of terms
            if use_bc:
                idx = torch.as_tensor(rng.integers(0, len(expert_obs), settings.batch_size), device=policy.device)
                z = (policy_mean(policy, expert_obs[idx]) - expert_act[idx]) / policy.log_std.detach().exp()
                bc_loss = 0.5 * (z**2).sum(dim=1).mean()
                loss = loss + settings.bc_coef * bc_loss
                log["bc_loss"].append(bc_loss.item())

            policy.optimizer.zero_grad()
            loss.backward()
            actor_norm = torch.nn.utils.get_total_norm([p.grad for p in actor if p.grad is not None])
            critic_norm = torch.nn.utils.get_total_norm([p.grad for p in critic if p.grad is not None])
            if settings.separate_clip:
                torch.nn.utils.clip_grads_with_norm_(actor, settings.max_grad_norm, actor_norm)
                torch.nn.utils.clip_grads_with_norm_(critic, settings.max_grad_norm, critic_norm)
            else:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.max_grad_norm)
            policy.optimizer.step()

            with torch.no_grad():  # k3 estimator of KL(old || new) (Schulman, "Approximating KL divergence")
                log["approx_kl"].append(float(((ratio - 1) - log_ratio).mean()))
                log["clip_fraction"].append(float(((ratio - 1).abs() > settings.clip_range).float().mean()))
            log["policy_loss"].append(policy_loss.item())
            log["value_loss"].append(value_loss.item())
            log["entropy"].append(entropy_mean.item())
            log["actor_grad_norm"].append(float(actor_norm))
            log["critic_grad_norm"].append(float(critic_norm))
    policy.set_training_mode(False)
    out = {f"losses/{k}": float(np.mean(v)) for k, v in log.items() if v}
    out["charts/learning_rate"] = lr
    return out
