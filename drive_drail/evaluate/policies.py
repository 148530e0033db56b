"""Policy sources for closed-loop evaluation: every table gets its floor and its ceiling.

- a trained policy: an actor ``.pt``, a training run or checkpoint folder (``actor.pt``,
  or the newest complete checkpoint's), or an ONNX export folder / ``policy.onnx``,
  all through :func:`drive_drail.deploy.runtime.load_policy`;
- ``expert``: the scenario's scripted expert (the ceiling);
- ``random``: uniform actions in [-1, 1]^2, seeded per episode (the floor);
- ``constant`` or ``constant:ACCEL,STEER``: one fixed unit action, by default ``[0, 0]``
  (hold the speed, wheels straight);
- ``log`` (replay of real scenarios only): the logged sdc's own actions
  (:class:`LoggedActionsPolicy`), the fidelity row of a replay table.

A :class:`PolicySpec` is the picklable description that travels to worker processes
and Ray tasks; :func:`build_policy` turns it into an :class:`EpisodePolicy` there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from drive_drail import spec
from drive_drail.errors import UserError
from drive_drail.scenario import Scenario

BASELINES = ("expert", "random", "constant")
EXPERT_MODULES: dict[str, str] = {"highway": "drive_drail.experts.highway", "metadrive": "drive_drail.experts.metadrive"}
"""simulator -> module defining ``make_expert(name, source)`` whose expert has ``reset(env)`` and ``act(env)``."""


class EpisodePolicy(Protocol):
    """What the closed-loop runner drives the ego with."""

    def start_episode(self, env, seed: int) -> None:
        """Called after ``env.reset(seed=seed)``, before the first ``act``."""
        ...

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Spec observation ``[OBS_DIM]`` -> unit action ``[2]`` in [-1, 1]."""
        ...


@dataclass(frozen=True)
class PolicySpec:
    """A policy to evaluate, as plain data."""

    label: str
    """Name in tables and plots."""
    kind: str
    """``artifact``, ``expert``, ``random`` or ``constant``."""
    path: str = ""
    """artifact: absolute path of the actor / checkpoint / export."""
    backend: str = "auto"
    """artifact: runtime backend for :func:`load_policy` (``auto``, ``torch``, ``onnxruntime``, ``tensorrt``)."""
    action: tuple[float, float] = (0.0, 0.0)
    """constant: the unit action ``[accel, steer]`` in [-1, 1]."""
    seed: int = 0
    """random: base seed, mixed with each episode's seed."""

    @property
    def source(self) -> str:
        """Where the policy comes from: the artifact's path, or the baseline's description."""
        if self.kind == "artifact":
            return self.path
        if self.kind == "constant":
            return f"constant:{self.action[0]:g},{self.action[1]:g}"
        if self.kind == "random":
            return f"random:seed={self.seed}"
        return "expert"

    @property
    def is_baseline(self) -> bool:
        return self.kind in BASELINES


def parse_policy(text: str, backend: str = "auto") -> PolicySpec:
    """Parse a ``--policy`` argument: ``expert``, ``random``, ``constant[:A,S]``, ``PATH`` or ``LABEL=PATH``."""
    label, _, rest = text.partition("=") if "=" in text else ("", "", text)
    body = rest.strip()
    name, _, arg = body.partition(":")
    if name in BASELINES and not Path(body).exists():
        if name == "constant":
            action = (0.0, 0.0)
            if arg:
                try:
                    action = tuple(float(v) for v in arg.split(","))
                except ValueError:
                    action = ()
                if len(action) != spec.ACTION_DIM or not all(-1.0 <= a <= 1.0 for a in action):
                    raise UserError(f"--policy '{text}': a constant action is 'constant:ACCEL,STEER' with both in [-1, 1]")
            return PolicySpec(label=label or ("constant" if not arg else f"constant({arg})"), kind="constant", action=action)  # type: ignore[arg-type]
        if arg:
            raise UserError(f"--policy '{text}': '{name}' takes no argument")
        return PolicySpec(label=label or name, kind=name)
    path = Path(body).expanduser()
    if not path.exists():
        raise UserError(f"--policy '{text}': no such file or folder (or use one of: {', '.join(BASELINES)})")
    return PolicySpec(label=label or _default_label(path), kind="artifact", path=str(path.resolve()), backend=backend)


def _default_label(path: Path) -> str:
    """A short readable name: the folder or file name, with its parent for generic names."""
    generic = {"actor.pt", "policy.onnx", "policy.engine", "train", "deploy", "export", "latest"}
    if path.name in generic and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def resolve_artifact(path: str | Path) -> Path:
    """The loadable artifact of ``path``: a run folder without a final ``actor.pt`` uses its newest checkpoint."""
    path = Path(path)
    for name in ("actor.pt", "manifest.json"):
        if (path / name).is_dir():
            raise UserError(f"{path / name}: is a folder, expected a file")
    if path.is_dir() and not (path / "actor.pt").is_file() and not (path / "manifest.json").is_file():
        pointer = path / "checkpoints" / "latest"
        if pointer.is_file():
            checkpoint = path / "checkpoints" / pointer.read_text().strip()
            if (checkpoint / "actor.pt").is_file():
                return checkpoint
        raise UserError(f"{path}: no actor.pt, checkpoints/latest or manifest.json in this folder")
    return path


# --------------------------------------------------------------------------------------
# Episode policies
# --------------------------------------------------------------------------------------


class ObsPolicy:
    """A learned policy (anything with ``act(obs)``): stateless across episodes."""

    def __init__(self, policy):
        self.policy = policy

    def start_episode(self, env, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy.act(np.asarray(obs, dtype=np.float32)), dtype=np.float64).reshape(spec.ACTION_DIM)


class ExpertPolicy:
    """The scenario's scripted expert; it reads the simulator state, not the observation."""

    def __init__(self, scenario: Scenario):
        module = EXPERT_MODULES.get(scenario.simulator)
        if module is None:
            raise UserError(f"{scenario.source}: no scripted expert for simulator '{scenario.simulator}'")
        self.expert = importlib.import_module(module).make_expert(scenario.expert, scenario.source)
        self.env = None

    def start_episode(self, env, seed: int) -> None:
        self.env = env
        self.expert.reset(env)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.expert.act(self.env), dtype=np.float64)


class RandomPolicy:
    """Uniform unit actions; episode ``s`` always draws the same sequence."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def start_episode(self, env, seed: int) -> None:
        self.rng = np.random.default_rng([self.seed, int(seed)])

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=spec.ACTION_DIM)


class ConstantPolicy:
    """One fixed unit action every step."""

    def __init__(self, action: tuple[float, float] = (0.0, 0.0)):
        self.action = np.asarray(action, dtype=np.float64)

    def start_episode(self, env, seed: int) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.action.copy()


class LoggedActionsPolicy:
    """Replay only: the logged sdc's own actions, driven open loop through the simulator's action map.

    The actions are recovered from the logged states by the converter's inverse dynamics
    (:func:`drive_drail.pairs.convert.convert`, every track, at the replay's decision rate), so this
    policy's distance to the log (ADE / FDE) measures that inverse and the action map together:
    it is the floor a learned policy's ADE is read against. A step without a recovered action (a
    pair the converter dropped as implausible, the track's last step) holds the previous one.
    """

    def __init__(self, action_hz: float | None = None):
        from drive_drail.sim.scenario_replay import DECISION_HZ

        self.action_hz = DECISION_HZ if action_hz is None else float(action_hz)
        self._actions = np.zeros((1, spec.ACTION_DIM))
        self._step = 0

    def start_scenario(self, path: Path, sd: dict) -> None:
        """Recover the sdc's actions of the scenario ``sd`` (loaded from ``path``); step 0 is the log's first frame."""
        import pandas as pd

        from drive_drail.logs.scenarionet import ScenarioNetReader
        from drive_drail.pairs.convert import ConvertConfig, convert

        log = ScenarioNetReader().read_loaded([(sd, Path(path))], Path(path))
        pairs = convert(log, ConvertConfig(action_hz=self.action_hz, egos="all"))
        sdc = pairs[pairs["track_id"].isin(log.extra["sdc_track_ids"][0])]
        actions = np.full((int(log.tracks["frame"].max()) + 1, spec.ACTION_DIM), np.nan)
        actions[sdc["frame"].to_numpy()] = spec.action_to_unit(sdc[list(spec.ACTION_NAMES)].to_numpy(np.float64))
        self._actions = pd.DataFrame(actions).ffill().fillna(0.0).to_numpy()
        self._step = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self._actions[min(self._step, len(self._actions) - 1)].copy()
        self._step += 1
        return action


def replay_policy(text: str, backend: str = "auto"):
    """A replay ``--policy``: ``log``, ``constant[:A,S]``, ``random`` or an artifact; returns a callable
    ``obs -> unit action`` or a :class:`LoggedActionsPolicy`. Real scenes have no scripted expert."""
    if text.strip() == "log" and not Path("log").exists():
        return LoggedActionsPolicy()
    parsed = parse_policy(text, backend)
    if parsed.kind == "expert":
        raise UserError(f"--policy '{text}': real scenarios have no scripted expert; 'log' drives the logged sdc's own actions")
    if parsed.kind == "artifact":
        from drive_drail.deploy.runtime import load_policy

        return load_policy(resolve_artifact(parsed.path), backend=backend).act
    return RandomPolicy(parsed.seed).act if parsed.kind == "random" else ConstantPolicy(parsed.action).act


def build_policy(policy: PolicySpec, scenario: Scenario) -> EpisodePolicy:
    """Instantiate a :class:`PolicySpec` for one scenario (in the process that runs it)."""
    if policy.kind == "expert":
        return ExpertPolicy(scenario)
    if policy.kind == "random":
        return RandomPolicy(policy.seed)
    if policy.kind == "constant":
        return ConstantPolicy(policy.action)
    if policy.kind == "artifact":
        from drive_drail.deploy.runtime import load_policy

        return ObsPolicy(load_policy(resolve_artifact(policy.path), backend=policy.backend))
    raise ValueError(f"unknown policy kind '{policy.kind}'")

