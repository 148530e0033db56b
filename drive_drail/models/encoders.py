"""Observation encoders of the policy: the flat vector as it is, or the neighbours as a set.

The observation (``drive_drail.spec``) is the ego's features followed by K neighbour slots, nearest
first, each ``[present, dx, dy, dvx, dvy, cos, sin, dlane]``. A flat MLP gives every slot its own
weights. A slot that is always empty in training (stop's default traffic fills 3 of 6) keeps its
initial weights, and when denser traffic fills it at test time, those untrained weights move the action
(stop's dense split: benchmarks/results/learning_v5/READING.md, benchmarks/slot_ablation.py).

:class:`NeighbourSetEncoder` reads the slots as a set (Deep Sets, Zaheer et al. 2017; the
permutation-invariant treatment of highway-env's social-attention policy, Leurent & Mercat 2019):

    h_k = present_k * phi(slot_k)          phi: a shared ReLU MLP, h_k >= 0        (1)
    z   = [ego, max_k h_k]                 0 when no slot is present              (2)

Every slot is seen by the same phi, so a vehicle in slot 5 is encoded as well as one in slot 0, and
the max is unchanged by empty slots and by vehicles that matter less than the nearest ones.

The slots' ``present`` flags must reach the encoder unnormalised (0 or 1): the normaliser
(:func:`drive_drail.train.demos.load_demos` with ``slot_shared=True``) keeps them at mean 0, std 1.
"""

from __future__ import annotations

import torch
from torch import nn

from drive_drail import spec

EGO_DIM = len(spec.EGO_FEATURES)
SLOT_DIM = len(spec.NEIGHBOUR_FEATURES)
PRESENT = [f.name for f in spec.NEIGHBOUR_FEATURES].index("present")
"""Index of ``present`` within a slot."""
if spec.OBS_DIM != EGO_DIM + spec.K_NEIGHBOURS * SLOT_DIM:  # the set encoder's slot layout (kept under python -O)
    raise ImportError(f"spec layout changed: OBS_DIM {spec.OBS_DIM} != {EGO_DIM} + {spec.K_NEIGHBOURS} x {SLOT_DIM}")

ENCODERS = ("flat", "set")
"""The actor file's ``encoder`` values (train/config.py's POLICY_ENCODERS are the trainable ones)."""


class NeighbourSetEncoder(nn.Module):
    """``obs [B, OBS_DIM]`` (normalised, present flags raw) -> ``[B, EGO_DIM + hidden_sizes[-1]]`` by Eq. 1-2."""

    def __init__(self, hidden_sizes: tuple[int, ...] = (64, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip((SLOT_DIM, *hidden_sizes[:-1]), hidden_sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.phi = nn.Sequential(*layers)
        self.out_dim = EGO_DIM + hidden_sizes[-1]

    @property
    def linears(self) -> list[nn.Linear]:
        """phi's layers, input first."""
        return [m for m in self.phi if isinstance(m, nn.Linear)]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        ego = obs[:, :EGO_DIM]
        slots = obs[:, EGO_DIM:].reshape(obs.shape[0], spec.K_NEIGHBOURS, SLOT_DIM)  # [B, K, F]
        present = slots[:, :, PRESENT : PRESENT + 1] > 0.5  # [B, K, 1]
        h = torch.where(present, self.phi(slots), torch.zeros((), dtype=obs.dtype))  # Eq. 1
        return torch.cat([ego, h.amax(dim=1)], dim=1)  # Eq. 2


def set_encoder_of(extractor: nn.Module) -> NeighbourSetEncoder | None:
    """The set encoder behind an SB3 features extractor, or None (SB3's FlattenExtractor: a flat policy)."""
    encoder = getattr(extractor, "encoder", None)
    return encoder if isinstance(encoder, NeighbourSetEncoder) else None


def check_raw_present(obs_mean, obs_std) -> None:
    """Raise ``ValueError`` unless the normaliser leaves every slot's ``present`` flag as it is (mean 0, std 1)."""
    mean = torch.as_tensor(obs_mean, dtype=torch.float32)
    std = torch.as_tensor(obs_std, dtype=torch.float32)
    idx = [EGO_DIM + k * SLOT_DIM + PRESENT for k in range(spec.K_NEIGHBOURS)]
    if not (torch.all(mean[idx] == 0) and torch.all(std[idx] == 1)):
        raise ValueError("the set encoder needs a normaliser with mean 0 and std 1 on the slots' present flags")
