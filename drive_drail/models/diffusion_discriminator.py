"""DRAIL: the diffusion discriminative classifier and its reward (METHOD.md, Eq. 1-4).

The method reads top to bottom over three files:

1. Noise schedule, plain math kept apart from the network (DDPM forward process):
   cosine betas, ``alpha_bar`` (= ``alphas_cumprod``), :func:`add_noise` (:mod:`drive_drail.models.diffusion`).
2. The conditional noise-prediction network ``eps_phi(x_t, t | c)`` (:class:`NoisePredictor`, same module).
   The minibatch loop, the BCE and the checkpoint format every discriminator shares are in
   :mod:`drive_drail.models.discriminator_base`. This file holds the rest:
3. Eq. 1, the per-pair diffusion loss ``L_diff(s, a, c)`` under both labels, with ONE
   timestep and ONE noise draw per pair (never the reverse chain).
4. Eq. 2, the classifier ``D = sigmoid(L- - L+)``.
5. Eq. 3, binary cross-entropy on ``D`` (expert -> 1, agent -> 0), trained in :meth:`update`.
6. Eq. 4, the reward ``r = log D - log(1 - D) = L- - L+`` (:meth:`reward`).

Shapes: ``obs [B, obs_dim]`` float32, already normalised by the trainer; ``act [B, act_dim]``
in [-1, 1]; the diffusion model works on ``x = concat(obs, act)`` of ``x_dim = obs_dim + act_dim``.

Conventions worth knowing:
- ``L_diff`` is the MEAN over the ``x_dim`` entries of ``(eps_hat - eps)^2`` (not the sum), so
  logits stay O(1) whatever the observation size; every loss here uses the same mean.
- Scoring modes (:attr:`DiffusionDiscriminatorConfig.scoring`): ``"fused"`` (default) scores c+
  and c- in ONE batched forward pass sharing t and eps; ``"unshared"`` runs two passes that
  draw their own t and eps, as the authors' public implementation does.
- Label injection (:attr:`DiffusionDiscriminatorConfig.label_injection`): ``"film"`` (default) scales
  and shifts the last hidden layer by the label, so the fused pass runs the label-free trunk once;
  ``"input"`` concatenates the label to x_t as the public implementation does.
- ``conditional=False`` removes the label: the DRAIL-UN ablation (see :class:`DiffusionDiscriminator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from drive_drail.models.diffusion import (
    ACTIVATIONS,
    NoisePredictor,
    add_noise,
    alpha_bar_from_betas,
    cosine_beta_schedule,
    sample_mirrored_timesteps,
)
from drive_drail.models.discriminator_base import DiscriminatorOutput, TrainableDiscriminator, bce_on_logits

# --------------------------------------------------------------------------------------
# 3-6. The discriminator: Eq. 1 (losses), Eq. 2 (D), Eq. 3 (BCE update), Eq. 4 (reward)
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffusionDiscriminatorConfig:
    """Hyperparameters of the diffusion discriminator (DRAIL, DRAIL-UN and the DiffAIL-style baseline)."""

    hidden_dim: int = 256
    """Width of every hidden layer of eps_phi (METHOD.md: 128 to 1024)."""
    n_hidden_layers: int = 3
    """Hidden layers of eps_phi (METHOD.md: 2 to 4). 3 = one more than the minimum, so the
    denoiser can model the time-dependent score of a ~56-D driving pair while scoring stays cheap on CPU."""
    activation: str = "silu"
    """Hidden activation: "silu", "mish" or "relu". SiLU is smooth like Mish (the usual choice of
    MLP denoisers, nearly the same curve) and far cheaper in PyTorch's CPU kernels."""
    n_timesteps: int = 1000
    """Diffusion steps T of the cosine schedule."""
    time_embed_dim: int = 64
    """Number of sinusoidal features of t that the learned time embedding maps from."""
    label_dim: int = 10
    """Size of the label vector: all ones = c+ (real), all zeros = c- (fake)."""
    label_injection: str = "film"
    """Where the label enters eps_phi. "film" (default): a learned per-label scale and shift of the
    LAST hidden layer's pre-activation, so everything before it is label-free and the fused pass
    computes it once for both labels: cheaper to score both labels on CPU, where compute, not launches,
    is the cost (benchmarks/results/reward_throughput.json). "input": concatenated to x_t, as in METHOD.md's public
    implementation; its fused pass shares only the first layer's x_t part and the time embedding."""
    scoring: str = "fused"
    """"fused": c+ and c- in ONE forward pass sharing t and eps; "unshared": two passes, each
    with its own t and eps (the public implementation's way). Used in training and reward."""
    lr: float = 3e-4
    """Adam learning rate (METHOD.md: 1e-4 to 1e-3)."""
    epochs: int = 1
    """Passes over the agent batch per :meth:`update` call (METHOD.md: 1 to 5)."""
    batch_size: int = 128
    """Pairs per minibatch, for the expert batch and the agent batch alike."""
    chunk_size: int = 1024
    """Rows per network call when scoring a big batch (rewards over a rollout): keeps the
    ``[2, chunk, hidden_dim]`` activations cache-resident on CPU. Never changes a result."""
    reward_samples: int = 1
    """(t, eps) draws averaged per pair in :meth:`reward` (Monte Carlo estimate of E_t in Eq. 1)."""
    loss_floor: float = 1e-3
    """Unconditional models only (D = exp(-L)): L is clamped to at least this before the
    log(1 - D) term, which caps rewards near -log(loss_floor) ~ 6.9 where L -> 0 (t near T)."""
    device: str = "cpu"
    """Torch device of the network and of the noise generator."""

    def __post_init__(self) -> None:
        checks = {
            "hidden_dim": self.hidden_dim >= 1,
            "n_hidden_layers": self.n_hidden_layers >= 1,
            "activation": self.activation in ACTIVATIONS,
            "n_timesteps": self.n_timesteps >= 2,
            "time_embed_dim": self.time_embed_dim >= 2 and self.time_embed_dim % 2 == 0,
            "label_dim": self.label_dim >= 1,
            "label_injection": self.label_injection in ("input", "film"),
            "scoring": self.scoring in ("fused", "unshared"),
            "lr": self.lr > 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "chunk_size": self.chunk_size >= 1,
            "reward_samples": self.reward_samples >= 1,
            "loss_floor": self.loss_floor > 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"DiffusionDiscriminatorConfig: invalid value for {bad[0]!r}: {getattr(self, bad[0])!r}")


class DiffusionDiscriminator(TrainableDiscriminator):
    """DRAIL's diffusion discriminative classifier (METHOD.md Eq. 1-4), or DRAIL-UN.

    ``conditional=True`` (DRAIL): ``eps_phi(x_t, t | c)`` with c+ = ones, c- = zeros;
    ``D = sigmoid(L- - L+)`` (Eq. 2); reward ``L- - L+`` (Eq. 4).

    ``conditional=False`` (DRAIL-UN, "DRAIL with the label removed"): the same network
    without the label input, still trained adversarially with the Eq. 3 BCE on expert AND
    agent pairs. Without a c- branch to compare against, the classifier becomes the one
    an unconditional diffusion model defines on its own, ``D = exp(-L)`` (DiffAIL's form;
    DRAIL's paper contrasts exactly this against its conditional D). So
    ``-log D = L`` on expert pairs, ``-log(1 - D) = -log(-expm1(-L))`` on agent pairs, and
    the reward ``log D - log(1 - D) = -L - log(-expm1(-L))`` is signed: positive for
    ``L < log 2``. (The other reading, ``D = sigmoid(-L)``, caps D at 1/2 because L >= 0, so
    every reward would be negative: the early-termination bias METHOD.md warns about.)
    What separates it from the DiffAIL-style baseline (``discriminators.py``) is only the
    training signal: adversarial BCE here, expert-only diffusion loss there.

    Args:
        obs_dim, act_dim: sizes of ``obs [B, obs_dim]`` and ``act [B, act_dim]``.
        config: hyperparameters.
        seed: seeds the network initialisation, the (t, eps) generator and minibatch shuffling.
        conditional: False removes the label (DRAIL-UN).

    Pairs, the minibatch loop and checkpoints (``state_dict``) come from :class:`TrainableDiscriminator`.
    """

    state_kind = "drive_drail.DiffusionDiscriminator"
    state_label = "diffusion discriminator"
    matched_keys = ("obs_dim", "act_dim", "conditional")

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: DiffusionDiscriminatorConfig | None = None,
        seed: int = 0,
        conditional: bool = True,
    ):
        self.config = config = config or DiffusionDiscriminatorConfig()
        self.obs_dim, self.act_dim, self.x_dim = obs_dim, act_dim, obs_dim + act_dim
        self.conditional = conditional
        self.name = "drail" if conditional else "drail-un"
        self.device = torch.device(config.device)
        self.n_timesteps = config.n_timesteps

        betas = cosine_beta_schedule(config.n_timesteps)
        self.alpha_bar = alpha_bar_from_betas(betas).to(self.device, torch.float32)  # [T]
        self.label_pos = torch.ones(config.label_dim, device=self.device)  # c+ ("real")
        self.label_neg = torch.zeros(config.label_dim, device=self.device)  # c- ("fake")

        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG left untouched
            torch.manual_seed(seed)
            self.net = NoisePredictor(self.x_dim, config.label_dim if conditional else 0, config).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed)  # t and eps
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)  # minibatch order
        self.n_updates = 0

    # ------------------------------------------------------------------ noise (pairs: TrainableDiscriminator)
    def draw_noise(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One mirrored timestep ``t [B]`` and one ``eps ~ N(0, I)`` ``[B, x_dim]`` per pair (t drawn first)."""
        t = sample_mirrored_timesteps(batch_size, self.n_timesteps, generator, self.device)
        eps = torch.randn(batch_size, self.x_dim, generator=generator, device=self.device)
        return t, eps

    # ------------------------------------------------------------------ Eq. 1
    @staticmethod
    def diffusion_loss(eps_hat: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Eq. 1 with one (t, eps) sample: ``||eps_hat - eps||^2`` averaged over the x_dim entries -> ``[..., B]``."""
        return ((eps_hat - eps) ** 2).mean(dim=-1)

    def label_losses(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused Eq. 1 under both labels, sharing ``t [B]`` and ``eps [B, x_dim]`` -> ``(L+ [B], L- [B])``.

        ONE forward pass on the stacked ``[2, B]`` batch (see ``NoisePredictor.forward_both_labels``).
        """
        x_t = add_noise(x0, eps, t, self.alpha_bar)
        eps_hat = self.net.forward_both_labels(x_t, t, self.label_pos, self.label_neg)  # [2, B, x_dim]
        l_pos, l_neg = self.diffusion_loss(eps_hat, eps)  # [2, B] -> two [B]
        return l_pos, l_neg

    def single_label_loss(
        self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, label: torch.Tensor | None
    ) -> torch.Tensor:
        """Eq. 1 under one label ``[label_dim]`` (None: unconditional model), one pass -> ``[B]``."""
        x_t = add_noise(x0, eps, t, self.alpha_bar)
        label_batch = None if label is None else label.expand(x0.shape[0], -1)
        return self.diffusion_loss(self.net(x_t, t, label_batch), eps)

    def label_losses_two_passes(
        self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference for :meth:`label_losses`: the same shared ``t`` and ``eps``, one pass per label."""
        return self.single_label_loss(x0, t, eps, self.label_pos), self.single_label_loss(x0, t, eps, self.label_neg)

    def sample_losses(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 1 with one (t, eps) draw per pair: ``(L+, L-)``, or ``(L, None)`` unconditional, each ``[B]``.

        ``"fused"`` draws one (t, eps) shared by both labels; ``"unshared"`` draws a (t, eps) per
        label, as the public implementation does. Noise is drawn for the whole batch first and the
        network then runs in chunks of ``config.chunk_size`` rows, so the chunking never changes a result.
        """
        batch = x0.shape[0]
        if not self.conditional:  # the scoring mode is moot with one label
            t, eps = self.draw_noise(batch, generator)
            return self.in_chunks(lambda *xs: self.single_label_loss(*xs, None), x0, t, eps), None
        if self.config.scoring == "fused":
            t, eps = self.draw_noise(batch, generator)
            return self.in_chunks(self.label_losses, x0, t, eps)
        t_pos, eps_pos = self.draw_noise(batch, generator)
        t_neg, eps_neg = self.draw_noise(batch, generator)
        l_pos = self.in_chunks(lambda *xs: self.single_label_loss(*xs, self.label_pos), x0, t_pos, eps_pos)
        l_neg = self.in_chunks(lambda *xs: self.single_label_loss(*xs, self.label_neg), x0, t_neg, eps_neg)
        return l_pos, l_neg

    def in_chunks(self, fn: Any, *tensors: torch.Tensor) -> Any:
        """``fn(*tensors)`` over row chunks of ``config.chunk_size``, outputs concatenated (tuples per item)."""
        size, batch = self.config.chunk_size, tensors[0].shape[0]
        if batch <= size:
            return fn(*tensors)
        outs = [fn(*(x[i : i + size] for x in tensors)) for i in range(0, batch, size)]
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    def expected_losses(
        self, x0: torch.Tensor, generator: torch.Generator, n_samples: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Monte Carlo Eq. 1: :meth:`sample_losses` averaged over ``n_samples`` independent draws."""
        l_pos, l_neg = self.sample_losses(x0, generator)
        for _ in range(n_samples - 1):
            more_pos, more_neg = self.sample_losses(x0, generator)
            l_pos = l_pos + more_pos
            l_neg = None if l_neg is None else l_neg + more_neg
        return l_pos / n_samples, (None if l_neg is None else l_neg / n_samples)

    # ------------------------------------------------------------------ Eq. 2 and Eq. 4
    def logit_from_losses(self, l_pos: torch.Tensor, l_neg: torch.Tensor | None) -> torch.Tensor:
        """``log D - log(1 - D)`` from the losses: the logit of D (Eq. 2) and the reward (Eq. 4).

        Conditional: ``D = exp(-L+) / (exp(-L+) + exp(-L-)) = sigmoid(L- - L+)``, so the
        logit is exactly ``L- - L+``. That equals the published ``log(D + 1e-20) - log(1 - D + 1e-20)``
        wherever D is not saturated, without its rounding of D to 0 or 1 in float32.

        Unconditional: ``D = exp(-L)``, logit ``-L - log(-expm1(-L))`` with L clamped to at
        least ``config.loss_floor`` (``1 - D = -expm1(-L)`` keeps precision as L -> 0).
        """
        if l_neg is not None:
            return l_neg - l_pos
        loss = l_pos.clamp_min(self.config.loss_floor)
        return -loss - torch.log(-torch.expm1(-loss))

    def classify(
        self,
        obs: np.ndarray | torch.Tensor,
        act: np.ndarray | torch.Tensor,
        generator: torch.Generator | None = None,
        n_samples: int = 1,
    ) -> DiscriminatorOutput:
        """Score pairs (with gradients): L+, L-, logit and D (Eq. 1, 2), each ``[B]``."""
        x0 = self.pairs(obs, act)
        l_pos, l_neg = self.expected_losses(x0, generator or self.noise_generator, n_samples)
        logit = self.logit_from_losses(l_pos, l_neg)
        return DiscriminatorOutput(l_pos, l_neg, logit, torch.sigmoid(logit))

    # ------------------------------------------------------------------ Eq. 3: training
    def update(
        self,
        expert_obs: np.ndarray | torch.Tensor,
        expert_act: np.ndarray | torch.Tensor,
        agent_obs: np.ndarray | torch.Tensor,
        agent_act: np.ndarray | torch.Tensor,
        agent_weight: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Train phi on Eq. 3 for ``config.epochs`` passes over the agent pairs.

        Args:
            expert_obs ``[N_e, obs_dim]``, expert_act ``[N_e, act_dim]``: the expert data set.
            agent_obs ``[N_a, obs_dim]``, agent_act ``[N_a, act_dim]``: the latest rollout.
            agent_weight ``[N_a]``: optional BCE weight per agent pair (default 1).

        Returns:
            Means over the minibatches: ``disc/loss`` (Eq. 3), ``disc/d_expert``, ``disc/d_agent``,
            ``disc/accuracy`` (balanced, threshold 1/2), and ``disc/n_updates`` (total so far).

        Raises:
            FloatingPointError: when a minibatch loss is NaN or inf.
        """
        self.net.train()
        expert_x, agent_x = self.pairs(expert_obs, expert_act), self.pairs(agent_obs, agent_act)

        def minibatch_loss(
            expert_batch: torch.Tensor, agent_batch: torch.Tensor, weight: torch.Tensor | None
        ) -> tuple[torch.Tensor, ...]:
            # Eq. 1 + 2: per-pair logits L- - L+ (D = sigmoid(logit)), one (t, eps) per pair; both
            # batches in one pass (pairs are scored independently, so this only saves passes)
            logit = self.logit_from_losses(*self.expected_losses(torch.cat([expert_batch, agent_batch]), self.noise_generator))
            logit_expert, logit_agent = logit[: len(expert_batch)], logit[len(expert_batch) :]
            # Eq. 3: BCE, expert -> 1, agent -> 0; drives L+ down / L- up on expert pairs and the reverse on agent pairs
            loss = bce_on_logits(logit_expert, logit_agent, weight)
            return loss, torch.sigmoid(logit_expert.detach()), torch.sigmoid(logit_agent.detach())

        return self.fit_minibatches(expert_x, agent_x, minibatch_loss, agent_weight)

    # ------------------------------------------------------------------ Eq. 4: reward
    @torch.inference_mode()
    def reward(
        self, obs: np.ndarray | torch.Tensor, act: np.ndarray | torch.Tensor, seed: int | None = None
    ) -> np.ndarray:
        """Eq. 4: ``r = log D - log(1 - D)`` (= ``L- - L+`` for DRAIL), ``[B]`` float32, no gradient.

        Averages ``config.reward_samples`` (t, eps) draws per pair. Draws come from the
        discriminator's own generator, or, when ``seed`` is given, from a fresh generator
        seeded with it (the same pairs and seed always give the same rewards).
        """
        generator = self.noise_generator if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        self.net.eval()
        x0 = self.pairs(obs, act)
        logit = self.logit_from_losses(*self.expected_losses(x0, generator, self.config.reward_samples))
        return logit.float().cpu().numpy()
