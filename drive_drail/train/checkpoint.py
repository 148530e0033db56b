"""Atomic, resumable checkpoints of a training run.

Layout of a run folder::

    config.json                  the TrainConfig
    metrics.csv                  one row per iteration
    checkpoints/it-000012/       one complete checkpoint:
        ppo.zip                  SB3 policy, value net and optimiser state
        disc.pt                  discriminator weights and optimiser state
        state.pt                 iteration, global step, RNG states, reward normaliser
        normalizer.npz           the fixed observation normaliser (expert statistics)
        actor.pt                 the deployable deterministic actor at this point
    checkpoints/latest           name of the newest complete checkpoint
    actor.pt                     the final deployable actor

A checkpoint is written into a temp folder and renamed into place, then ``latest`` is
replaced atomically: a run killed at any moment resumes from its last checkpoint.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from drive_drail.atomic import torch_save, write_text
from drive_drail.models.policy import DeterministicActor
from drive_drail.train.config import TrainConfig

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
    path = checkpoints_dir(run_dir) / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_config(run_dir: Path) -> TrainConfig | None:
    path = latest(run_dir)
    if path is None:
        return None
    payload = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    return TrainConfig.from_dict(payload["config"])


def save(run_dir: Path, iteration: int, model, disc, demos, ret_std: RunningStd, config: TrainConfig) -> Path:
    """Write checkpoint ``it-{iteration:06d}`` completely, then point ``latest`` at it."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
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
                "ret_std": ret_std.__dict__,
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
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
    payload = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    model.set_parameters(str(path / "ppo.zip"), exact_match=True, device="cpu")
    if disc is not None:
        disc.load_state_dict(torch.load(path / "disc.pt", map_location="cpu", weights_only=False))
    torch.set_rng_state(payload["torch_rng"])
    np.random.set_state(payload["numpy_rng"])
    random.setstate(payload["python_rng"])
    ret_std = RunningStd()
    ret_std.__dict__.update(payload["ret_std"])
    return State(payload["iteration"], payload["global_step"], ret_std)
