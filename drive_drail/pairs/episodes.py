"""Expert pairs as episodes, for offline-RL and imitation tools that read trajectories.

A pairs file holds one row per action period of each expert track. The rows of one track whose
``frame`` values lie one action period apart (``frame_rate_hz / action_hz`` frames) form an
episode; a pair the converter dropped (an implausible recovered action) splits the track there.
An episode of n pairs has n observations and n - 1 transitions: the converter keeps no
observation after a track's last pair, so that pair's action has no next observation and is left
out.

Logs do not end in terminal states: a track ends where the log or the vehicle's visibility ends.
Every episode is therefore truncated at its last step and never terminated. Rewards are zero:
demonstrations carry none (an imitation learner makes its own).

Two writers share :func:`episodes`:

- :func:`write_transitions`: a Parquet table with one row per transition (``obs``, ``action``,
  ``next_obs``, ``terminal``, ``truncated``), the layout of SB3's and imitation's replay buffers;
- :func:`write_minari`: a Minari dataset (``pip install 'drive-drail[minari]'``), readable with
  ``minari.load_dataset``. Observations are the spec's (``spec.OBS_NAMES``, normalised); actions
  are the policy's unit actions in [-1, 1]^2 (``spec.action_to_unit``), as in the
  ``drive-drail/<scenario>-v0`` gymnasium environments.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from drive_drail import spec
from drive_drail.atomic import atomic_path
from drive_drail.errors import UserError
from drive_drail.logs.base import LogError


@dataclass(frozen=True)
class Episode:
    """One expert track's contiguous run of pairs."""

    scene_id: int
    track_id: int
    frame: np.ndarray
    """``[n]`` log frames of the observations."""
    t_s: np.ndarray
    """``[n]`` log times of the observations [s]."""
    observations: np.ndarray
    """``[n, OBS_DIM]`` float32, spec-normalised."""
    actions: np.ndarray
    """``[n - 1, 2]`` float32 unit actions in [-1, 1] (``spec.action_to_unit`` of accel_mps2, steer_rad)."""

    @property
    def rewards(self) -> np.ndarray:
        """``[n - 1]`` float32 zeros: demonstrations carry no reward."""
        return np.zeros(len(self.actions), np.float32)

    @property
    def terminations(self) -> np.ndarray:
        """``[n - 1]`` bool, never: a log ends, no terminal state is reached."""
        return np.zeros(len(self.actions), bool)

    @property
    def truncations(self) -> np.ndarray:
        """``[n - 1]`` bool, the last transition only: where the track ends."""
        return np.arange(len(self.actions)) == len(self.actions) - 1


def episodes(pairs: pd.DataFrame, meta: dict, source: str = "pairs") -> list[Episode]:
    """Split ``pairs`` (a :func:`~drive_drail.pairs.storage.read_pairs` table) into episodes of >= 2 pairs,
    in (scene_id, track_id, frame) order. ``meta`` supplies ``frame_rate_hz`` and ``action_hz``."""
    try:
        period = float(meta["frame_rate_hz"]) / float(meta["action_hz"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise LogError(source, "the metadata gives no frame_rate_hz / action_hz to find consecutive pairs",
                       column="action_hz") from None
    k = int(round(period))
    if k < 1 or abs(period - k) > 1e-6:
        raise LogError(source, f"frame_rate_hz / action_hz = {period:g} is not a whole number of frames", column="action_hz")
    ordered = pairs.sort_values(["scene_id", "track_id", "frame"], kind="stable")
    scene, track, frame = (ordered[c].to_numpy(np.int64) for c in ("scene_id", "track_id", "frame"))
    starts = np.ones(len(ordered), bool)
    starts[1:] = (scene[1:] != scene[:-1]) | (track[1:] != track[:-1]) | (frame[1:] - frame[:-1] != k)
    obs = ordered[list(spec.OBS_NAMES)].to_numpy(np.float32)
    act = spec.action_to_unit(ordered[list(spec.ACTION_NAMES)].to_numpy(np.float64)).astype(np.float32)
    t_s = ordered["t_s"].to_numpy(np.float64)
    bounds = np.append(np.flatnonzero(starts), len(ordered))
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi - lo >= 2:
            out.append(Episode(int(scene[lo]), int(track[lo]), frame[lo:hi], t_s[lo:hi], obs[lo:hi], act[lo : hi - 1]))
    return out


def transitions_table(eps: list[Episode]) -> pd.DataFrame:
    """One row per transition: ids, ``step``, ``t_s``, ``spec.OBS_NAMES``, ``action_accel`` / ``action_steer``
    (unit), ``next_`` + ``spec.OBS_NAMES``, ``reward`` (0), ``terminal`` (never) and ``truncated`` (last step)."""
    if not eps:
        return pd.DataFrame(columns=["episode_id", "scene_id", "track_id", "step", "t_s", *spec.OBS_NAMES,
                                     "action_accel", "action_steer", *(f"next_{n}" for n in spec.OBS_NAMES),
                                     "reward", "terminal", "truncated"])
    n = np.array([len(e.actions) for e in eps])
    columns: dict[str, np.ndarray] = {
        "episode_id": np.repeat(np.arange(len(eps)), n),
        "scene_id": np.repeat([e.scene_id for e in eps], n),
        "track_id": np.repeat([e.track_id for e in eps], n),
        "step": np.concatenate([np.arange(m) for m in n]),
        "t_s": np.concatenate([e.t_s[:-1] for e in eps]),
    }
    obs = np.concatenate([e.observations[:-1] for e in eps])
    next_obs = np.concatenate([e.observations[1:] for e in eps])
    actions = np.concatenate([e.actions for e in eps])
    columns.update({name: obs[:, i] for i, name in enumerate(spec.OBS_NAMES)})
    columns.update({"action_accel": actions[:, 0], "action_steer": actions[:, 1]})
    columns.update({f"next_{name}": next_obs[:, i] for i, name in enumerate(spec.OBS_NAMES)})
    columns.update({"reward": np.concatenate([e.rewards for e in eps]), "terminal": np.concatenate([e.terminations for e in eps]),
                    "truncated": np.concatenate([e.truncations for e in eps])})
    return pd.DataFrame(columns)


def write_transitions(eps: list[Episode], out: str | Path) -> pd.DataFrame:
    """Write :func:`transitions_table` to ``out`` (Parquet, atomically); returns the table."""
    table = transitions_table(eps)
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def write_minari(eps: list[Episode], dataset_id: str, meta: dict, env_id: str | None = None,
                 root: str | Path | None = None, author: str | None = None, author_email: str | None = None):
    """Create the Minari dataset ``dataset_id`` (under ``root``, else ``$MINARI_DATASETS_PATH`` or
    ``~/.minari/datasets``); returns the ``MinariDataset``.

    ``env_id``: the gymnasium id to evaluate policies trained on it (``drive-drail/<scenario>-v0``),
    stored as the dataset's ``eval_env``.
    """
    try:
        import gymnasium as gym
        import minari
        from minari.data_collector import EpisodeBuffer
    except ImportError:
        raise UserError("the Minari export needs minari: pip install 'drive-drail[minari]'") from None
    if not eps:
        raise UserError("no episode of two or more consecutive pairs to export")
    if env_id is not None and env_id not in gym.registry:
        raise UserError(f"--env {env_id!r} is not a registered gymnasium id (drive-drail registers drive-drail/<scenario>-v0)")
    with _minari_root(root):
        if dataset_id in minari.list_local_datasets():
            raise UserError(f"Minari dataset {dataset_id!r} already exists (under {minari.storage.get_dataset_path()}); "
                            "choose another id or version")
        buffers = [EpisodeBuffer(id=i, observations=e.observations, actions=e.actions, rewards=e.rewards.astype(np.float64),
                                 terminations=e.terminations, truncations=e.truncations) for i, e in enumerate(eps)]
        source = meta.get("source_file", "?")
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            eval_env=env_id,
            author=author,
            author_email=author_email,
            algorithm_name=f"expert pairs from {meta.get('format', '?')} log {Path(str(source)).name}",
            observation_space=gym.spaces.Box(-np.inf, np.inf, (spec.OBS_DIM,), np.float32),
            action_space=gym.spaces.Box(-1.0, 1.0, (spec.ACTION_DIM,), np.float32),
            description=(f"drive-drail expert pairs (spec v{spec.SPEC_VERSION}) as episodes: observations "
                         f"{', '.join(spec.OBS_NAMES[:4])}, ... ({spec.OBS_DIM}, normalised), unit actions "
                         f"[accel, steer] in [-1, 1]; {meta.get('action_hz', '?')} Hz; rewards 0, truncated at the end of each track."),
            data_format="arrow",
            requirements=["drive-drail"],
        )


@contextmanager
def _minari_root(root: str | Path | None):
    """Minari reads its datasets folder from ``$MINARI_DATASETS_PATH`` only: set it for the block (None: as it is)."""
    if root is None:
        yield
        return
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        os.environ.pop("MINARI_DATASETS_PATH") if before is None else os.environ.update(MINARI_DATASETS_PATH=before)
