"""Record scripted-expert episodes as a sim log (``drive-drail record``).

Every vehicle (the expert ego and all traffic) and every obstacle is logged at EVERY
simulation step, so the log's frame rate is the scenario's ``simulation_frequency_hz``
and its states are the simulator's float64 numbers in the spec frame, taken by the same
helper that builds the adapter's ``scene()`` (so a scene rebuilt from the log equals the
adapter's). The log is written with :func:`drive_drail.logs.simlog.write_simlog`.

Rows follow :data:`drive_drail.logs.base.TRACK_COLUMNS`:

- ``scene_id``: one per episode (0, 1, ...); ``track_id``: stable per vehicle within an
  episode, the ego is track 0; ``frame``: consecutive from 0 (the reset state), ``t_s = frame / rate``;
- ``expert``: True for vehicles that may serve as expert egos: the scripted ego when its
  episode succeeded, traffic vehicles (IDM/MOBIL drivers) that never crashed; False for
  obstacles, failed egos and crashed traffic.

Demonstrations use train seeds only: episode ``i`` plays ``scenario.train_seeds[seed + i]``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm import tqdm

import drive_drail
from drive_drail import spec
from drive_drail.logs.base import TRACK_COLUMNS
from drive_drail.logs.simlog import write_simlog
from drive_drail.scenario import Scenario, ScenarioError, load_scenario
from drive_drail.sim import make_env
from drive_drail.sim.base import INFO_CRASHED, INFO_ROUTE_COMPLETION, INFO_SUCCESS

EGO_TRACK_ID = 0


class FrameRowsLike(Protocol):
    objects: list
    columns: dict[str, np.ndarray]


class RecordableEnv(Protocol):
    """What the recorder needs from an adapter beyond ``sim/base.py`` (the highway adapter has it)."""

    sim_frame: int
    """Simulation steps since the last reset."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple: ...

    def step(self, action_unit) -> tuple: ...

    def frame_rows(self) -> FrameRowsLike:
        """Every object now, ego first: ``objects`` (stable identities) and record-format state ``columns``."""
        ...

    def add_sim_step_hook(self, hook) -> None: ...

    def remove_sim_step_hook(self, hook) -> None: ...

    def close(self) -> None: ...


class _EpisodeRecorder:
    """Collects the frames of one episode into record-format columns."""

    def __init__(self, scene_id: int, frame_rate_hz: float):
        self.scene_id, self.frame_rate_hz = scene_id, frame_rate_hz
        self.track_ids: dict[int, int] = {}  # id(object) -> track id (objects live all episode)
        self.objects: list = []
        self.chunks: list[dict[str, np.ndarray]] = []
        self.frames = 0

    def capture(self, env: RecordableEnv) -> None:
        if env.sim_frame != self.frames:
            raise RuntimeError(f"recorder missed a simulation step (frame {env.sim_frame}, expected {self.frames})")
        rows = env.frame_rows()
        track = np.empty(len(rows.objects), dtype=np.int64)
        for i, obj in enumerate(rows.objects):
            if id(obj) not in self.track_ids:
                self.track_ids[id(obj)] = len(self.track_ids)
                self.objects.append(obj)
            track[i] = self.track_ids[id(obj)]
        n = len(track)
        self.chunks.append(
            {
                "scene_id": np.full(n, self.scene_id, dtype=np.int64),
                "track_id": track,
                "frame": np.full(n, self.frames, dtype=np.int64),
                "t_s": np.full(n, self.frames / self.frame_rate_hz),
                **rows.columns,
            }
        )
        self.frames += 1

    def table(self, ego_success: bool) -> pd.DataFrame:
        df = pd.DataFrame({c: np.concatenate([chunk[c] for chunk in self.chunks]) for c in TRACK_COLUMNS})
        # A crashed vehicle, or an ego that failed its task, is no demonstration.
        not_expert = [self.track_ids[id(o)] for o in self.objects if getattr(o, "crashed", False)]
        if not ego_success:
            not_expert.append(EGO_TRACK_ID)
        df.loc[df["track_id"].isin(not_expert), "expert"] = False
        return df


def _make_expert(scenario: Scenario):
    if scenario.simulator == "highway":
        from drive_drail.experts.highway import make_expert

        return make_expert(scenario.expert, scenario.source)
    if scenario.simulator == "metadrive":
        from drive_drail.experts.metadrive import make_expert as make_metadrive_expert

        return make_metadrive_expert(scenario.expert, scenario.source)
    raise ScenarioError(scenario.source, f"no scripted experts for simulator '{scenario.simulator}' yet", key="simulator")


def _simulator_version(simulator: str) -> str:
    package = {"highway": "highway-env", "metadrive": "metadrive-simulator"}.get(simulator, simulator)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def record_episodes(
    scenario: Scenario | str,
    n_episodes: int | None,
    seed: int | None,
    out_path: str | Path,
    progress: bool = True,
) -> Path:
    """Run the scenario's expert for ``n_episodes`` train-seed episodes and write a sim log.

    ``n_episodes`` and ``seed`` (index of the first train seed) fall back to the scenario's
    ``demos`` settings when None. Returns the written path. One row per (vehicle, simulation step).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    n_episodes = scenario.demos.episodes if n_episodes is None else n_episodes
    seed = scenario.demos.seed if seed is None else seed
    if n_episodes <= 0 or seed < 0:
        raise ValueError(f"need n_episodes > 0 and seed >= 0, got {n_episodes} and {seed}")
    seeds = scenario.train_seeds[seed : seed + n_episodes]
    if len(seeds) < n_episodes:
        raise ScenarioError(scenario.source, f"{n_episodes} episodes from index {seed} need {seed + n_episodes} train seeds, there are {len(scenario.train_seeds)}", key="train_seeds")

    rate_hz = float(scenario.simulation_frequency_hz)
    env: RecordableEnv = make_env(scenario, split="train")
    expert = _make_expert(scenario)
    tables, episodes = [], []
    bar = tqdm(seeds, desc=f"record {scenario.name}", unit="ep", disable=None if progress else True)
    try:
        for scene_id, episode_seed in enumerate(bar):
            recorder = _EpisodeRecorder(scene_id, rate_hz)
            env.reset(seed=int(episode_seed))
            expert.reset(env)
            recorder.capture(env)  # frame 0: the reset state
            env.add_sim_step_hook(recorder.capture)
            try:
                steps = 0
                while True:
                    _, _, terminated, truncated, info = env.step(expert.act(env))
                    steps += 1
                    if terminated or truncated:
                        break
            finally:
                env.remove_sim_step_hook(recorder.capture)
            tables.append(recorder.table(ego_success=bool(info[INFO_SUCCESS])))
            episodes.append(
                {
                    "scene_id": scene_id,
                    "seed": int(episode_seed),
                    "success": bool(info[INFO_SUCCESS]),
                    "crashed": bool(info[INFO_CRASHED]),
                    "route_completion": float(info[INFO_ROUTE_COMPLETION]),
                    "policy_steps": steps,
                    "frames": recorder.frames,
                    "terminated": bool(terminated),
                }
            )
            bar.set_postfix(success=f"{np.mean([e['success'] for e in episodes]):.2f}")
    finally:
        env.close()

    meta = {
        "source": "drive-drail record",
        "simulator": scenario.simulator,
        "simulator_version": _simulator_version(scenario.simulator),
        "env_id": scenario.env_id,
        "env_config": scenario.env_config_for("train"),
        "scenario": scenario.name,
        "task": scenario.task,
        "expert": scenario.expert,
        "split": "train",
        "seeds": [int(s) for s in seeds],
        "policy_frequency_hz": scenario.policy_frequency_hz,
        "simulation_frequency_hz": scenario.simulation_frequency_hz,
        "ego_track_id": EGO_TRACK_ID,
        "episodes": episodes,
        "spec_version": spec.SPEC_VERSION,
        "drive_drail_version": drive_drail.__version__,
    }
    if scenario.simulator == "highway":
        meta["highway_env_version"] = meta["simulator_version"]
    out_path = Path(out_path)
    write_simlog(out_path, pd.concat(tables, ignore_index=True), frame_rate_hz=rate_hz, meta=meta)
    return out_path
