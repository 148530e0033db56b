"""DRAIL: the diffusion discriminative classifier and its reward (METHOD.md, Eq. 1-4).

The file reads top to bottom, in the order of the method:

1. Noise schedule, plain math kept apart from the network (DDPM forward process):
   cosine betas, ``alpha_bar`` (= ``alphas_cumprod``), :func:`add_noise`.
2. The conditional noise-prediction network ``eps_phi(x_t, t | c)`` (:class:`NoisePredictor`).
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

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------
# 1. Noise schedule (plain math, no network)
# --------------------------------------------------------------------------------------


def cosine_beta_schedule(n_timesteps: int = 1000, s: float = 0.008) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): ``[T]`` float64 betas clipped to [1e-4, 0.9999].

    ``f(u) = cos^2((u + s) / (1 + s) * pi / 2)`` on the grid ``u = k / T`` for k = 0..T, and
    ``beta_k = 1 - f(k + 1) / f(k)``.
    """
    u = torch.arange(n_timesteps + 1, dtype=torch.float64) / n_timesteps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(1e-4, 0.9999)


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_t = prod_{k <= t} (1 - beta_k)`` (diffusers' ``alphas_cumprod``), ``[T]``.

    Recomputed from the clipped betas so the schedule stays self-consistent.
    """
    return torch.cumprod(1.0 - betas, dim=0)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """DDPM forward process: ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps``.

    Args:
        x0: ``[..., B, x_dim]`` clean pairs.
        eps: same shape as ``x0``, standard normal noise.
        t: ``[B]`` int64 timestep indices in [0, T).
        alpha_bar: ``[T]`` cumulative product of ``1 - beta``.
    """
    alpha_bar_t = alpha_bar[t].unsqueeze(-1)  # [B, 1]
    return alpha_bar_t.sqrt() * x0 + (1.0 - alpha_bar_t).sqrt() * eps


def sample_mirrored_timesteps(
    batch_size: int, n_timesteps: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[B]`` int64 timesteps: the first half ``t ~ U[0, T)``, the second half ``T - 1 - t``.

    Mirrored (antithetic) pairs lower the variance of the one-sample estimate of E_t in Eq. 1.
    For odd ``B`` the first half holds one extra unmatched draw.
    """
    half = (batch_size + 1) // 2
    t = torch.randint(0, n_timesteps, (half,), generator=generator, device=device)
    return torch.cat([t, n_timesteps - 1 - t])[:batch_size]


# --------------------------------------------------------------------------------------
# 2. The conditional noise-prediction network eps_phi(x_t, t | c)
# --------------------------------------------------------------------------------------

ACTIVATIONS = {"mish": F.mish, "silu": F.silu, "relu": F.relu}


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
    MLP denoisers, nearly the same curve) and ~8x cheaper in PyTorch's CPU kernels."""
    n_timesteps: int = 1000
    """Diffusion steps T of the cosine schedule."""
    time_embed_dim: int = 64
    """Number of sinusoidal features of t that the learned time embedding maps from."""
    label_dim: int = 10
    """Size of the label vector: all ones = c+ (real), all zeros = c- (fake)."""
    label_injection: str = "film"
    """Where the label enters eps_phi. "film" (default): a learned per-label scale and shift of the
    LAST hidden layer's pre-activation, so everything before it is label-free and the fused pass
    computes it once for both labels (~1.7-1.9x cheaper to score both labels on CPU, where compute,
    not launches, is the cost). "input": concatenated to x_t, as in METHOD.md's public
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


class NoisePredictor(nn.Module):
    """``eps_phi(x_t, t | c)``: an MLP predicting the noise in ``x_t``.

    input ``concat(x_t, c)`` -> [Linear -> + e_l(t) -> act] x n_hidden_layers -> Linear -> eps_hat

    With ``label_injection="film"`` the input is ``x_t`` alone and the label acts on the last
    hidden layer instead: ``act(pre * (1 + gamma(c)) + beta(c))`` with ``[gamma, beta] = W_c c + b_c``,
    initialised to zero so both labels start equal (D = 1/2).

    The time embedding ``e_l(t)`` is learned per hidden layer and ADDED after the layer's
    affine map (a time-dependent bias before the activation): ``e(t) = W_t phi(t) + b_t``
    with ``phi(t)`` fixed sinusoidal features. Linear in Fourier features of t, it is as
    flexible as an ``nn.Embedding(T, width)`` table yet smooth in t, so timesteps rarely
    drawn in training still get sensible embeddings.

    Args:
        x_dim: size of ``x = concat(obs, act)``.
        label_dim: size of the label vector ``c``; 0 for an unconditional model.
    """

    def __init__(self, x_dim: int, label_dim: int, config: DiffusionDiscriminatorConfig):
        super().__init__()
        self.x_dim, self.label_dim = x_dim, label_dim
        self.hidden_dim, self.n_hidden_layers = config.hidden_dim, config.n_hidden_layers
        self.activation = ACTIVATIONS[config.activation]
        half = config.time_embed_dim // 2
        self.register_buffer("time_frequencies", torch.exp(-math.log(10_000.0) * torch.arange(half) / half))
        self.time_embedding = nn.Linear(config.time_embed_dim, config.n_hidden_layers * config.hidden_dim)
        self.film = label_dim > 0 and config.label_injection == "film"
        self.input_layer = nn.Linear(x_dim + (0 if self.film else label_dim), config.hidden_dim)
        if self.film:
            self.label_film = nn.Linear(label_dim, 2 * config.hidden_dim)
            nn.init.zeros_(self.label_film.weight)
            nn.init.zeros_(self.label_film.bias)
        self.hidden_layers = nn.ModuleList(
            nn.Linear(config.hidden_dim, config.hidden_dim) for _ in range(config.n_hidden_layers - 1)
        )
        self.output_layer = nn.Linear(config.hidden_dim, x_dim)

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """``[B]`` int64 -> ``[n_hidden_layers, B, hidden_dim]`` learned time embeddings."""
        angles = t.to(self.time_frequencies.dtype).unsqueeze(-1) * self.time_frequencies  # [B, half]
        phi_t = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [B, time_embed_dim]
        return self.time_embedding(phi_t).view(-1, self.n_hidden_layers, self.hidden_dim).transpose(0, 1)

    def trunk(
        self, h: torch.Tensor, time_emb: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Hidden stack from the first layer's pre-activation ``h [..., B, H]`` -> eps_hat ``[..., B, x_dim]``.

        ``time_emb [n_hidden_layers, B, H]`` broadcasts over any leading dims of ``h``;
        ``film = (scale, shift)`` multiplies and shifts the last hidden pre-activation (broadcast:
        ``[2, 1, H]`` turns a shared ``[B, H]`` into the two labels' ``[2, B, H]``).
        """
        pre = h + time_emb[0]
        for layer, emb in zip(self.hidden_layers, time_emb[1:]):
            pre = layer(self.activation(pre)) + emb
        if film is not None:
            pre = torch.addcmul(film[1], pre, film[0])
        return self.output_layer(self.activation(pre))

    def film_of(self, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``label [..., label_dim]`` -> FiLM ``(1 + gamma, beta)``, each ``[..., H]``."""
        gamma, beta = self.label_film(label).chunk(2, dim=-1)
        return 1.0 + gamma, beta

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """One label per pass: ``x_t [B, x_dim]``, ``t [B]``, ``label [B, label_dim]`` -> ``[B, x_dim]``."""
        if self.film:
            return self.trunk(self.input_layer(x_t), self.embed_time(t), self.film_of(label))
        inputs = x_t if self.label_dim == 0 else torch.cat([x_t, label], dim=-1)
        return self.trunk(self.input_layer(inputs), self.embed_time(t))

    def forward_both_labels(
        self, x_t: torch.Tensor, t: torch.Tensor, label_pos: torch.Tensor, label_neg: torch.Tensor
    ) -> torch.Tensor:
        """Fused pass: ``x_t [B, x_dim]``, ``t [B]`` -> eps_hat ``[2, B, x_dim]`` (index 0: c+, 1: c-).

        Equal to ``forward`` under each label, without the redundant work: the first layer
        ``W [x_t; c] + b = (W_x x_t + b) + W_c c`` computes its x_t part once (the label part
        is one constant vector per label), the time embedding is computed once for both, and
        the rest of the stack runs the two labels as ONE ``[2, B, H]`` batch (one matmul per layer).

        With FiLM, everything before the last hidden activation is label-free: it runs once on
        ``[B, H]`` and only the FiLM, the activation and the output layer see ``[2, B, H]``.

        Args:
            label_pos, label_neg: ``[label_dim]`` label vectors c+ and c-.
        """
        if self.film:
            scale, shift = self.film_of(torch.stack([label_pos, label_neg]).unsqueeze(1))  # [2, 1, H] each
            return self.trunk(self.input_layer(x_t), self.embed_time(t), (scale, shift))
        weight_x, weight_c = self.input_layer.weight.split([self.x_dim, self.label_dim], dim=1)
        h_x = F.linear(x_t, weight_x, self.input_layer.bias)  # [B, H], shared by both labels
        h = torch.stack([h_x + weight_c @ label_pos, h_x + weight_c @ label_neg])  # [2, B, H]
        return self.trunk(h, self.embed_time(t))


# --------------------------------------------------------------------------------------
# 3-6. The discriminator: Eq. 1 (losses), Eq. 2 (D), Eq. 3 (BCE update), Eq. 4 (reward)
# --------------------------------------------------------------------------------------


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
