"""Behaviour cloning of an SB3 actor-critic's mean action: the BC baseline and the warm start."""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.policies import BaseModel
from torch import nn
from tqdm import tqdm


def actor_parameters(policy: nn.Module) -> list[nn.Parameter]:
    """The weights of an SB3 ``ActorCriticPolicy``'s mean action: its own encoder (none for a flat
    policy), the policy MLP and the action head. Separate extractors: the critic's are not among them."""
    return [*policy.pi_features_extractor.parameters(), *policy.mlp_extractor.policy_net.parameters(),
            *policy.action_net.parameters()]


def policy_mean(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """Mean action ``[B, act_dim]`` of an SB3 ``ActorCriticPolicy`` (pre-clipping)."""
    # BaseModel's: ActorCriticPolicy.extract_features ignores the extractor given when actor and critic have their own
    features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
    return policy.action_net(policy.mlp_extractor.forward_actor(features))


def behaviour_clone(
    policy: nn.Module,
    obs: np.ndarray,
    action_unit: np.ndarray,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    progress: bool = False,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Regress the policy's mean action onto expert actions (MSE), in place.

    Args:
        obs: ``[N, obs_dim]`` standardised expert observations.
        action_unit: ``[N, act_dim]`` expert actions in [-1, 1].
        progress: a progress bar over the epochs.
    Returns:
        the final train and held-out MSE, and one ``{"epoch", "train_mse", "val_mse"}`` row per epoch.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(policy.parameters()).device
    x = torch.as_tensor(obs, dtype=torch.float32, device=device)
    y = torch.as_tensor(action_unit, dtype=torch.float32, device=device)
    perm = torch.randperm(len(x), generator=gen).to(device)  # the generator stays on the CPU: the same order on every device
    n_val = int(len(x) * val_fraction) if len(x) >= 20 else 0
    val, trn = perm[:n_val], perm[n_val:]
    opt = torch.optim.Adam(actor_parameters(policy), lr=lr)
    train_loss = val_loss = float("nan")
    history: list[dict[str, float]] = []
    bar = tqdm(range(epochs), desc="bc", unit="epoch", disable=None if progress else True)
    for epoch in bar:
        order = trn[torch.randperm(len(trn), generator=gen).to(device)]
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = torch.mean((policy_mean(policy, x[idx]) - y[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        train_loss = float(np.mean(losses))
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"behaviour cloning loss is {train_loss}")
        with torch.no_grad():
            val_loss = float(torch.mean((policy_mean(policy, x[val]) - y[val]) ** 2)) if n_val else float("nan")
        history.append({"epoch": epoch + 1, "train_mse": train_loss, "val_mse": val_loss})
        bar.set_postfix(train_mse=f"{train_loss:.4f}", val_mse=f"{val_loss:.4f}")
    bar.close()
    return {"train_mse": train_loss, "val_mse": val_loss}, history
