"""Every discriminator behind one interface: DRAIL, DRAIL-UN and the baselines (METHOD.md).

==========  ===========================================  ==========================================
algo        classifier D(s, a)                           reward r(s, a)
==========  ===========================================  ==========================================
drail       sigmoid(L- - L+), conditional diffusion      log D - log(1 - D) = L- - L+
drail-un    exp(-L), unconditional diffusion, BCE-trained log D - log(1 - D) = -L - log(1 - e^-L)
gail        sigmoid(MLP logit), BCE-trained              logit (default) or -log(1 - D) = softplus(logit)
diffail     exp(-L), unconditional diffusion, expert-only -log(1 - D) = -log(1 - e^-L)
==========  ===========================================  ==========================================

DRAIL and DRAIL-UN live in :mod:`drive_drail.models.diffusion_discriminator`; this module
adds the GAIL and DiffAIL-style baselines, the :class:`Discriminator` Protocol the trainer
programs against, and :func:`make_discriminator` / :func:`load_discriminator`.
BC has no discriminator (the trainer handles it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drive_drail.models.diffusion_discriminator import DiffusionDiscriminator, DiffusionDiscriminatorConfig
from drive_drail.models.discriminator_base import TrainableDiscriminator, bce_on_logits

ADVERSARIAL_ALGOS = ("drail", "drail-un", "gail", "diffail")
"""The learners with a discriminator; ``train/config.ALGOS`` adds ``bc``, which has none."""

ArrayLike = np.ndarray | torch.Tensor


@runtime_checkable
class Discriminator(Protocol):
    """What the adversarial trainer needs from a discriminator.

    ``obs [B, obs_dim]`` float32 (normalised by the trainer), ``act [B, act_dim]`` in [-1, 1].
    """

    name: str
    """The algo name: "drail", "drail-un", "gail" or "diffail"."""

    def update(
        self,
        expert_obs: ArrayLike,
        expert_act: ArrayLike,
        agent_obs: ArrayLike,
        agent_act: ArrayLike,
        agent_weight: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Train on expert vs agent pairs (agent pairs weighted by ``agent_weight [N_a]`` where the
        loss is a BCE); return ``disc/`` metrics (means over minibatches)."""
        ...

    def reward(self, obs: ArrayLike, act: ArrayLike) -> np.ndarray:
        """``[B]`` float32 rewards, no gradient."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Config, weights, optimiser and generator state: enough to resume."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        ...


# --------------------------------------------------------------------------------------
# GAIL
# --------------------------------------------------------------------------------------

_MLP_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass(frozen=True)
class GAILConfig:
    """Hyperparameters of the GAIL MLP discriminator."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the logit MLP on ``concat(obs, act)``."""
    activation: str = "tanh"
    """Hidden activation: "tanh", "relu" or "silu"."""
    reward: str = "logit"
    """"logit": ``log D - log(1 - D)`` (signed, same form as DRAIL's Eq. 4);
    "softplus": ``-log(1 - D) = softplus(logit)`` (always positive, the original GAIL's)."""
    lr: float = 3e-4
    """Adam learning rate."""
    epochs: int = 1
    """Passes over the agent batch per ``update`` call."""
    batch_size: int = 128
    """Pairs per minibatch, for the expert batch and the agent batch alike."""
    device: str = "cpu"
    """Torch device."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        checks = {
            "hidden_sizes": all(h >= 1 for h in self.hidden_sizes),
            "activation": self.activation in _MLP_ACTIVATIONS,
            "reward": self.reward in ("logit", "softplus"),
            "lr": self.lr > 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"GAILConfig: invalid value for {bad[0]!r}: {getattr(self, bad[0])!r}")


class GAILDiscriminator(TrainableDiscriminator):
    """GAIL: ``D = sigmoid(f(s, a))`` with an MLP ``f``, trained with Eq. 3's BCE (expert -> 1).

    Reward: the logit ``log D - log(1 - D) = f`` or ``-log(1 - D) = softplus(f)`` (``config.reward``),
    both computed from the logit, so they never round D to 0 or 1. No gradient penalty.
    """

    name = "gail"
    state_kind = "drive_drail.GAILDiscriminator"
    state_label = "GAIL discriminator"
    generator_names = ("shuffle_generator",)

    def __init__(self, obs_dim: int, act_dim: int, config: GAILConfig | None = None, seed: int = 0):
        self.config = config = config or GAILConfig()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(config.device)
        sizes = [obs_dim + act_dim, *config.hidden_sizes, 1]
        layers: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG left untouched
            torch.manual_seed(seed)
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(nn.Linear(n_in, n_out))
                if i < len(sizes) - 2:
                    layers.append(_MLP_ACTIVATIONS[config.activation]())
            self.net = nn.Sequential(*layers).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)
        self.n_updates = 0

    def logits(self, obs: ArrayLike, act: ArrayLike) -> torch.Tensor:
        """``log D - log(1 - D)`` ``[B]`` (with gradients)."""
        return self.net(self.pairs(obs, act)).squeeze(-1)

    def update(
        self,
        expert_obs: ArrayLike,
        expert_act: ArrayLike,
        agent_obs: ArrayLike,
        agent_act: ArrayLike,
        agent_weight: np.ndarray | None = None,
    ) -> dict[str, float]:
        """BCE (Eq. 3 with an MLP logit) for ``config.epochs`` passes over the agent pairs."""
        expert_x, agent_x = self.pairs(expert_obs, expert_act), self.pairs(agent_obs, agent_act)

        def minibatch_loss(
            expert_batch: torch.Tensor, agent_batch: torch.Tensor, weight: torch.Tensor | None
        ) -> tuple[torch.Tensor, ...]:
            logit = self.net(torch.cat([expert_batch, agent_batch])).squeeze(-1)  # one pass for both batches
            logit_expert, logit_agent = logit[: len(expert_batch)], logit[len(expert_batch) :]
            loss = bce_on_logits(logit_expert, logit_agent, weight)
            return loss, torch.sigmoid(logit_expert.detach()), torch.sigmoid(logit_agent.detach())

        return self.fit_minibatches(expert_x, agent_x, minibatch_loss, agent_weight)

    @torch.inference_mode()
    def reward(self, obs: ArrayLike, act: ArrayLike) -> np.ndarray:
        """``[B]`` float32: the logit, or ``softplus(logit) = -log(1 - D)``."""
        logit = self.logits(obs, act)
        reward = logit if self.config.reward == "logit" else F.softplus(logit)
        return reward.float().cpu().numpy()


# --------------------------------------------------------------------------------------
# DiffAIL-style
# --------------------------------------------------------------------------------------


class DiffAILDiscriminator(DiffusionDiscriminator):
    """DiffAIL-style baseline: an UNCONDITIONAL diffusion model of the EXPERT pairs only.

    Training minimises the plain diffusion loss (Eq. 1 without a label) on expert pairs;
    agent pairs are only scored, for the metrics. ``D = exp(-L)`` and the reward is
    ``-log(1 - D) = -log(-expm1(-L))``, computed with ``expm1`` so it stays accurate as
    L -> 0, and with L clamped to at least ``config.loss_floor``, which caps the reward at
    about ``-log(loss_floor)`` (6.9 for 1e-3) where the denoiser is near-perfect (t close to T).
    The reward is always positive: the trainer must handle terminations on purpose (METHOD.md).

    The network, the noise schedule and Eq. 1 are DRAIL-UN's unconditional path
    (:class:`DiffusionDiscriminator` with ``conditional=False``); only the training signal
    and the reward differ. Uses :class:`DiffusionDiscriminatorConfig`; ``label_dim`` and
    ``scoring`` do not apply.
    """

    name = "diffail"
    state_kind = "drive_drail.DiffAILDiscriminator"
    state_label = "DiffAIL discriminator"
    matched_keys = ("obs_dim", "act_dim")

    def __init__(
        self, obs_dim: int, act_dim: int, config: DiffusionDiscriminatorConfig | None = None, seed: int = 0
    ):
        super().__init__(obs_dim, act_dim, config, seed, conditional=False)
        self.name = "diffail"

    def unconditional_loss(self, x0: torch.Tensor, generator: torch.Generator, n_samples: int = 1) -> torch.Tensor:
        """Eq. 1 without a label, ``[B]``, averaged over ``n_samples`` (t, eps) draws (:meth:`expected_losses`)."""
        return self.expected_losses(x0, generator, n_samples)[0]

    def update(
        self,
        expert_obs: ArrayLike,
        expert_act: ArrayLike,
        agent_obs: ArrayLike,
        agent_act: ArrayLike,
        agent_weight: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Fit the expert distribution: minibatches as the adversarial discriminators use
        (``config.epochs`` passes over the agent pairs' count), loss = mean expert ``L_diff``.
        ``disc/loss`` is that diffusion loss; D metrics use ``D = exp(-L)``. Agent pairs are
        never trained on, so ``agent_weight`` does not apply."""
        expert_x, agent_x = self.pairs(expert_obs, expert_act), self.pairs(agent_obs, agent_act)

        def minibatch_loss(expert_batch: torch.Tensor, agent_batch: torch.Tensor, _weight) -> tuple[torch.Tensor, ...]:
            l_expert = self.unconditional_loss(expert_batch, self.noise_generator)

            def d_agent() -> torch.Tensor:  # a metric only: scored after the step, without gradient
                return torch.exp(-self.unconditional_loss(agent_batch, self.noise_generator))

            return l_expert.mean(), torch.exp(-l_expert.detach()), d_agent

        return self.fit_minibatches(expert_x, agent_x, minibatch_loss)

    @torch.inference_mode()
    def reward(self, obs: ArrayLike, act: ArrayLike, seed: int | None = None) -> np.ndarray:
        """``-log(1 - D) = -log(-expm1(-L))`` ``[B]`` float32, averaging ``config.reward_samples`` draws of L."""
        generator = self.noise_generator if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        self.net.eval()
        loss = self.unconditional_loss(self.pairs(obs, act), generator, self.config.reward_samples)
        loss = loss.clamp_min(self.config.loss_floor)
        return (-torch.log(-torch.expm1(-loss))).float().cpu().numpy()


# --------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------

DiscriminatorConfig = DiffusionDiscriminatorConfig | GAILConfig


def config_class(algo: str) -> type[DiffusionDiscriminatorConfig] | type[GAILConfig]:
    """The config dataclass of ``algo``."""
    if algo not in ADVERSARIAL_ALGOS:
        raise ValueError(f"unknown discriminator algo {algo!r} (expected one of {', '.join(ADVERSARIAL_ALGOS)})")
    return GAILConfig if algo == "gail" else DiffusionDiscriminatorConfig


def make_config(algo: str, values: Mapping[str, Any] | DiscriminatorConfig | None = None) -> DiscriminatorConfig:
    """Build ``algo``'s config from a mapping of overrides (e.g. a YAML section), naming any unknown key."""
    cls = config_class(algo)
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if dataclasses.is_dataclass(values):
        raise TypeError(f"discriminator {algo!r} takes a {cls.__name__}, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ValueError(
                f"discriminator config for {algo!r}: unknown key {key!r} (known: {', '.join(sorted(known))})"
            )
    return cls(**values)


def make_discriminator(
    algo: str,
    obs_dim: int,
    act_dim: int,
    config: Mapping[str, Any] | DiscriminatorConfig | None = None,
    seed: int = 0,
) -> Discriminator:
    """Build the discriminator for ``algo`` in {"drail", "drail-un", "gail", "diffail"}.

    Args:
        config: None (defaults), the algo's config dataclass, or a mapping of overrides.
        seed: seeds initialisation, noise draws and minibatch order.
    """
    cfg = make_config(algo, config)
    if algo == "gail":
        return GAILDiscriminator(obs_dim, act_dim, cfg, seed)
    if algo == "diffail":
        return DiffAILDiscriminator(obs_dim, act_dim, cfg, seed)
    return DiffusionDiscriminator(obs_dim, act_dim, cfg, seed, conditional=(algo == "drail"))


def load_discriminator(state: Mapping[str, Any]) -> Discriminator:
    """Rebuild a discriminator from its :meth:`state_dict` (config saved beside the weights)."""
    algo = state.get("name")
    if algo not in ADVERSARIAL_ALGOS:
        raise ValueError(f"discriminator state names unknown algo {algo!r}")
    values = dict(state["config"])
    if "hidden_sizes" in values:
        values["hidden_sizes"] = tuple(values["hidden_sizes"])
    disc = make_discriminator(algo, int(state["obs_dim"]), int(state["act_dim"]), values)
    disc.load_state_dict(state)
    return disc
