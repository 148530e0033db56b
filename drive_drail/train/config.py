"""The training configuration: one typed dataclass, a docstring per field."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

ALGOS = ("drail", "drail-un", "gail", "diffail", "bc")
POLICY_ENCODERS = ("set", "flat")
"""How actor and critic read the neighbour slots (TrainConfig.policy_encoder; models/encoders.py)."""


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


@dataclass
class TrainConfig:
    scenario: str = "lane_change"
    """Scenario name (scenarios/NAME.yaml) or path."""
    algo: str = "drail"
    """drail | drail-un | gail | diffail | bc."""
    demos: str = ""
    """Expert pairs file (.parquet) made by `drive-drail convert`."""
    task_filter: bool = False
    """Train only on pairs labelled with the scenario's manoeuvre (else all pairs of the file)."""
    steps: int = 20_000
    """Environment steps (all workers together)."""
    seed: int = 0
    """Seeds torch, numpy, the environments and the discriminator's noise."""
    n_envs: int = 2
    """Parallel environments: subprocess workers for the simulator adapters, or scenes
    stepped together in one array program with ``sim="batched"`` (e.g. 64-4096)."""
    sim: str = "adapter"
    """adapter: the scenario's simulator (highway-env or MetaDrive); batched: the vectorised
    highway simulator (highway scenarios only; evaluate in highway-env)."""
    out: str = "runs/run"
    """Run folder: metrics.csv, checkpoints/, actor.pt, config.json."""

    # PPO (stable-baselines3); METHOD.md's settings of the public implementation.
    n_steps: int = 256
    """Environment steps per worker per iteration (rollout length)."""
    batch_size: int = 128
    ppo_epochs: int = 10
    learning_rate: float = 1e-4
    """PPO's Adam step size, linearly decayed to 0 over the run. METHOD.md's ~1e-4: Adam's first
    steps move every weight by about this much whatever the gradient, and against the small
    steering std of a BC warm start (0.02) 3e-4 gave a KL of 4-6 in the first update and drove
    the BC policy off a MetaDrive on-ramp (DRAIL merge 0.35 success against 1.00 at 1e-4)."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 1e-3
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    bc_coef: float | None = None
    """lambda_BC: weight of the demonstrations' negative log-likelihood (std held fixed) added to PPO's loss
    (train/ppo.py); 0 = plain PPO; None = the scenario file's ``training.bc_coef``, else 0. No one value serves
    every task (benchmarks/results/learning_v4/READING.md): stop collapses without it, lane_change is held
    near its weak BC start with it, so each scenario file carries the value measured for it."""
    separate_grad_clip: bool = False
    """Clip the actor's and the critic's gradient norms to max_grad_norm each (else one joint clip, as SB3)."""
    policy_hidden: tuple[int, ...] = (256, 256)
    policy_encoder: str = "set"
    """How the actor and the critic read the neighbour slots: "set" (a shared per-slot network, max-pooled;
    models/encoders.py) or "flat" (one MLP over the whole vector). The flat MLP failed whenever traffic
    filled slots the demos left empty (stop's dense split, benchmarks/results/learning_v5/READING.md)."""
    set_hidden: tuple[int, ...] = (64, 64)
    """Layer widths of the set encoder's per-slot network."""
    init_action_std: tuple[float, float] = (0.1, 0.02)
    """Initial std of the Gaussian policy per action dim (accel, steer), in the [-1, 1] unit range."""

    # Discriminator
    disc_lr: float = 3e-4
    disc_epochs: int = 5
    """Discriminator passes over each rollout per iteration."""
    disc_batch: int = 128
    """Expert (and agent) minibatch size."""
    disc_hidden: int = 256
    fused: bool = True
    """DRAIL: score both labels in one pass sharing t and eps (False: two passes, own t and eps)."""
    label_injection: str = "film"
    """DRAIL: "film" (the label scales and shifts the last hidden layer) or "input" (concatenated to x_t, as in
    METHOD.md's public implementation). FiLM learned at least as well in every batched 10^6-step table
    (benchmarks/results/learning_batched/LABEL_INJECTION.md) and scores both labels ~1.7-1.9x faster."""
    absorbing: bool = True
    """Treat failure terminations (crash, off-road) as entering an absorbing state whose reward the discriminator learns (DAC)."""
    reward_norm: bool = True
    """Divide rewards by the running std of the discounted return (CleanRL's NormalizeReward). Without it the
    critic's loss reached 10^4-10^6 (absorbing rewards are paid gamma / (1 - gamma) times), SB3's one gradient-norm
    clip over actor and critic then scaled the policy's step to nothing (approx KL 3e-4, clip fraction 0), and the
    policy stayed at its BC start (benchmarks/results/learning_v2/READING.md)."""
    reward_samples: int = 4
    """(t, eps) draws averaged per pair when a diffusion discriminator scores a reward (Eq. 1's E_t
    estimated by Monte Carlo; one draw is a noisy reward)."""
    crash_floor_quantile: float = 0.01
    """A failure's absorbing reward is paid at most the rollout's per-step reward quantile q: ending an
    episode is never cheaper than driving on, even before the discriminator has learned the
    absorbing state (early on its reward sat above the mean step's and the crash rate climbed)."""

    obs_std_floor: float = 0.5
    """Floor of the per-feature std of the demos' (spec-scaled) observations that standardise the policy's and the
    discriminator's inputs: at most 1 / floor amplification. At 0.1 a feature constant in the demos (a neighbour
    slot always filled, a lead always present) read -10 when it changed, the policy braked to a halt when traffic
    thinned out, and DRAIL's rewards grew heavy tails (std ~10)."""
    # BC
    bc_epochs: int = 30
    """Epochs of behaviour cloning (the BC algorithm, or the warm start)."""
    bc_warm_start: bool = True
    """Initialise the adversarial policy by BC before PPO."""
    bc_lr: float = 1e-3

    torch_threads: int = 0
    """torch threads in the learner process; 0 = one per core that is idle when training starts
    (at least 1). Two threads on a core another process keeps busy run slower than one
    (benchmarks/results/training_threads.json); give 1 when several runs share the machine."""

    checkpoint_interval_s: float = 30.0
    """Checkpoint after the first iteration that ends this many seconds after the last checkpoint,
    and after the last iteration; 0 = after every iteration. A killed run loses at most this much."""

    def learner_threads(self) -> int:
        """The torch threads the learner uses: ``torch_threads``, or one per idle core when it is 0."""
        return self.torch_threads or idle_cores()

    def validate(self) -> None:
        from drive_drail.errors import UserError

        if self.algo not in ALGOS:
            raise UserError(f"--algo: unknown algorithm {self.algo!r} (choose from {', '.join(ALGOS)})")
        if not self.demos:
            raise UserError("--demos: an expert pairs file is required (make one with `drive-drail convert`)")
        if self.sim not in ("adapter", "batched"):
            raise UserError(f"--sim: unknown simulator backend {self.sim!r} (adapter or batched)")
        if self.policy_encoder not in POLICY_ENCODERS:
            raise UserError(f"--policy-encoder: unknown value {self.policy_encoder!r} (choose from {', '.join(POLICY_ENCODERS)})")
        if self.label_injection not in ("input", "film"):
            raise UserError(f"--label-injection: unknown value {self.label_injection!r} (input or film)")
        if self.torch_threads < 0:
            raise UserError("--torch-threads must be 0 (one per core) or positive")
        positive = {"--steps": self.steps, "--n-envs": self.n_envs, "--n-steps": self.n_steps,
                    "--ppo-batch": self.batch_size, "--ppo-epochs": self.ppo_epochs, "--ppo-lr": self.learning_rate,
                    "--disc-epochs": self.disc_epochs, "--disc-batch": self.disc_batch, "--bc-epochs": self.bc_epochs,
                    "--reward-samples": self.reward_samples,  # fields without a flag go by their name (--config)
                    "disc_lr": self.disc_lr, "bc_lr": self.bc_lr, "clip_range": self.clip_range,
                    "max_grad_norm": self.max_grad_norm, "disc_hidden": self.disc_hidden, "obs_std_floor": self.obs_std_floor}
        positive.update({f"policy_hidden[{i}]": w for i, w in enumerate(self.policy_hidden)})
        positive.update({f"set_hidden[{i}]": w for i, w in enumerate(self.set_hidden)})
        positive.update({f"init_action_std[{i}]": v for i, v in enumerate(self.init_action_std)})
        for flag, value in positive.items():
            if not (isinstance(value, (int, float)) and value > 0 and value == value and value != float("inf")):
                raise UserError(f"{flag} must be a positive finite number, got {value!r}")
        for name, value in (("gamma", self.gamma), ("gae_lambda", self.gae_lambda)):
            if not 0.0 <= value <= 1.0 or name == "gamma" and value == 1.0:
                raise UserError(f"{name} must lie in [0, 1{')' if name == 'gamma' else ']'}, got {value!r}")
        for name, value in (("ent_coef", self.ent_coef), ("vf_coef", self.vf_coef),
                            ("--bc-coef", 0.0 if self.bc_coef is None else self.bc_coef)):
            if not (value >= 0 and value != float("inf")):
                raise UserError(f"{name} must be >= 0, got {value!r}")
        if not 0.0 <= self.crash_floor_quantile <= 1.0:
            raise UserError(f"crash_floor_quantile must lie in [0, 1], got {self.crash_floor_quantile!r}")
        if self.checkpoint_interval_s < 0 or self.checkpoint_interval_s != self.checkpoint_interval_s:
            raise UserError(f"--checkpoint-interval-s must be >= 0, got {self.checkpoint_interval_s!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A saved configuration (a checkpoint's or ``config.json``). An unknown key is refused, not dropped:
        the run it describes was trained with a setting this version cannot reproduce."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            from drive_drail.errors import ArgumentError
            from drive_drail.scenario import did_you_mean

            raise ArgumentError(f"unknown training setting {', '.join(map(repr, unknown))}{did_you_mean(unknown[0], sorted(known))}")
        kwargs = dict(data)
        # a run saved before a field existed was trained with that field's old behaviour, not today's default
        kwargs.setdefault("label_injection", "input")
        kwargs.setdefault("reward_norm", False)
        kwargs.setdefault("reward_samples", 1)
        kwargs.setdefault("crash_floor_quantile", 0.0)
        kwargs.setdefault("obs_std_floor", 0.1)
        kwargs.setdefault("bc_coef", 0.0)
        kwargs.setdefault("policy_encoder", "flat")
        for key in ("policy_hidden", "set_hidden", "init_action_std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


def _field_value(name: str, value, default):
    """``value`` checked against the type of the field's default (a bool is not a number; an int is a float)."""
    if default is None:  # bc_coef: a number, or null for the scenario's value
        return None if value is None else _field_value(name, value, 0.0)
    if isinstance(default, tuple):  # policy_hidden, set_hidden: any number of layer widths; init_action_std: one per action dim
        item = type(default[0])

        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and (item is float or float(v).is_integer())

        fixed_length = name == "init_action_std"
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
    """``data`` as ``{TrainConfig field: value}``, each value checked against its field's type; an
    unknown key (or one of ``exclude``) or a wrong value is a :class:`UserError` naming ``source``
    and the key (prefixed by ``where``, e.g. ``grid.``)."""
    from drive_drail.errors import UserError

    if not isinstance(data, dict):
        what = f"'{where.rstrip('.')}' to be " if where else ""
        raise UserError(f"{source}: expected {what}a mapping of TrainConfig fields, got {type(data).__name__}")
    defaults = TrainConfig()
    known = {f.name for f in fields(TrainConfig)} - set(exclude)
    values: dict[str, object] = {}
    for key, value in data.items():
        if key not in known:
            raise UserError(f"{source}: unknown key {where}{key!r} (TrainConfig fields: {', '.join(sorted(known))})")
        try:
            values[key] = _field_value(key, value, getattr(defaults, key))
        except ValueError as exc:
            raise UserError(f"{source}: key {where}{key!r} must be {exc}, got {value!r}") from None
    return values
