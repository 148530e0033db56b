"""Declarative driving scenarios: one YAML file per (task, simulator) in ``drive_drail/scenarios/``.

A scenario names the simulator environment and its settings, the scripted expert that
records demonstrations, the control and simulation rates, the episode length, the
seeds (training seeds and held-out evaluation seeds, disjoint), the generalization
splits and the success criteria. Loading is strict: an unknown or misspelled key, a
wrong type or overlapping seed sets raise :class:`ScenarioError`, a one-line message
naming the file and the key (``scenarios/stop.yaml: key 'sucess': unknown key (did you
mean 'success'?)``).

Example (``scenarios/stop.yaml``, abridged)::

    name: stop
    simulator: highway
    env_id: drive-drail-highway/stop-v0
    task: stop
    expert: idm_stop
    policy_frequency_hz: 5
    simulation_frequency_hz: 15
    episode_seconds: 18
    train_seeds: {start: 0, count: 10000}
    eval_seeds: {start: 1000000, count: 100}
    env_config: {lanes_count: 2, vehicles_count: 4, speed_limit_mps: 20}
    splits: {dense: {vehicles_count: 8, vehicles_spacing_m: 18}}
    success: {stopped_before_m: 15, max_final_speed_mps: 0.5, hold_seconds: 2}
    demos: {episodes: 50}

Simulator settings (``env_config`` and split overrides) are checked against the
simulator environment's own defaults by its adapter, with the same kind of message.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from drive_drail.errors import UserError

SIMULATORS = ("highway", "metadrive")
TASKS = ("lane_change", "merge", "stop")
RESERVED_SPLITS = ("train", "eval")
"""Split names every scenario has: ``train`` (train seeds) and ``eval`` (eval seeds), both
with the base ``env_config``. Named ``splits`` use the eval seeds with their overrides."""

SCENARIO_DIR_ENV = "DRIVE_DRAIL_SCENARIO_DIR"
"""Environment variable that points at a folder of scenario files (checked first)."""


class ScenarioError(UserError, ValueError):
    """A user-facing problem with a scenario file: one line naming the file and the key."""

    def __init__(self, path: str | Path, message: str, key: str | None = None):
        self.path, self.key, self.detail = str(path), key, message
        super().__init__(f"{path}: key '{key}': {message}" if key else f"{path}: {message}")


# --------------------------------------------------------------------------------------
# Typed scenario
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuccessCriteria:
    """When an episode counts as a success. Every task also requires no collision and no off-road."""

    min_route_completion: float = 1.0
    """Fraction of the route (``info['route_completion']``) the ego must drive, in [0, 1]."""
    route_length_m: float | None = None
    """lane_change: distance along the road [m] that counts as the whole route."""
    require_merge: bool = False
    """merge: the ego must end on a main-road lane (not the on-ramp)."""
    stopped_before_m: float | None = None
    """stop: the gap from the ego's front to the obstacle's rear must end in (0, this] [m]."""
    max_final_speed_mps: float | None = None
    """stop: the ego counts as stopped below this speed [m/s]."""
    hold_seconds: float | None = None
    """stop: the ego must have stayed stopped for this long when the episode ends [s]."""


@dataclass(frozen=True)
class DemoSettings:
    """Defaults for recording expert demonstrations (``drive-drail record``)."""

    episodes: int = 20
    """Number of expert episodes to record."""
    seed: int = 0
    """Index into ``train_seeds`` of the first episode recorded (demos never use eval seeds)."""


@dataclass(frozen=True)
class TrainingSettings:
    """Training settings measured for this scenario (as rl-baselines3-zoo keeps per-environment
    hyperparameters); a run uses them where neither its flags nor its ``--config`` file set them."""

    bc_coef: float | None = None
    """lambda_BC of the PPO loss (``TrainConfig.bc_coef``); None: the trainer's default, 0."""


@dataclass(frozen=True)
class Scenario:
    """One driving scenario, loaded from YAML by :func:`load_scenario`."""

    name: str
    """Scenario name (the file stem by convention), e.g. ``lane_change``."""
    simulator: str
    """Which simulator adapter runs it: ``highway`` (highway-env) or ``metadrive``."""
    env_id: str
    """Gymnasium id of the simulator environment, e.g. ``highway-fast-v0``."""
    task: str
    """The driving task: ``lane_change``, ``merge`` or ``stop`` (selects success and route logic)."""
    expert: str
    """Name of the scripted expert that records demonstrations (see ``drive_drail.experts``)."""
    policy_frequency_hz: int
    """Rate at which the policy acts [Hz]; actions are held between decisions."""
    simulation_frequency_hz: int
    """Rate of the simulator's integration steps and of recorded logs [Hz]; a multiple of the policy rate."""
    episode_seconds: float
    """Episode time limit [s]; reaching it truncates the episode (not a termination)."""
    train_seeds: tuple[int, ...]
    """Episode seeds for training and demonstrations; YAML: a list or ``{start, count}``."""
    eval_seeds: tuple[int, ...]
    """Held-out episode seeds for evaluation, disjoint from ``train_seeds``."""
    success: SuccessCriteria
    """Success criteria, see :class:`SuccessCriteria`."""
    env_config: dict = field(default_factory=dict)
    """Settings passed to the simulator environment (its own config keys, validated by the adapter)."""
    splits: dict = field(default_factory=dict)
    """Generalization conditions: split name -> ``env_config`` overrides (e.g. dense / sparse traffic)."""
    demos: DemoSettings = field(default_factory=DemoSettings)
    """Default demonstration settings, see :class:`DemoSettings`."""
    training: TrainingSettings = field(default_factory=TrainingSettings)
    """Training settings measured for this scenario, see :class:`TrainingSettings`."""
    description: str = ""
    """Free text shown in reports."""
    source: str = "<memory>"
    """The file the scenario was loaded from (not a YAML key); error messages name it."""

    @property
    def frames_per_action(self) -> int:
        """Simulation steps per policy step."""
        return self.simulation_frequency_hz // self.policy_frequency_hz

    @property
    def max_policy_steps(self) -> int:
        """Policy steps in a full-length episode."""
        return int(round(self.episode_seconds * self.policy_frequency_hz))

    @property
    def split_names(self) -> tuple[str, ...]:
        return RESERVED_SPLITS + tuple(self.splits)

    def seeds_for(self, split: str) -> tuple[int, ...]:
        """Episode seeds of a split: train seeds for ``train``, eval seeds for every other split."""
        self._check_split(split)
        return self.train_seeds if split == "train" else self.eval_seeds

    def seed_order(self, split: str, seed: int) -> list[int]:
        """The order in which an adapter plays a split's seeds on ``reset()`` without a seed:
        train seeds shuffled by ``seed``; other splits' seeds in order from index ``seed``."""
        seeds = self.seeds_for(split)
        if split == "train":
            return [seeds[i] for i in np.random.default_rng(seed).permutation(len(seeds))]
        return [seeds[(seed + i) % len(seeds)] for i in range(len(seeds))]

    def env_config_for(self, split: str) -> dict:
        """The simulator settings of a split: ``env_config`` updated with the split's overrides."""
        self._check_split(split)
        return {**self.env_config, **self.splits.get(split, {})}

    def _check_split(self, split: str) -> None:
        if split not in self.split_names:
            raise ScenarioError(self.source, f"unknown split{did_you_mean(split, self.split_names)} (splits: {', '.join(self.split_names)})", key=split)


# --------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------


def scenario_dir() -> Path:
    """The folder of named scenarios: ``$DRIVE_DRAIL_SCENARIO_DIR``, else the package's own ``drive_drail/scenarios/``
    (package data, so an installed wheel has them too)."""
    env = os.environ.get(SCENARIO_DIR_ENV)
    if env:
        return Path(env)
    return Path(str(importlib.resources.files("drive_drail") / "scenarios"))


def list_scenarios() -> list[str]:
    """Names of the scenario files in :func:`scenario_dir`, sorted."""
    d = scenario_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (``scenarios/NAME.yaml``) or by path; raise :class:`ScenarioError` if invalid."""
    s = str(name_or_path)
    path = Path(s)
    if not (path.suffix in (".yaml", ".yml") or path.is_file() or os.sep in s):
        path = scenario_dir() / f"{s}.yaml"
        if not path.is_file():
            names = list_scenarios()
            raise ScenarioError(path, f"no such scenario '{s}'{did_you_mean(s, names)} (available: {', '.join(names) or 'none'})")
    if not path.is_file():
        raise ScenarioError(path, "no such file")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, f"not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ScenarioError(path, f"invalid YAML{where}: {problem}") from None
    return scenario_from_dict(data, source=str(path))


def scenario_from_dict(data: Any, source: str = "<memory>") -> Scenario:
    """Validate a parsed YAML mapping into a :class:`Scenario`."""
    if not isinstance(data, dict):
        raise ScenarioError(source, f"expected a mapping of keys at the top level, got {type(data).__name__}")
    allowed = [f.name for f in fields(Scenario) if f.name != "source"]
    _check_keys(data, allowed, source, prefix="")
    required = [f.name for f in fields(Scenario) if f.name not in ("env_config", "splits", "demos", "training", "description", "source")]
    for key in required:
        if key not in data:
            raise ScenarioError(source, "missing required key", key=key)

    def get(key: str, check: Callable[[Any, str], Any], default: Any = None) -> Any:
        return check(data[key], key) if key in data else default

    def err(key: str, message: str) -> ScenarioError:
        return ScenarioError(source, message, key=key)

    v = _Validator(err)

    simulator = get("simulator", v.choice(SIMULATORS))
    task = get("task", v.choice(TASKS))
    policy_hz = get("policy_frequency_hz", v.positive_int)
    sim_hz = get("simulation_frequency_hz", v.positive_int)
    if sim_hz % policy_hz:
        raise err("simulation_frequency_hz", f"must be an integer multiple of policy_frequency_hz ({sim_hz} Hz vs {policy_hz} Hz)")
    episode_s = get("episode_seconds", v.positive_float)
    if episode_s * policy_hz < 1:
        raise err("episode_seconds", f"shorter than one policy step ({episode_s} s at {policy_hz} Hz)")

    train = get("train_seeds", v.seeds)
    evals = get("eval_seeds", v.seeds)
    overlap = sorted(set(train) & set(evals))
    if overlap:
        raise err("eval_seeds", f"held-out seeds overlap train_seeds ({len(overlap)} shared, first {overlap[0]})")

    env_config = get("env_config", v.mapping, {})
    splits = get("splits", v.mapping, {})
    for split, overrides in splits.items():
        if split in RESERVED_SPLITS:
            raise err(f"splits.{split}", f"split name is reserved ({', '.join(RESERVED_SPLITS)} always exist)")
        v.mapping(overrides, f"splits.{split}")

    success = _success_from(data.get("success"), task, source, v)
    demos = _demos_from(data.get("demos", {}), train, source, v)
    training = v.mapping(data.get("training", {}), "training")
    _check_keys(training, [f.name for f in fields(TrainingSettings)], source, prefix="training.")
    bc_coef = v.nonnegative_float(training["bc_coef"], "training.bc_coef") if "bc_coef" in training else None
    return Scenario(
        name=get("name", v.nonempty_str),
        simulator=simulator,
        env_id=get("env_id", v.nonempty_str),
        task=task,
        expert=get("expert", v.nonempty_str),
        policy_frequency_hz=policy_hz,
        simulation_frequency_hz=sim_hz,
        episode_seconds=episode_s,
        train_seeds=train,
        eval_seeds=evals,
        success=success,
        env_config=dict(env_config),
        splits={k: dict(o) for k, o in splits.items()},
        demos=demos,
        training=TrainingSettings(bc_coef=bc_coef),
        description=get("description", v.string, ""),
        source=source,
    )


_STOP_FIELDS = ("stopped_before_m", "max_final_speed_mps", "hold_seconds")


def _success_from(data: Any, task: str, source: str, v: "_Validator") -> SuccessCriteria:
    data = v.mapping(data, "success")
    _check_keys(data, [f.name for f in fields(SuccessCriteria)], source, prefix="success.")
    kw: dict[str, Any] = {}
    for key, value in data.items():
        k = f"success.{key}"
        if key == "require_merge":
            kw[key] = v.boolean(value, k)
        elif key == "min_route_completion":
            kw[key] = v.fraction(value, k)
        else:
            kw[key] = v.positive_float(value, k)
    # Task-specific criteria: required where they define the task, refused elsewhere.
    needed = {"stop": _STOP_FIELDS, "lane_change": ("route_length_m",), "merge": ()}[task]
    for key in needed:
        if key not in kw:
            raise v.err(f"success.{key}", f"required for task '{task}'")
    for key in (*_STOP_FIELDS, "route_length_m", "require_merge"):
        owner = "stop" if key in _STOP_FIELDS else ("lane_change" if key == "route_length_m" else "merge")
        if key in kw and task != owner:
            raise v.err(f"success.{key}", f"only applies to task '{owner}' (this scenario's task is '{task}')")
    return SuccessCriteria(**kw)


def _demos_from(data: Any, train: tuple[int, ...], source: str, v: "_Validator") -> DemoSettings:
    data = v.mapping(data, "demos")
    _check_keys(data, [f.name for f in fields(DemoSettings)], source, prefix="demos.")
    episodes = v.positive_int(data["episodes"], "demos.episodes") if "episodes" in data else DemoSettings.episodes
    seed = v.nonnegative_int(data["seed"], "demos.seed") if "seed" in data else DemoSettings.seed
    if seed + episodes > len(train):
        raise v.err("demos.episodes", f"needs {seed + episodes} train seeds from index 0, train_seeds has {len(train)}")
    return DemoSettings(episodes=episodes, seed=seed)


def _check_keys(data: dict, allowed: list[str], source: str, prefix: str) -> None:
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            raise ScenarioError(source, f"unknown key{did_you_mean(str(key), allowed)}", key=f"{prefix}{key}")


def check_simulator_settings(scenario: "Scenario", known: dict, reserved: dict[str, str], what: str, extra: dict | None = None) -> None:
    """Every ``env_config`` and split key a setting of the simulator, and of its default's type.

    ``known``: the simulator environment's own default config; ``reserved``: keys the adapter
    sets itself, with the reason; ``extra``: the adapter's own keys, as ``{key: (default, doc)}``.
    A default of None takes any value; ints and floats stand for each other, never booleans.
    """
    extra = extra or {}
    for where, overrides in [("env_config", scenario.env_config), *((f"splits.{k}", v) for k, v in scenario.splits.items())]:
        for key, value in overrides.items():
            if key in reserved:
                raise ScenarioError(scenario.source, f"reserved: {reserved[key]}", key=f"{where}.{key}")
            if key not in known and key not in extra:
                options = [k for k in [*known, *extra] if k not in reserved]
                raise ScenarioError(scenario.source, f"not a setting of {what}{did_you_mean(key, options)}", key=f"{where}.{key}")
            default = known[key] if key in known else extra[key][0]
            if not _same_kind(value, default):
                raise ScenarioError(scenario.source, f"expected {_kind(default)} (the default is {str(default)[:40]}), "
                                                     f"got {str(value)[:40]!r}", key=f"{where}.{key}")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", tuple: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _same_kind(value: object, default: object) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, (str, dict)):
        return isinstance(value, type(default))
    return True  # an object default (a class, a callable): the simulator checks it


def did_you_mean(word: str, options: Any) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


class _Validator:
    """Type checks that raise ``err(key, message)``; YAML booleans are never numbers."""

    def __init__(self, err: Callable[[str, str], ScenarioError]):
        self.err = err

    def _type(self, value: Any) -> str:
        return f"{type(value).__name__} {value!r}"

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.err(key, f"expected a string, got {self._type(value)}")
        return value

    def nonempty_str(self, value: Any, key: str) -> str:
        if not self.string(value, key).strip():
            raise self.err(key, "must not be empty")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(key, f"expected true or false, got {self._type(value)}")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(key, f"expected an integer, got {self._type(value)}")
        return value

    def positive_int(self, value: Any, key: str) -> int:
        if self.integer(value, key) <= 0:
            raise self.err(key, f"must be > 0, got {value}")
        return value

    def nonnegative_int(self, value: Any, key: str) -> int:
        if self.integer(value, key) < 0:
            raise self.err(key, f"must be >= 0, got {value}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.err(key, f"expected a number, got {self._type(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.err(key, f"must be finite, got {value}")
        return float(value)

    def positive_float(self, value: Any, key: str) -> float:
        if self.number(value, key) <= 0:
            raise self.err(key, f"must be > 0, got {value}")
        return float(value)

    def nonnegative_float(self, value: Any, key: str) -> float:
        if self.number(value, key) < 0:
            raise self.err(key, f"must be >= 0, got {value}")
        return float(value)

    def fraction(self, value: Any, key: str) -> float:
        if not 0.0 <= self.number(value, key) <= 1.0:
            raise self.err(key, f"must be in [0, 1], got {value}")
        return float(value)

    def mapping(self, value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.err(key, f"expected a mapping, got {self._type(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.err(key, f"keys must be strings, got {self._type(k)}")
        return value

    def choice(self, options: tuple[str, ...]) -> Callable[[Any, str], str]:
        def check(value: Any, key: str) -> str:
            if self.string(value, key) not in options:
                raise self.err(key, f"must be one of {', '.join(options)}, got '{value}'{did_you_mean(value, options)}")
            return value

        return check

    def seeds(self, value: Any, key: str) -> tuple[int, ...]:
        """A list of distinct non-negative ints, or ``{start, count}``."""
        if isinstance(value, dict):
            unknown = [k for k in value if k not in ("start", "count")]
            if unknown:
                bad = str(unknown[0])
                raise self.err(f"{key}.{bad}", f"unknown key{did_you_mean(bad, ('start', 'count'))}")
            for k in ("start", "count"):
                if k not in value:
                    raise self.err(f"{key}.{k}", "missing required key")
            start = self.nonnegative_int(value["start"], f"{key}.start")
            count = self.positive_int(value["count"], f"{key}.count")
            return tuple(range(start, start + count))
        if not isinstance(value, list) or not value:
            raise self.err(key, f"expected a non-empty list of seeds or {{start, count}}, got {self._type(value)}")
        seeds = tuple(self.nonnegative_int(s, f"{key}[{i}]") for i, s in enumerate(value))
        if len(set(seeds)) != len(seeds):
            dup = next(s for i, s in enumerate(seeds) if s in seeds[:i])
            raise self.err(key, f"seed {dup} is listed twice")
        return seeds
