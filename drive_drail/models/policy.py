"""The deployable policy: a deterministic actor with the observation normaliser folded in.

Training (PPO from stable-baselines3, or BC) produces an actor-critic; what leaves
training is this small module: ``obs [B, OBS_DIM] -> action [B, 2] in [-1, 1]``.
:func:`drive_drail.spec.action_to_physical` maps the action to
``[accel_mps2, steer_rad]``. The evaluator, the ONNX exporter and the runtime loader
all consume this one type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from drive_drail import spec
from drive_drail.atomic import torch_save
from drive_drail.errors import UserError
from drive_drail.models.encoders import ENCODERS, NeighbourSetEncoder, check_raw_present, set_encoder_of

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass(frozen=True)
class ActorConfig:
    obs_dim: int = spec.OBS_DIM
    act_dim: int = spec.ACTION_DIM
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "tanh"
    spec_version: str = spec.SPEC_VERSION
    encoder: str = "flat"
    """"flat" (the MLP reads the observation vector) or "set" (the neighbour slots go through
    :class:`~drive_drail.models.encoders.NeighbourSetEncoder` first)."""
    set_hidden: tuple[int, ...] = (64, 64)
    """Layer widths of the set encoder's per-slot network (``encoder="set"`` only)."""


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class ActorFileError(UserError, ValueError):
    """An actor file that cannot be loaded: not an actor, truncated, or from another spec version."""


class DeterministicActor(nn.Module):
    """``action = clip(net(encoder((obs - obs_mean) / obs_std)), -1, 1)``; the flat encoder is the identity.

    Args:
        config: layer sizes and activation.
        obs_mean, obs_std: ``[obs_dim]`` fixed normaliser (from the expert data).
    """

    def __init__(self, config: ActorConfig, obs_mean: np.ndarray | None = None, obs_std: np.ndarray | None = None):
        super().__init__()
        self.config = config
        mean = np.zeros(config.obs_dim) if obs_mean is None else np.asarray(obs_mean)
        std = np.ones(config.obs_dim) if obs_std is None else np.asarray(obs_std)
        self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float32))
        if config.encoder == "set":
            check_raw_present(self.obs_mean, self.obs_std)
            self.encoder: nn.Module = NeighbourSetEncoder(config.set_hidden)
            features = self.encoder.out_dim
        elif config.encoder == "flat":
            self.encoder, features = nn.Identity(), config.obs_dim
        else:
            raise ValueError(f"encoder {config.encoder!r}: expected one of {', '.join(ENCODERS)}")
        self.net = mlp([features, *config.hidden_sizes, config.act_dim], config.activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs ``[B, obs_dim]`` float32 -> action ``[B, act_dim]`` in [-1, 1]."""
        return torch.clamp(self.net(self.encoder((obs - self.obs_mean) / self.obs_std)), -1.0, 1.0)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """NumPy convenience: ``[B, obs_dim]`` or ``[obs_dim]`` -> action in [-1, 1]."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        single = x.ndim == 1
        out = self.forward(x[None] if single else x).numpy()
        return out[0] if single else out

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Atomically write config + weights (temp file, then rename)."""
        payload = {"kind": "drive_drail.DeterministicActor", "config": asdict(self.config), "state_dict": self.state_dict()}
        torch_save(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> "DeterministicActor":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # truncated, garbage, or a pickle that needs more than tensors
            raise ActorFileError(f"{path}: not a loadable drive-drail actor file ({type(exc).__name__})") from None
        if not isinstance(payload, dict) or payload.get("kind") != "drive_drail.DeterministicActor":
            raise ActorFileError(f"{path}: not a drive-drail actor file")
        try:
            cfg = dict(payload["config"])
            cfg["hidden_sizes"] = tuple(cfg["hidden_sizes"])
            cfg["set_hidden"] = tuple(cfg.get("set_hidden", ActorConfig.set_hidden))
            config = ActorConfig(**cfg)  # an actor saved before encoders existed is "flat", the default
        except (KeyError, TypeError) as exc:
            raise ActorFileError(f"{path}: actor config is malformed ({exc})") from None
        if config.spec_version != spec.SPEC_VERSION:
            raise ActorFileError(f"{path}: spec version {config.spec_version} != {spec.SPEC_VERSION} of this drive-drail; "
                                 "retrain the policy (spec 2.0 changed the observation and the steering range)")
        try:
            state = payload["state_dict"]
            actor = cls(config, state["obs_mean"].numpy(), state["obs_std"].numpy())
            actor.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, AttributeError) as exc:
            raise ActorFileError(f"{path}: weights do not fit the actor config ({str(exc).splitlines()[0][:160]})") from None
        return actor.eval()

    @classmethod
    def from_sb3(cls, policy: nn.Module, obs_mean: np.ndarray, obs_std: np.ndarray) -> "DeterministicActor":
        """Copy the mean-action path of an SB3 ``ActorCriticPolicy`` (separate pi/vf MLPs and extractors).

        The SB3 policy must have been trained on already-normalised observations
        (``(obs - obs_mean) / obs_std``); the normaliser is folded in here.
        """
        pi_layers = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
        act_name = "tanh" if any(isinstance(m, nn.Tanh) for m in policy.mlp_extractor.policy_net) else "relu"
        set_encoder = set_encoder_of(policy.pi_features_extractor)
        if set_encoder is not None:
            encoder = {"encoder": "set", "set_hidden": tuple(m.out_features for m in set_encoder.linears)}
        else:
            encoder = {"encoder": "flat"}
        config = ActorConfig(
            obs_dim=policy.observation_space.shape[0],
            act_dim=policy.action_net.out_features,
            hidden_sizes=tuple(m.out_features for m in pi_layers),
            activation=act_name,
            **encoder,
        )
        actor = cls(config, obs_mean, obs_std)
        src = [*pi_layers, policy.action_net]
        dst = [m for m in actor.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for s, d in zip(src, dst):
                d.weight.copy_(s.weight)
                d.bias.copy_(s.bias)
            if set_encoder is not None:
                actor.encoder.load_state_dict(set_encoder.state_dict())
        return actor.eval()

