"""The training configuration: typed dataclasses, a docstring per field.

:class:`TrainConfig` holds the run (scenario, algorithm, data, budget, machine) and one section per
part of the method: ``ppo`` (:class:`PPOConfig`), ``policy`` (:class:`PolicyConfig`), ``disc``
(:class:`DiscConfig`), ``reward`` (:class:`RewardConfig`, the relabelling) and ``bc`` (:class:`BCConfig`).
A setting is named by its path: ``steps``, ``ppo.epochs``, ``disc.lr``.

Each field is declared once, here: its type (``Literal`` for a choice), its default, its ``train``
flag and help line, and its range check (:func:`flag`, checked in ``__post_init__``). ``cli.py`` builds
the ``train`` flags from these fields; a check's error names the path, and the command line maps it to
the flag (:class:`ConfigError`). Settings files (``--config``, sweeps, a run's ``config.json``) give
sections as mappings (``ppo: {epochs: 5}``) or paths as keys (``ppo.epochs: 5``); the flat names of
configurations saved before the sections (``ppo_epochs``) still read (:data:`FLAT_NAMES`).
"""

from __future__ import annotations

import functools
import math
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Literal, get_args

from drive_drail.errors import UserError

Algo = Literal["drail", "drail-un", "gail", "diffail", "bc"]
ALGOS: tuple[str, ...] = get_args(Algo)
PolicyEncoder = Literal["set", "flat"]
POLICY_ENCODERS: tuple[str, ...] = get_args(PolicyEncoder)
"""How actor and critic read the neighbour slots (TrainConfig.policy_encoder; models/encoders.py)."""
Backend = Literal["adapter", "batched"]
Tracker = Literal["none", "wandb"]
LabelInjection = Literal["film", "input"]
Device = Literal["auto", "cpu", "cuda"]


class ConfigError(UserError):
    """A TrainConfig value out of its range. ``field`` is the field's name; the message starts with it,
    and a command line restates it under its flag (:meth:`under`)."""

    def __init__(self, field_name: str, problem: str):
        self.field, self.problem = field_name, problem
        super().__init__(f"{field_name} {problem}")

    def under(self, name: str) -> UserError:
        """The same error, naming ``name`` (a flag, or ``FILE: key 'x'``) instead of the field."""
        return UserError(f"{name} {self.problem}")


CHECKS = {
    "positive": (lambda v: v > 0 and math.isfinite(v), "must be a positive finite number"),
    "nonnegative": (lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0"),
    "fraction": (lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1]"),
    "discount": (lambda v: 0.0 <= v < 1.0, "must lie in [0, 1)"),
}
"""A field's range check (:func:`flag`'s ``check``): a test of the value, and the error's words."""


def flag(default, help: str, *names: str, negative: str | None = None, once: bool = False, check: str | None = None):
    """A config field with its ``train`` flag: ``names`` (default ``--field-name``) and a help line
    (``{default}`` is replaced by the default). ``negative``: an extra flag that sets a bool field False;
    ``once``: the flag may be given once only; ``check``: a :data:`CHECKS` rule (for a tuple: each item;
    None passes where the default is None)."""
    return field(default=default, metadata={"help": help, "names": names, "negative": negative, "once": once, "check": check})


def idle_cores(sample_s: float = 0.25) -> int:
    """Cores not busy over a ``sample_s`` window (Linux ``/proc/stat``), at least 1; every core elsewhere.

    OpenMP threads wait for each other at every parallel op, so one thread on a core that another
    process holds stalls all of them: a busy core is better left out than shared.
    """
    import time

    cores = os.cpu_count() or 1

    def times() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait (in clock ticks)

    try:
        total0, idle0 = times()
        time.sleep(sample_s)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return cores
    if total1 <= total0:
        return cores
    busy = cores * (1 - (idle1 - idle0) / (total1 - total0))
    return max(1, min(cores, cores - round(busy)))


class _Section:
    """A section of :class:`TrainConfig`: its fields' checks run where it is made, each error naming the path."""

    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_fields(self, self.PREFIX + ".")


@dataclass
class PPOConfig(_Section):
    """PPO (stable-baselines3 rollout buffer, the update in train/ppo.py); METHOD.md's settings of the public implementation."""

    PREFIX: ClassVar[str] = "ppo"

    n_steps: int = flag(256, "rollout steps per worker per iteration (default {default})", check="positive")
    """Environment steps per worker per iteration (rollout length)."""
    batch_size: int = flag(128, "PPO minibatch size (default {default})", "--ppo-batch", check="positive")
    epochs: int = flag(10, "PPO epochs per iteration (default {default})", "--ppo-epochs", check="positive")
    learning_rate: float = flag(1e-4, "PPO learning rate, linearly decayed to 0 (default {default:g})", "--ppo-lr", check="positive")
    """PPO's Adam step size, linearly decayed to 0 over the run. METHOD.md's ~1e-4: Adam's first
    steps move every weight by about this much whatever the gradient, and against the small
    steering std of a BC warm start (0.02) 3e-4 gave a KL of 4-6 in the first update and drove
    the BC policy off a MetaDrive on-ramp (DRAIL merge 0.35 success against 1.00 at 1e-4)."""
    gamma: float = flag(0.99, "discount factor, in [0, 1) (default {default})", check="discount")
    gae_lambda: float = flag(0.95, "GAE lambda, in [0, 1] (default {default})", check="fraction")
    clip_range: float = flag(0.2, "PPO's ratio clip (default {default})", check="positive")
    ent_coef: float = flag(1e-3, "entropy bonus weight (default {default:g})", check="nonnegative")
    vf_coef: float = flag(0.5, "value loss weight (default {default})", check="nonnegative")
    max_grad_norm: float = flag(0.5, "gradient norm clip (default {default})", check="positive")
    bc_coef: float | None = flag(None, "lambda_BC: weight of the demonstrations' log-likelihood in PPO's loss "
                                 "(default: the scenario file's training.bc_coef, else 0; 0: plain PPO)", check="nonnegative")
    """lambda_BC: weight of the demonstrations' negative log-likelihood (std held fixed) added to PPO's loss
    (train/ppo.py); 0 = plain PPO; None = the scenario file's ``training.bc_coef``, else 0. No one value serves
    every task (benchmarks/results/learning_v4/READING.md): stop collapses without it, lane_change is held
    near its weak BC start with it, so each scenario file carries the value measured for it."""
    separate_grad_clip: bool = flag(False, "clip the actor's and the critic's gradient norms each (default: one joint clip, as SB3)")
    """Clip the actor's and the critic's gradient norms to max_grad_norm each (else one joint clip, as SB3)."""


@dataclass
class PolicyConfig(_Section):
    """The actor's and the critic's networks (models/policy.py, models/encoders.py)."""

    PREFIX: ClassVar[str] = "policy"

    hidden: tuple[int, ...] = flag((256, 256), "layer widths of the actor's and the critic's MLPs (default {default})", "--policy-hidden", check="positive")
    encoder: PolicyEncoder = flag("set", "how actor and critic read the neighbour slots: one shared per-slot network, "
                                  "max-pooled (set), or one MLP over the whole vector (flat) (default {default})", "--policy-encoder")
    """How the actor and the critic read the neighbour slots: "set" (a shared per-slot network, max-pooled;
    models/encoders.py) or "flat" (one MLP over the whole vector). The flat MLP failed whenever traffic
    filled slots the demos left empty (stop's dense split, benchmarks/results/learning_v5/READING.md)."""
    set_hidden: tuple[int, ...] = flag((64, 64), "layer widths of the set encoder's per-slot network (default {default})", check="positive")
    init_action_std: tuple[float, float] = flag((0.1, 0.02), "initial policy std per action dim, accel and steer, "
                                                "in the unit range (default {default})", check="positive")
    """Initial std of the Gaussian policy per action dim (accel, steer), in the [-1, 1] unit range."""


@dataclass
class DiscConfig(_Section):
    """The discriminator (models/): its optimiser, network and reward estimate."""

    PREFIX: ClassVar[str] = "disc"

    lr: float = flag(3e-4, "discriminator learning rate (default {default:g})", "--disc-lr", check="positive")
    epochs: int = flag(5, "discriminator passes over each rollout (default {default})", "--disc-epochs", check="positive")
    """Discriminator passes over each rollout per iteration."""
    batch: int = flag(128, "discriminator minibatch, expert and agent each (default {default})", "--disc-batch", check="positive")
    """Expert (and agent) minibatch size."""
    hidden: int = flag(256, "discriminator hidden width (default {default})", "--disc-hidden", check="positive")
    fused: bool = flag(True, "DRAIL: score both labels in one pass sharing t and eps (default on)", negative="--unshared")
    """DRAIL: score both labels in one pass sharing t and eps (False: two passes, own t and eps; --unshared)."""
    label_injection: LabelInjection = flag("film", "DRAIL: the label scales the last hidden layer (film, default: the fused pass "
                                           "runs the trunk once) or joins the network input (input, METHOD.md's public implementation)")
    """DRAIL: "film" (the label scales and shifts the last hidden layer) or "input" (concatenated to x_t, as in
    METHOD.md's public implementation). FiLM learned at least as well in every batched 10^6-step table
    (benchmarks/results/learning_batched/LABEL_INJECTION.md) and scores both labels faster (benchmarks/results/reward_throughput.json)."""
    reward_samples: int = flag(4, "(t, eps) draws averaged per diffusion reward (default {default})", check="positive")
    """(t, eps) draws averaged per pair when a diffusion discriminator scores a reward (Eq. 1's E_t
    estimated by Monte Carlo; one draw is a noisy reward)."""


@dataclass
class RewardConfig(_Section):
    """Relabelling of the discriminator's rewards before PPO (train/relabel.py)."""

    PREFIX: ClassVar[str] = "reward"

    absorbing: bool = flag(True, "failures enter an absorbing state whose reward the discriminator learns (DAC; default on)")
    """Treat failure terminations (crash, off-road) as entering an absorbing state whose reward the discriminator learns (DAC)."""
    norm: bool = flag(True, "divide rewards by the running std of the discounted return (default on)", "--reward-norm")
    """Divide rewards by the running std of the discounted return (CleanRL's NormalizeReward). Without it the
    critic's loss reached 10^4-10^6 (absorbing rewards are paid gamma / (1 - gamma) times), SB3's one gradient-norm
    clip over actor and critic then scaled the policy's step to nothing (approx KL 3e-4, clip fraction 0), and the
    policy stayed at its BC start (benchmarks/results/learning_v2/READING.md)."""
    crash_floor_quantile: float = flag(0.01, "a failure's absorbing reward is at most this quantile of the rollout's "
                                       "step rewards, in [0, 1] (default {default})", check="fraction")
    """A failure's absorbing reward is paid at most the rollout's per-step reward quantile q: ending an
    episode is never cheaper than driving on, even before the discriminator has learned the
    absorbing state (early on its reward sat above the mean step's and the crash rate climbed)."""


@dataclass
class BCConfig(_Section):
    """Behaviour cloning: the BC learner, and the adversarial learners' warm start (train/bc.py)."""

    PREFIX: ClassVar[str] = "bc"

    epochs: int = flag(30, "behaviour-cloning epochs (default {default})", "--bc-epochs", check="positive")
    """Epochs of behaviour cloning (the BC algorithm, or the warm start)."""
    warm_start: bool = flag(True, "initialise the adversarial policy by behaviour cloning (default on)", "--bc-warm-start")
    """Initialise the adversarial policy by BC before PPO."""
    lr: float = flag(1e-3, "behaviour-cloning learning rate (default {default:g})", "--bc-lr", check="positive")


@dataclass
class TrainConfig:
    scenario: str = flag("lane_change", "scenario name or path (required unless --resume)", once=True)
    """Scenario name (scenarios/NAME.yaml) or path."""
    algo: Algo = flag("drail", "algorithm (default {default})", once=True)
    demos: str = flag("", "expert pairs .parquet (from `drive-drail convert`)", once=True)
    """Expert pairs file (.parquet) made by `drive-drail convert`; required to train."""
    task_filter: bool = flag(False, "train only on pairs labelled with the scenario's manoeuvre")
    """Train only on pairs labelled with the scenario's manoeuvre (else all pairs of the file)."""
    steps: int = flag(20_000, "environment steps (default {default}; with --resume: the new total)", check="positive")
    """Environment steps (all workers together)."""
    seed: int = flag(0, "run seed (default {default})")
    """Seeds torch, numpy, the environments and the discriminator's noise."""
    n_envs: int = flag(2, "parallel environments (default {default}; with --sim batched e.g. 256)", check="positive")
    """Parallel environments: subprocess workers for the simulator adapters, or scenes
    stepped together in one array program with ``sim="batched"`` (e.g. 64-4096)."""
    sim: Backend = flag("adapter", "adapter: the scenario's simulator (default); batched: the vectorised highway simulator")
    """adapter: the scenario's simulator (highway-env or MetaDrive); batched: the vectorised
    highway simulator (highway scenarios only; evaluate in highway-env)."""
    out: str = flag("runs/run", "run folder (default runs/SCENARIO-ALGO-sSEED)", "-o", "--output", "--out")
    """Run folder: metrics.csv, checkpoints/, actor.pt, config.json."""

    obs_std_floor: float = flag(0.5, "floor of the per-feature std that standardises observations (default {default})", check="positive")
    """Floor of the per-feature std of the demos' (spec-scaled) observations that standardise the policy's and the
    discriminator's inputs: at most 1 / floor amplification. At 0.1 a feature constant in the demos (a neighbour
    slot always filled, a lead always present) read -10 when it changed, the policy braked to a halt when traffic
    thinned out, and DRAIL's rewards grew heavy tails (std ~10)."""
    lane_std_floor: float | None = flag(None, "std floor of the ego's lane-keeping features (train/demos.py's LANE_FEATURES; "
                                        "default: --obs-std-floor)", check="positive")
    """Floor of the std of the ego's lateral speed, heading to the lane, lane offset and lane index (train/demos.py's
    LANE_FEATURES); None = obs_std_floor. Lane keeping on MetaDrive's solid edge lines needs them unsquashed
    (benchmarks/results/learning_metadrive_v2/READING.md)."""
    torch_threads: int = flag(0, "learner torch threads (default {default}: one per idle core; 1 when runs share the machine)", check="nonnegative")
    """torch threads in the learner process; 0 = one per core that is idle when training starts
    (at least 1). Two threads on a core another process keeps busy run slower than one
    (benchmarks/results/training_threads.json); give 1 when several runs share the machine."""

    device: Device = flag("auto", "torch device of the learner (policy, critic, discriminator): auto (cuda where "
                          "torch sees a GPU, else cpu), cpu or cuda (default {default}); the simulators stay on the CPU")
    """Torch device of the learner's networks and minibatches (:meth:`torch_device`). Rollouts, the batched
    simulator and the saved ``actor.pt`` stay on the CPU."""
    tracker: Tracker = flag("none", "also log the metrics to Weights & Biases: wandb (pip install 'drive-drail[wandb]'; "
                            "offline in RUN/wandb unless WANDB_MODE=online) (default {default})")
    """Experiment tracker beside metrics.csv and TensorBoard (train/metrics.py's WandbTracker)."""
    checkpoint_interval_s: float = flag(30.0, "seconds between checkpoints (default {default:g}; the last iteration "
                                        "is always saved; 0: every iteration)", check="nonnegative")
    """Checkpoint after the first iteration that ends this many seconds after the last checkpoint,
    and after the last iteration; 0 = after every iteration. A killed run loses at most this much."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    bc: BCConfig = field(default_factory=BCConfig)

    def __post_init__(self) -> None:
        """Every value's range, checked where the config is made (flags, ``--config``, a sweep, a saved run);
        a section given as a mapping (``ppo={"epochs": 5}``) is made here."""
        for name, section in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, section(**value))
            elif not isinstance(value, section):
                raise ConfigError(name, f"must be a {section.__name__} or a mapping, got {type(value).__name__}")
        _check_fields(self, "")

    def settings(self) -> dict[str, object]:
        """Every setting as ``{path: value}`` (the flat form :meth:`from_settings` reads)."""
        return {path: self.get(path) for path in setting_fields()}

    def get(self, path: str):
        """The value of a setting by its path (``"steps"``, ``"ppo.epochs"``)."""
        value = self
        for part in path.split("."):
            value = getattr(value, part)
        return value

    @classmethod
    def from_settings(cls, settings: dict[str, object]) -> "TrainConfig":
        """A config from ``{path: value}`` (:func:`checked_settings`); paths not given keep their defaults."""
        top: dict[str, object] = {k: v for k, v in settings.items() if "." not in k}
        for name, section in SECTIONS.items():
            top[name] = section(**{k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith(name + ".")})
        return cls(**top)

    def learner_threads(self) -> int:
        """The torch threads the learner uses: ``torch_threads``, or one per idle core when it is 0."""
        return self.torch_threads or idle_cores()

    def torch_device(self) -> "torch.device":
        """``device`` resolved: ``auto`` is cuda where torch sees a GPU, else cpu.

        Raises:
            UserError: ``cuda`` asked for where torch has no CUDA device.
        """
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            why = "this torch is a CPU build" if torch.version.cuda is None else "torch sees no GPU"
            raise ConfigError("device", f"is cuda, but {why} (torch {torch.__version__}); use auto or cpu")
        return torch.device(self.device)

    def validate(self) -> None:
        """What training needs beyond valid values: an expert pairs file, and the device asked for."""
        if not self.demos:
            raise ConfigError("demos", "is required: an expert pairs file (make one with `drive-drail convert`)")
        self.torch_device()

    def to_dict(self) -> dict:
        """Nested: ``{"steps": ..., "ppo": {"epochs": ...}, ...}`` (a run's ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: dict, saved: bool = False) -> "TrainConfig":
        """A config from settings in any form :func:`setting_paths` reads (sections as mappings, paths, flat
        names). An unknown key is refused, not dropped. ``saved``: ``data`` is a saved run's, and a setting it
        lacks takes the value the run was trained with (:data:`SAVED_BEFORE_DEFAULTS`), not today's default."""
        from drive_drail.errors import ArgumentError

        try:
            settings = {path: value for path, (_, value) in setting_paths(data).items()}
        except KeyError as exc:
            from drive_drail.scenario import did_you_mean

            key = exc.args[0]
            raise ArgumentError(f"unknown training setting {key!r}{did_you_mean(key, sorted(setting_fields()))}") from None
        except ValueError as exc:
            raise ArgumentError(f"training setting {exc.args[0]!r} given twice (also as {exc.args[1]!r})") from None
        if saved:
            for path, old in SAVED_BEFORE_DEFAULTS.items():
                settings.setdefault(path, old)
        return cls.from_settings(settings)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A saved configuration (a checkpoint's or ``config.json``), nested or in the flat names of earlier
        versions: :meth:`from_mapping` with ``saved=True``. An unknown key is refused: the run it describes was
        trained with a setting this version cannot reproduce."""
        return cls.from_mapping(data, saved=True)


SECTIONS: dict[str, type] = {"ppo": PPOConfig, "policy": PolicyConfig, "disc": DiscConfig, "reward": RewardConfig, "bc": BCConfig}
"""TrainConfig's sections: field name -> class."""

FLAT_NAMES: dict[str, str] = {
    "n_steps": "ppo.n_steps", "batch_size": "ppo.batch_size", "ppo_epochs": "ppo.epochs", "learning_rate": "ppo.learning_rate",
    "gamma": "ppo.gamma", "gae_lambda": "ppo.gae_lambda", "clip_range": "ppo.clip_range", "ent_coef": "ppo.ent_coef",
    "vf_coef": "ppo.vf_coef", "max_grad_norm": "ppo.max_grad_norm", "bc_coef": "ppo.bc_coef",
    "separate_grad_clip": "ppo.separate_grad_clip",
    "policy_hidden": "policy.hidden", "policy_encoder": "policy.encoder", "set_hidden": "policy.set_hidden",
    "init_action_std": "policy.init_action_std",
    "disc_lr": "disc.lr", "disc_epochs": "disc.epochs", "disc_batch": "disc.batch", "disc_hidden": "disc.hidden",
    "fused": "disc.fused", "label_injection": "disc.label_injection", "reward_samples": "disc.reward_samples",
    "absorbing": "reward.absorbing", "reward_norm": "reward.norm", "crash_floor_quantile": "reward.crash_floor_quantile",
    "bc_epochs": "bc.epochs", "bc_warm_start": "bc.warm_start", "bc_lr": "bc.lr",
}
"""The flat names of configurations saved before the sections (run folders, sweep and ``--config`` files) -> paths."""

SAVED_BEFORE_DEFAULTS: dict[str, object] = {
    "disc.label_injection": "input", "reward.norm": False, "disc.reward_samples": 1, "reward.crash_floor_quantile": 0.0,
    "obs_std_floor": 0.1, "ppo.bc_coef": 0.0, "policy.encoder": "flat",
}
"""A saved run without these settings predates them: it was trained with these values, not today's defaults."""


def _check_fields(obj, prefix: str) -> None:
    """Type (a ``Literal``'s choices) and range (:data:`CHECKS`) of every field of ``obj`` that is not a section;
    tuples are made tuples (JSON and argparse give lists). Errors name ``prefix + field``."""
    hints = _type_hints(type(obj))
    for f in fields(obj):
        if f.name in SECTIONS and prefix == "":
            continue
        name, hint, value = prefix + f.name, hints[f.name], getattr(obj, f.name)
        if typing.get_origin(hint) is tuple:
            value = tuple(value)
            setattr(obj, f.name, value)
        if typing.get_origin(hint) is Literal and value not in get_args(hint):
            raise ConfigError(name, f"must be one of {', '.join(get_args(hint))}, got {value!r}")
        rule = f.metadata.get("check")
        if rule is None or value is None and f.default is None:  # None: "use the default's source" (bc_coef, lane_std_floor)
            continue
        test, words = CHECKS[rule]
        for item_name, item in ([(f"{name}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, tuple) else [(name, value)]):
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not test(item):
                raise ConfigError(item_name, f"{words}, got {item!r}")


@functools.cache
def _type_hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)  # from __future__ import annotations keeps the types as text


@functools.cache
def setting_fields() -> dict[str, object]:
    """Every setting's path -> its ``dataclasses.Field``: TrainConfig's own fields, then each section's (``ppo.epochs``)."""
    out: dict[str, object] = {f.name: f for f in fields(TrainConfig) if f.name not in SECTIONS}
    for name, section in SECTIONS.items():
        out.update({f"{name}.{f.name}": f for f in fields(section)})
    return out


@functools.cache
def field_types() -> dict[str, object]:
    """Every setting's path -> its resolved type."""
    out = {}
    for path in setting_fields():
        section, _, leaf = path.rpartition(".")
        out[path] = _type_hints(SECTIONS[section] if section else TrainConfig)[leaf]
    return out


@functools.cache
def defaults() -> dict[str, object]:
    """Every setting's path -> its default."""
    return TrainConfig().settings()


def flag_names(f) -> tuple[str, ...]:
    """The ``train`` flags of a config field (``dataclasses.Field``): those :func:`flag` gave, else ``--field-name``."""
    return f.metadata["names"] or (f"--{f.name.replace('_', '-')}",)


def setting_paths(data: dict) -> dict[str, tuple[str, object]]:
    """``data``'s settings as ``{path: (key as written, value)}``: a section as a mapping (``ppo: {epochs: 5}``),
    a path as a key (``ppo.epochs: 5``) or a flat name of earlier versions (:data:`FLAT_NAMES`).

    Raises:
        KeyError: the first key (as written) that names no setting.
        ValueError: ``(key, first key)`` of a setting given twice.
    """
    known = setting_fields()
    out: dict[str, tuple[str, object]] = {}

    def add(path: str, written: str, value: object) -> None:
        if path not in known:
            raise KeyError(written)
        if path in out:
            raise ValueError(written, out[path][0])
        out[path] = (written, value)

    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for leaf, v in value.items():
                add(f"{key}.{leaf}", f"{key}.{leaf}", v)
        else:
            add(FLAT_NAMES.get(key, key), key, value)
    return out


def _field_value(name: str, value, default):
    """``value`` checked against the type of the field's default (a bool is not a number; an int is a float)."""
    if default is None:  # bc_coef: a number, or null for the scenario's value
        return None if value is None else _field_value(name, value, 0.0)
    if isinstance(default, tuple):  # policy_hidden, set_hidden: any number of layer widths; init_action_std: one per action dim
        item = type(default[0])

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and (item is float or float(v).is_integer())

        fixed_length = name == "policy.init_action_std"
        if (not isinstance(value, (list, tuple)) or not value or not all(number(v) for v in value)
                or fixed_length and len(value) != len(default)):
            count = f"{len(default)} " if fixed_length else ""
            raise ValueError(f"a list of {count}{'integers' if item is int else 'numbers'}")
        return tuple(item(v) for v in value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError("true or false")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(default, int) and not float(value).is_integer():
            raise ValueError("an integer" if isinstance(default, int) else "a number")
        return type(default)(value)
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def config_from_file(path: str) -> dict[str, object]:
    """The training settings of a YAML or JSON file (e.g. a run's ``config.json``), checked key by key.

    Returns ``{field: value}`` for the fields the file sets; an unknown key or a wrongly typed
    value is a :class:`UserError` naming the file and the key.
    """
    data = read_yaml(path)
    return checked_settings({} if data is None else data, path)


def read_yaml(path: str) -> object:
    """The data of a YAML or JSON file (JSON is YAML), read with ``safe_load``; a file that is not text
    or not YAML is a one-line :class:`UserError` naming it (and the line)."""
    import yaml

    from drive_drail.errors import UserError

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path}: not a YAML or JSON file{where}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None


def checked_settings(data: object, source: str, where: str = "", exclude: tuple[str, ...] = ()) -> dict[str, object]:
    """``data`` as ``{setting path: value}`` (:func:`setting_paths`), each value checked against its field's
    type; an unknown key (or one of ``exclude``), a setting given twice or a wrong value is a
    :class:`UserError` naming ``source`` and the key as written (prefixed by ``where``, e.g. ``grid.``)."""
    from drive_drail.errors import UserError

    if not isinstance(data, dict):
        what = f"'{where.rstrip('.')}' to be " if where else ""
        raise UserError(f"{source}: expected {what}a mapping of training settings, got {type(data).__name__}")
    known = [path for path in setting_fields() if path not in exclude]
    try:
        paths = setting_paths(data)
    except KeyError as exc:
        raise UserError(f"{source}: unknown key {where}{exc.args[0]!r} (training settings: {', '.join(known)})") from None
    except ValueError as exc:
        raise UserError(f"{source}: key {where}{exc.args[0]!r} sets the same setting as {where}{exc.args[1]!r}") from None
    values: dict[str, object] = {}
    for path, (written, value) in paths.items():
        if path in exclude:
            raise UserError(f"{source}: unknown key {where}{written!r} (training settings: {', '.join(known)})")
        try:
            values[path] = _field_value(path, value, defaults()[path])
        except ValueError as exc:
            raise UserError(f"{source}: key {where}{written!r} must be {exc}, got {value!r}") from None
    return values
