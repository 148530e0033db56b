"""The diffusion model under DRAIL's discriminator: the noise schedule and the noise-prediction network.

1. The DDPM forward process, plain math kept apart from the network (as diffusers keeps its
   schedulers): cosine betas, ``alpha_bar`` (= ``alphas_cumprod``), :func:`add_noise`,
   and the mirrored timestep draw.
2. The conditional noise-prediction network ``eps_phi(x_t, t | c)`` (:class:`NoisePredictor`).

The discriminator that scores pairs with them is :mod:`drive_drail.models.diffusion_discriminator`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from drive_drail.models.diffusion_discriminator import DiffusionDiscriminatorConfig

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
