"""What every discriminator here shares (DRAIL, DRAIL-UN, GAIL, DiffAIL-style): per-pair outputs, the
``(s, a)`` input, the BCE of Eq. 3, minibatching, metrics and the checkpoint format
(:class:`TrainableDiscriminator`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, ClassVar, Iterator, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

class DiscriminatorOutput(NamedTuple):
    """Per-pair scores, all ``[B]``.

    For an unconditional model ``l_pos`` holds the label-free loss ``L`` and ``l_neg`` is None.
    """

    l_pos: torch.Tensor
    """L+ = L_diff(s, a, c+), Eq. 1 (how well the pair fits the expert)."""
    l_neg: torch.Tensor | None
    """L- = L_diff(s, a, c-), Eq. 1 (how well the pair fits the agent)."""
    logit: torch.Tensor
    """log D - log(1 - D): the logit of D and, by Eq. 4, the reward."""
    d: torch.Tensor
    """D in [0, 1], Eq. 2."""


def as_float_tensor(array: np.ndarray | torch.Tensor, name: str, width: int, device: torch.device) -> torch.Tensor:
    """``[B, width]`` array -> float32 tensor on ``device``; a clear error for a wrong shape."""
    x = torch.as_tensor(np.asarray(array, dtype=np.float32) if not torch.is_tensor(array) else array)
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{name}: expected shape [B, {width}], got {list(x.shape)}")
    return x.to(device=device, dtype=torch.float32)


def state_action_pairs(
    obs: np.ndarray | torch.Tensor, act: np.ndarray | torch.Tensor, obs_dim: int, act_dim: int, device: torch.device
) -> torch.Tensor:
    """``x = concat(s, a)``: ``[B, obs_dim]``, ``[B, act_dim]`` -> ``[B, obs_dim + act_dim]`` float32 tensor."""
    obs_t = as_float_tensor(obs, "obs", obs_dim, device)
    act_t = as_float_tensor(act, "act", act_dim, device)
    if obs_t.shape[0] != act_t.shape[0]:
        raise ValueError(f"obs has {obs_t.shape[0]} rows but act has {act_t.shape[0]}")
    return torch.cat([obs_t, act_t], dim=-1)


def minibatch_indices(
    n_expert: int, n_agent: int, batch_size: int, epochs: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(expert_idx, agent_idx)`` minibatches: ``epochs`` shuffled passes over the agent
    pairs in ``round(n_agent / batch_size)`` (at least 1) chunks of equal size (+-1), each paired
    with as many expert pairs taken from a shuffled expert order that cycles (so every expert pair
    gets used, none twice in a row). Equal chunks, not ``batch_size`` and a remainder: a rollout
    of 256 pairs plus a few absorbing ones would otherwise add a third step on a handful of pairs."""
    if n_expert == 0 or n_agent == 0:
        raise ValueError(f"discriminator update needs expert and agent pairs (got {n_expert} expert, {n_agent} agent)")
    n_chunks = max(1, round(n_agent / batch_size))
    expert_order, cursor = torch.randperm(n_expert, generator=generator), 0
    for _ in range(epochs):
        for agent_idx in torch.randperm(n_agent, generator=generator).tensor_split(n_chunks):
            take = min(len(agent_idx), n_expert)
            if cursor + take > n_expert:
                expert_order, cursor = torch.randperm(n_expert, generator=generator), 0
            yield expert_order[cursor : cursor + take], agent_idx
            cursor += take


def check_finite(loss: torch.Tensor, n_update: int, name: str) -> None:
    """Raise ``FloatingPointError`` when the discriminator loss is NaN or inf."""
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{name}: discriminator loss is NaN/inf at update {n_update} (check the inputs for NaN/inf and the lr)"
        )


def bce_on_logits(
    logit_expert: torch.Tensor, logit_agent: torch.Tensor, agent_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 3: ``L_D = E_expert[-log D] + E_agent[-log(1 - D)]`` with ``D = sigmoid(logit)``.

    Computed from logits (``binary_cross_entropy_with_logits``), which is exact and never
    takes the log of a saturated sigmoid. (The published agent term ``-log D`` is a typo.)
    ``agent_weight [B]`` (optional) makes ``E_agent`` a weighted mean, ``sum(w l) / sum(w)``:
    how the trainer gives an absorbing state the discounted visits it stands for.
    """
    expert_term = F.binary_cross_entropy_with_logits(logit_expert, torch.ones_like(logit_expert))
    agent_bce = F.binary_cross_entropy_with_logits(logit_agent, torch.zeros_like(logit_agent), reduction="none")
    if agent_weight is None:
        return expert_term + agent_bce.mean()
    return expert_term + (agent_weight * agent_bce).sum() / agent_weight.sum()


class MetricMeans:
    """Running means of the ``disc/`` metrics over an update's minibatches."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, loss: torch.Tensor, d_expert: torch.Tensor, d_agent: torch.Tensor) -> None:
        values = {
            "disc/loss": loss.item(),
            "disc/d_expert": d_expert.mean().item(),
            "disc/d_agent": d_agent.mean().item(),
            # balanced accuracy: expert classified D > 1/2, agent D < 1/2
            "disc/accuracy": 0.5 * ((d_expert > 0.5).float().mean() + (d_agent < 0.5).float().mean()).item(),
        }
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self, **extra: float) -> dict[str, float]:
        return {**{k: v / self.count for k, v in self.sums.items()}, **extra}


MinibatchLoss = Callable[
    [torch.Tensor, torch.Tensor, "torch.Tensor | None"],
    tuple[torch.Tensor, torch.Tensor, "torch.Tensor | Callable[[], torch.Tensor]"],
]
"""``(expert_batch [b, x_dim], agent_batch [b, x_dim], agent_weight [b] or None) -> (loss, d_expert [b],
d_agent [b])``. ``d_agent``
may be a zero-argument function instead, called under ``no_grad`` AFTER the optimiser step
(for agent scores that are only a metric, as in the DiffAIL-style baseline)."""


class TrainableDiscriminator:
    """What every discriminator here shares (DRAIL, DRAIL-UN, GAIL, DiffAIL): the ``(s, a)``
    pairs, the minibatch loop around its own loss, and the checkpoint format.

    Subclasses set, in ``__init__``: ``name``, ``obs_dim``, ``act_dim``, ``config`` (with
    ``batch_size`` and ``epochs``), ``device``, ``net``, ``optimizer``, the generators named
    in :attr:`generator_names` and ``n_updates``.
    """

    state_kind: ClassVar[str]
    """``state_dict()["kind"]``, checked by :meth:`load_state_dict`."""
    state_label: ClassVar[str]
    """Names the discriminator in the wrong-kind error."""
    matched_keys: ClassVar[tuple[str, ...]] = ("obs_dim", "act_dim")
    """Attributes saved in the state that must match on load."""
    generator_names: ClassVar[tuple[str, ...]] = ("noise_generator", "shuffle_generator")
    """Generators whose states are saved and restored."""

    name: str
    obs_dim: int
    act_dim: int
    config: Any
    device: torch.device
    net: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle_generator: torch.Generator
    n_updates: int

    def pairs(self, obs: np.ndarray | torch.Tensor, act: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``x = concat(s, a)``: ``[B, obs_dim]``, ``[B, act_dim]`` -> ``[B, x_dim]`` float32 tensor."""
        return state_action_pairs(obs, act, self.obs_dim, self.act_dim, self.device)

    def fit_minibatches(
        self,
        expert_x: torch.Tensor,
        agent_x: torch.Tensor,
        minibatch_loss: MinibatchLoss,
        agent_weight: np.ndarray | torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One Adam step on ``minibatch_loss`` per :func:`minibatch_indices` minibatch of the
        expert pairs ``expert_x [N_e, x_dim]`` and the agent pairs ``agent_x [N_a, x_dim]``
        (weighted by ``agent_weight [N_a]`` in the BCE, when given).

        Returns the ``disc/`` metrics averaged over the minibatches, plus ``disc/n_updates``.

        Raises:
            FloatingPointError: when a minibatch loss is NaN or inf.
        """
        metrics = MetricMeans()
        weight = None
        if agent_weight is not None:
            weight = torch.as_tensor(np.asarray(agent_weight, dtype=np.float32), device=self.device)
            if weight.shape != (len(agent_x),):
                raise ValueError(f"agent_weight: expected shape [{len(agent_x)}], got {list(weight.shape)}")
        for expert_idx, agent_idx in minibatch_indices(
            len(expert_x), len(agent_x), self.config.batch_size, self.config.epochs, self.shuffle_generator
        ):
            loss, d_expert, d_agent = minibatch_loss(
                expert_x[expert_idx], agent_x[agent_idx], None if weight is None else weight[agent_idx]
            )
            check_finite(loss, self.n_updates, self.name)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.n_updates += 1
            if callable(d_agent):
                with torch.no_grad():
                    d_agent = d_agent()
            metrics.add(loss.detach(), d_expert, d_agent)
        return metrics.means(**{"disc/n_updates": float(self.n_updates)})

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, weights, Adam state, generator states, counters."""
        return {
            "kind": self.state_kind,
            "name": self.name,
            **{key: getattr(self, key) for key in self.matched_keys},
            "config": asdict(self.config),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **{gen: getattr(self, gen).get_state() for gen in self.generator_names},
            "n_updates": self.n_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the kind and :attr:`matched_keys` must match."""
        if state.get("kind") != self.state_kind:
            raise ValueError(f"not a {self.state_label} state (kind={state.get('kind')!r})")
        for key in self.matched_keys:
            if state[key] != getattr(self, key):
                raise ValueError(f"discriminator state has {key}={state[key]!r}, this one has {getattr(self, key)!r}")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for gen in self.generator_names:
            getattr(self, gen).set_state(state[gen])
        self.n_updates = int(state["n_updates"])
