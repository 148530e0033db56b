"""Atomic, resumable checkpoints of a training run.

Layout of a run folder::

    config.json                  the TrainConfig
    metrics.csv                  one row per iteration
    checkpoints/it-000012/       one complete checkpoint:
        ppo.zip                  SB3 policy, value net and optimiser state
        disc.pt                  discriminator weights and optimiser state
        state.pt                 iteration, global step, config, RNG states, reward normaliser
                                 (tensors and plain Python values only)
        normalizer.npz           the fixed observation normaliser (expert statistics)
        actor.pt                 the deployable deterministic actor at this point
    checkpoints/latest           name of the newest complete checkpoint
    actor.pt                     the final deployable actor

A checkpoint is written into a temp folder and renamed into place, then ``latest`` is
replaced atomically: a run killed at any moment resumes from its last checkpoint.

Loading a checkpoint never runs code: ``state.pt`` and ``disc.pt`` hold only tensors and
plain Python values and are read with ``torch.load(weights_only=True)``, whose unpickler
admits nothing else (SB3 reads ``ppo.zip`` the same way). A file that needs more, a crafted
one or one from a version that pickled numpy objects, is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from drive_drail.atomic import torch_save, write_text
from drive_drail.errors import UserError
from drive_drail.models.policy import DeterministicActor
from drive_drail.train.config import TrainConfig

class CheckpointError(UserError):
    """A checkpoint file that cannot be loaded safely (tampered, truncated, or from an old version)."""


def safe_load(path: Path) -> dict:
    """``torch.load`` restricted to tensors and plain containers; anything else is refused, never run."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a safe drive-drail checkpoint ({first})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors and plain values, got {type(payload).__name__}")
    return payload


KEEP = 2
"""Complete checkpoints kept; older ones are deleted."""


class RunningStd:
    """Running std of the discounted return, for optional reward normalisation."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.ret: np.ndarray | None = None

    def update(self, reward: np.ndarray, episode_starts: np.ndarray, gamma: float) -> None:
        """``reward``/``episode_starts``: ``[n_steps, n_envs]``."""
        if self.ret is None:
            self.ret = np.zeros(reward.shape[1])
        for r, start in zip(reward, episode_starts):
            self.ret = self.ret * gamma * (1.0 - start) + r
            for x in self.ret:  # Welford
                self.count += 1
                d = x - self.mean
                self.mean += d / self.count
                self.m2 += d * (x - self.mean)

    def to_dict(self) -> dict:
        """Plain values only (the running return as a tensor), for a weights-only checkpoint."""
        return {"count": int(self.count), "mean": float(self.mean), "m2": float(self.m2),
                "ret": None if self.ret is None else torch.as_tensor(self.ret, dtype=torch.float64)}

    @classmethod
    def from_dict(cls, d: dict) -> "RunningStd":
        out = cls()
        out.count, out.mean, out.m2 = int(d["count"]), float(d["mean"]), float(d["m2"])
        out.ret = None if d["ret"] is None else np.asarray(d["ret"].numpy(), dtype=np.float64)
        return out

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) + 1e-8 if self.count > 1 else 1.0


@dataclass
class State:
    iteration: int
    global_step: int
    ret_std: RunningStd


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest(run_dir: Path) -> Path | None:
    pointer = checkpoints_dir(run_dir) / "latest"
    if not pointer.exists():
        return None
    name = pointer.read_text(errors="replace").strip()
    if not re.fullmatch(r"it-\d{6}", name):
        raise CheckpointError(f"{pointer}: names no checkpoint (expected it-NNNNNN, got {name[:40]!r}); "
                              "write the newest complete checkpoints/it-* folder's name into it")
    path = checkpoints_dir(run_dir) / name
    return path if path.is_dir() else None


def load_config(run_dir: Path) -> TrainConfig | None:
    path = latest(run_dir)
    if path is None:
        return None
    payload = safe_load(path / "state.pt")
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path / 'state.pt'}: key 'config' missing or not a dict")
    return TrainConfig.from_dict(payload["config"])


def save(run_dir: Path, iteration: int, model, disc, demos, ret_std: RunningStd, config: TrainConfig) -> Path:
    """Write checkpoint ``it-{iteration:06d}`` completely, then point ``latest`` at it."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".it-*"):  # a temp folder a kill left mid-write (one writer per run folder)
        shutil.rmtree(stale, ignore_errors=True)
    name = f"it-{iteration:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        model.save(tmp / "ppo.zip")
        if disc is not None:
            torch_save(disc.state_dict(), tmp / "disc.pt")
        np.savez(tmp / "normalizer.npz", mean=demos.obs_mean, std=demos.obs_std)
        DeterministicActor.from_sb3(model.policy, demos.obs_mean, demos.obs_std).save(tmp / "actor.pt")
        torch_save(
            {
                "iteration": iteration,
                "global_step": int(model.num_timesteps),
                "config": config.to_dict(),
                "ret_std": ret_std.to_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": _numpy_rng_to_plain(np.random.get_state()),
                "python_rng": random.getstate(),
            },
            tmp / "state.pt",
        )
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob("it-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore(run_dir: Path, model, disc) -> State:
    """Load the newest checkpoint into ``model`` and ``disc`` (in place)."""
    path = latest(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint")
    state_path = path / "state.pt"
    payload = safe_load(state_path)
    disc_state = safe_load(path / "disc.pt") if disc is not None else None
    try:
        model.set_parameters(str(path / "ppo.zip"), exact_match=True, device=model.device)
    except Exception as exc:
        raise CheckpointError(f"{path / 'ppo.zip'}: cannot load the PPO parameters ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    try:
        if disc_state is not None:
            disc.load_state_dict(disc_state)
        torch.set_rng_state(payload["torch_rng"])
        np.random.set_state(_numpy_rng_from_plain(payload["numpy_rng"]))
        random.setstate(payload["python_rng"])
        ret_std = RunningStd.from_dict(payload["ret_std"])
        return State(int(payload["iteration"]), int(payload["global_step"]), ret_std)
    except KeyError as exc:
        raise CheckpointError(f"{state_path if disc_state is None else path}: checkpoint key {exc} missing") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint state does not fit this run ({str(exc).splitlines()[0][:200]})") from None


def _numpy_rng_to_plain(state: tuple) -> dict:
    """``np.random.get_state()`` (legacy MT19937) as a dict of a tensor and Python numbers."""
    kind, keys, pos, has_gauss, cached = state
    return {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_rng_from_plain(d: dict) -> tuple:
    return (str(d["kind"]), np.asarray(d["keys"].numpy(), dtype=np.uint32), int(d["pos"]), int(d["has_gauss"]),
            float(d["cached_gaussian"]))
