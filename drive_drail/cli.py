"""``drive-drail``: thin subcommands over the pipeline stages.

    record  -> convert -> train -> evaluate -> report -> export

Each subcommand parses its flags and calls one function of its stage. User errors
(bad files, keys, flags) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from pathlib import Path

from drive_drail.errors import UserError

EXIT_USER_ERROR = 2


def _cmd_convert(args: argparse.Namespace) -> None:
    from drive_drail.process import reuse_freed_memory
    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.pairs.storage import summary

    _output_is_not_input(args.output, args.input, "the input log")
    _output_folder(args.output, folder=False)
    if not (args.action_hz > 0 and args.action_hz != float("inf")):
        raise UserError(f"--action-hz must be a positive finite rate in Hz, got {args.action_hz}")
    if args.smooth_s is not None and not (args.smooth_s >= 0 and args.smooth_s != float("inf")):
        raise UserError(f"--smooth-s must be >= 0 seconds, got {args.smooth_s}")
    config = ConvertConfig(action_hz=args.action_hz, smooth_s=args.smooth_s, egos=args.egos)
    reuse_freed_memory()  # the conversion makes and drops the same large temporaries: fault each page in once
    pairs, meta = convert_file(args.input, args.output, args.format, config, progress=not args.quiet)
    print(summary(pairs, meta))
    print(f"wrote {args.output}")


def _output_is_not_input(output: str, source: str, what: str) -> None:
    """Refuse an output that would overwrite ``source`` or a file inside it (``source`` a file or folder)."""
    if not os.path.exists(output) or not os.path.exists(source):
        return
    out, src = Path(output).resolve(), Path(source).resolve()
    if out == src or (src.is_dir() and src in out.parents):
        raise UserError(f"{output}: the output would overwrite {what}; choose another -o")


def _cmd_summary(args: argparse.Namespace) -> None:
    from drive_drail.pairs.storage import read_pairs, summary

    pairs, meta = read_pairs(args.pairs)
    print(summary(pairs, {**meta, "output": args.pairs}))


def _cmd_episodes(args: argparse.Namespace) -> None:
    from drive_drail.pairs.episodes import episodes, write_minari, write_transitions
    from drive_drail.pairs.storage import read_pairs

    if (args.output is None) == (args.minari is None):
        raise UserError("give -o FILE.parquet (transitions) or --minari DATASET_ID, one of the two")
    if args.output is not None:
        _output_is_not_input(args.output, args.pairs, "the pairs file")
        _output_folder(args.output, folder=False)
    pairs, meta = read_pairs(args.pairs)
    eps = episodes(pairs, meta, args.pairs)
    n_transitions = sum(len(e.actions) for e in eps)
    if args.output is not None:
        write_transitions(eps, args.output)
        print(f"wrote {args.output}: {len(eps)} episodes, {n_transitions} transitions")
    else:
        dataset = write_minari(eps, args.minari, meta, env_id=args.env, root=args.minari_root, author=args.author,
                               author_email=args.author_email)
        print(f"wrote Minari dataset {args.minari} ({dataset.total_episodes} episodes, {dataset.total_steps} steps)")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from drive_drail.train.sweep import run_sweep

    if args.cpus is not None and args.cpus < 1:
        raise UserError(f"--cpus must be at least 1, got {args.cpus}")
    table = run_sweep(args.sweep, address=args.ray, cpus=args.cpus, progress=not args.quiet)
    cols = [c for c in ("trial", "status", "wall_s", "global_step", "charts/episode_success") if c in table.columns]
    print(table[cols].to_string(index=False))
    failed = table[table["status"] == "failed"]
    for _, row in failed.iterrows():
        print(f"failed: {row['trial']}: {row.get('error', '')}", file=sys.stderr)
    if len(failed):
        raise UserError(f"{len(failed)} of {len(table)} trials failed; run the sweep again to retry them from their checkpoints")


def _cmd_record(args: argparse.Namespace) -> None:
    from drive_drail.record import record_episodes
    from drive_drail.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    path = record_episodes(scenario, n_episodes=args.episodes, seed=args.seed, out_path=args.output, progress=not args.quiet)
    print(f"wrote {path}")


def _train_settings(args: argparse.Namespace) -> dict[str, object]:
    """The settings (``{path: value}``, e.g. ``ppo.epochs``) the command line sets: ``--config FILE`` first, then
    each flag given (flags win). Each flag's dest is its setting's path (:func:`_add_config_flags`)."""
    from drive_drail.train.config import config_from_file, setting_fields

    settings = config_from_file(args.config) if getattr(args, "config", None) else {}
    settings.update({path: tuple(v) if isinstance(v := getattr(args, path), list) else v
                     for path in setting_fields() if hasattr(args, path)})
    return settings


RESUME_MAY_CHANGE = ("steps", "out", "torch_threads", "checkpoint_interval_s", "device")
"""Settings a ``--resume`` may set anew; any other flag given must match the saved run."""


def _config_flag_names(args: argparse.Namespace, settings: dict[str, object]) -> dict[str, str]:
    """Setting path -> how an error names it: the ``--config`` file's key where only the file set it,
    else its flag."""
    from drive_drail.train.config import flag_names, read_yaml, setting_fields, setting_paths

    from_file = getattr(args, "config", None)
    written = {path: key for path, (key, _) in setting_paths(read_yaml(from_file) or {}).items()} if from_file else {}
    return {path: f"{from_file}: key '{written[path]}'" if path in written and not hasattr(args, path)
            else flag_names(f)[-1] for path, f in setting_fields().items()}


def _cmd_train(args: argparse.Namespace) -> None:
    from drive_drail.train.adversarial import TrainingDiverged, train
    from drive_drail.train.config import ConfigError, TrainConfig

    resume = getattr(args, "resume", False)
    settings = _train_settings(args)
    if resume:
        out = settings.get("out")
        if not out:
            raise UserError("--resume needs the run folder: --out RUN (or -o RUN)")
        if getattr(args, "config", None):
            raise UserError("--config cannot be combined with --resume: a resume keeps the run's settings (give --steps for a new total)")
        from drive_drail.train import checkpoint

        saved = checkpoint.load_config(out)
        if saved is None:
            raise UserError(f"{out}: nothing to resume (no checkpoint found)")
        names = _config_flag_names(args, settings)
        for path, value in settings.items():  # the new total of steps, the folder, the machine's share and device may change
            if path not in RESUME_MAY_CHANGE and value != saved.get(path):
                shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
                raise UserError(f"{names[path]} {shown} contradicts the run in {out} ({saved.get(path)}); "
                                "a resume keeps the run's settings")
        config = saved
    else:
        if not settings.get("scenario"):
            raise UserError("--scenario is required (a resumed run takes it from its folder)")
        settings.setdefault("out", f"runs/{settings['scenario']}-{settings.get('algo', 'drail')}-s{settings.get('seed', 0)}")
        try:
            config = TrainConfig.from_settings(settings)
            config.validate()
        except ConfigError as exc:
            raise exc.under(_config_flag_names(args, settings).get(exc.field.split("[")[0], exc.field)) from None
    try:
        run_dir = train(config, resume=resume, progress=not getattr(args, "quiet", False), steps=settings.get("steps") if resume else None)
    except TrainingDiverged as exc:
        raise UserError(f"training diverged: {exc}; the last good checkpoint is in {config.out}/checkpoints") from None
    print(f"run folder {run_dir}: actor.pt, metrics.csv, checkpoints/")


def _output_folder(path: str, flag: str = "-o", folder: bool = True) -> None:
    """Refuse an output that cannot be written before any work starts: a file where a folder is
    expected (``folder``) or the reverse, a read-only parent."""
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, expected a folder")
    if not folder and os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a folder, expected a file")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent if not os.path.exists(path) else path, os.W_OK):
        raise UserError(f"{flag} {path}: cannot write there (permission denied)")


def _cmd_export(args: argparse.Namespace) -> None:
    import numpy as np

    from drive_drail.deploy.export import export_policy, summary_lines

    _output_folder(args.output)
    parity = None
    if args.parity_obs:
        try:
            parity = np.load(args.parity_obs, allow_pickle=False)
        except (ValueError, EOFError, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise
            raise UserError(f"{args.parity_obs}: not a numpy .npy array of observations ({type(exc).__name__})") from None
    manifest = export_policy(args.checkpoint, args.output, precision=args.precision, batch=args.batch, parity_obs=parity,
                             progress=not args.quiet)
    print("\n".join(summary_lines(manifest, args.output)))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from drive_drail.evaluate.runner import evaluate, write_results

    _output_folder(args.output)
    if args.workers < 1 or args.episodes < 1:
        raise UserError(f"--workers and --episodes must be at least 1, got {args.workers} and {args.episodes}")
    table = evaluate(
        args.policy,
        args.scenario,
        episodes=args.episodes,
        split=args.split or "heldout",
        workers=args.workers,
        backend="ray" if args.ray else "process",
        ray_address=args.ray,
        progress=not args.quiet,
    )
    write_results(table, args.output)
    cols = [c for c in ("success", "collision", "route_completion", "mean_speed_mps") if c in table]
    print(table.groupby(["policy", "scenario", "split"])[cols].mean().round(3).to_string())
    print(f"wrote {args.output}/results.parquet and results.csv ({len(table)} episodes)")


def _cmd_replay(args: argparse.Namespace) -> None:
    from drive_drail.atomic import atomic_path
    from drive_drail.evaluate.policies import replay_policy
    from drive_drail.sim.scenario_replay import metrics_table, replay_evaluate

    _output_is_not_input(args.output, args.folder, "the scenarios it replays")
    _output_folder(args.output, folder=False)
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps must be a positive number of policy steps, got {args.max_steps}")
    policy = replay_policy(args.policy)
    table = metrics_table(replay_evaluate(policy, args.folder, max_steps=args.max_steps, progress=not args.quiet))
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_string(index=False, max_cols=12))
    print(f"wrote {args.output}")


def _cmd_report(args: argparse.Namespace) -> None:
    from drive_drail.evaluate.report import ReportConfig, write_report

    _output_folder(args.output)
    if args.gallery is not None and args.gallery < 0:
        raise UserError(f"--gallery {args.gallery}: must be 0 (no gallery) or more")
    config = ReportConfig(curve_x=args.curve_x, **({} if args.gallery is None else {"gallery_max": args.gallery}))
    print(write_report(args.results, args.output, training_logs=args.training_logs, config=config,
                       progress=not args.quiet))


def _cmd_scenarios(args: argparse.Namespace) -> None:
    from drive_drail.scenario import list_scenarios, load_scenario

    for name in list_scenarios():
        s = load_scenario(name)
        print(f"{s.name:<24} {s.simulator:<10} {s.task:<12} {s.env_id}")


def _spec_version() -> str:
    from drive_drail.spec import SPEC_VERSION

    return SPEC_VERSION


def build_parser() -> argparse.ArgumentParser:
    from drive_drail.pairs.convert import EGO_CHOICES

    parser = argparse.ArgumentParser(
        prog="drive-drail",
        description="Driving logs -> expert pairs -> DRAIL imitation learning -> closed-loop evaluation -> deploy.",
    )
    from drive_drail import __version__

    parser.add_argument("--version", action="version", version=f"drive-drail {__version__} (spec {_spec_version()})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="convert a driving log into a Parquet dataset of expert (obs, action) pairs",
                       description="Convert a driving log (highD, NGSIM, ScenarioNet or a drive-drail sim log) into expert pairs.")
    p.add_argument("input", help="log file or folder (highD XX_tracks.csv, NGSIM csv, ScenarioNet .pkl/folder, sim log .parquet)")
    p.add_argument("-o", "--output", required=True, help="output pairs file (.parquet)")
    p.add_argument("--format", default="auto", help="auto (default), highd, ngsim, scenarionet or simlog")
    p.add_argument("--action-hz", type=float, default=5.0, help="action rate [Hz]; the log's frame rate must be a multiple (default 5)")
    p.add_argument("--smooth-s", type=float, default=None, help="position smoothing width [s] for logs without headings")
    p.add_argument("--egos", choices=list(EGO_CHOICES), default="auto", metavar="{" + ",".join(EGO_CHOICES) + "}",
                   help="tracks that become expert egos: " + "; ".join(f"{k}: {v}" for k, v in EGO_CHOICES.items()) + " (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("summary", help="print the summary of a pairs dataset", description="Print a pairs dataset's summary.")
    p.add_argument("pairs", help="pairs .parquet file")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("episodes", help="write a pairs dataset as episodes: transitions Parquet or a Minari dataset",
                       description="Consecutive pairs of each expert track as episodes (obs, action, next_obs, "
                                   "terminal, truncated): a transitions Parquet file (-o) or a Minari dataset (--minari).")
    p.add_argument("pairs", help="pairs .parquet (from `drive-drail convert`)")
    p.add_argument("-o", "--output", help="transitions .parquet, one row per transition")
    p.add_argument("--minari", metavar="DATASET_ID", help="create this Minari dataset, e.g. drive-drail/lane_change/expert-v0")
    p.add_argument("--minari-root", help="Minari datasets folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--env", help="gymnasium id stored as the dataset's eval_env, e.g. drive-drail/lane_change-v0")
    p.add_argument("--author", help="Minari: the dataset's author")
    p.add_argument("--author-email", help="Minari: the author's contact")
    p.set_defaults(func=_cmd_episodes)

    p = sub.add_parser("sweep", help="train a grid of runs (scenario x algorithm x seed x settings) on Ray",
                       description="Train every trial of a sweep file on Ray (a local instance or a cluster), one CPU each; "
                                   "finished trials are reused and killed ones resume from their checkpoints. "
                                   "Writes OUT/sweep.csv, one row per trial.")
    p.add_argument("sweep", help="sweep file (YAML or JSON: out, base, cases, grid; see drive_drail/train/sweep.py)")
    p.add_argument("--ray", default="local", help="Ray address: 'local' (default) for an instance on this machine, 'auto' or ray://host:port")
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance: trials run at once (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("record", help="record a scripted expert's episodes as a drive-drail log",
                       description="Run a scenario's scripted expert and log every vehicle at every simulation step.")
    p.add_argument("--scenario", required=True, action=_Once, help="scenario name (scenarios/NAME.yaml) or path")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("-o", "--output", required=True, help="output log (.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("train", help="train a policy by DRAIL or a baseline (GAIL, DiffAIL, DRAIL-UN, BC)",
                       description="Adversarial imitation (PPO + discriminator) or behaviour cloning on expert pairs. "
                                   "Settings: TrainConfig's defaults, then --config FILE, then the flags given; "
                                   "every setting has a flag.",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("--config", help="YAML or JSON file of training settings, sections as mappings (ppo: {epochs: 5}) "
                                    "or paths as keys (ppo.epochs: 5), e.g. a run's config.json")
    _add_config_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="run policies closed loop and write a tidy results table",
                       description="Closed-loop evaluation of policies (trained, exported, expert, random, constant) on scenarios.")
    p.add_argument("--policy", action="append", required=True,
                   help="run folder, actor.pt, ONNX export folder, LABEL=PATH, or expert | random | constant[:ACCEL,STEER]; repeatable")
    p.add_argument("--scenario", action="append", required=True, help="scenario name or path, or 'all'; repeatable")
    p.add_argument("--episodes", type=int, default=10, help="episodes per policy, scenario and split (default 10)")
    p.add_argument("--split", action="append", default=None,
                   help="train, heldout (default), a generalization split, or all; repeatable")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel episode workers (default: all cores)")
    p.add_argument("--ray", help="Ray address, or 'local' to start a local Ray instance")
    p.add_argument("-o", "--output", required=True, help="results folder (appended to)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("replay", help="drive a policy as the logged ego of real ScenarioNet scenarios (MetaDrive)",
                       description="Closed-loop replay: the policy drives the sdc while every other agent replays the log.")
    p.add_argument("folder", help="ScenarioNet folder (dataset_summary.pkl, dataset_mapping.pkl, scenario .pkl files)")
    p.add_argument("--policy", required=True,
                   help="run folder, actor.pt or ONNX export folder; or a baseline: 'log' (the logged sdc's own "
                        "actions, recovered by the converter: the fidelity row), 'constant[:ACCEL,STEER]', 'random'")
    p.add_argument("--max-steps", type=int, default=None, help="policy steps per scenario (default: the log's length)")
    p.add_argument("-o", "--output", required=True, help="per-scenario metrics .csv")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("report", help="write an HTML + Markdown evaluation report",
                       description="Self-contained HTML report (and a Markdown twin) from evaluation results.")
    p.add_argument("results", nargs="+", help="results folders or files")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--training-logs", nargs="*", default=None,
                   help="run folders (or their metrics.csv) whose curves are drawn, each as PATH or LABEL=PATH")
    p.add_argument("--gallery", type=int, default=None, metavar="N",  # default: ReportConfig's (not imported here: slow)
                   help="failed episodes replayed per scenario for the failure gallery, one per policy and failure type "
                        "(default 6; 0: none)")
    p.add_argument("--curve-x", choices=["step", "wall"], default="step",
                   help="learning curves against environment steps or training seconds (default: step)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="export a trained policy to ONNX (and a TensorRT engine where possible)",
                       description="Write policy.onnx + manifest.json (+ a TensorRT engine when TensorRT and a GPU are present). "
                                   "With $DRIVE_DRAIL_SIGNING_KEY set, also manifest.sig (HMAC-SHA256 of manifest.json); "
                                   "loaders with the key set refuse exports whose signature is missing or wrong.")
    p.add_argument("checkpoint", help="run folder, checkpoint folder or actor.pt")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="graph precision (default fp32)")
    p.add_argument("--batch", default="1", help="batch size or MIN:OPT:MAX range for the engine profile (default 1)")
    p.add_argument("--parity-obs", help="observations .npy [N, obs_dim] for the torch/onnxruntime parity check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("scenarios", help="list the available scenarios", description="List the scenario files (drive_drail/scenarios/, or $DRIVE_DRAIL_SCENARIO_DIR).")
    p.set_defaults(func=_cmd_scenarios)
    return parser


def _one_line_warnings() -> None:
    """drive-drail's own warnings print as one line; every other warning keeps Python's format."""
    import warnings

    from drive_drail.errors import DriveDrailWarning

    plain = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, DriveDrailWarning):
            return f"drive-drail: warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


MAX_MESSAGE_CHARS = 600
"""An error line is cut to this many characters: a crafted input must not print megabytes."""


def _error(command: str, message: object) -> None:
    """``drive-drail CMD: error: MESSAGE`` on stderr, one printable line (control characters escaped)."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(message))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + f"... ({len(text) - MAX_MESSAGE_CHARS} more characters)"
    print(f"drive-drail {command}: error: {text}", file=sys.stderr)


class _Once(argparse.Action):
    """A single-valued option that refuses to be given twice (argparse would keep the last silently)."""

    def __call__(self, parser, namespace, values, option_string=None):
        previous = getattr(namespace, self.dest, None)
        if previous is not None and previous != self.default:
            parser.error(f"{option_string} given twice ({previous!r}, then {values!r}); this command takes one"
                         + ("; drive-drail sweep trains several" if self.dest in ("scenario", "algo") else ""))
        setattr(namespace, self.dest, values)


SECTION_TITLES = {"": "run", "ppo": "PPO", "policy": "policy networks", "disc": "discriminator",
                  "reward": "reward relabelling", "bc": "behaviour cloning"}
"""``train --help`` lists the flags in one group per TrainConfig section."""


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per training setting, made from its field (drive_drail/train/config.py's ``flag``): its
    names, help line and type; a ``Literal`` gives the choices, a bool ``--x/--no-x``, a tuple a list.
    The dest is the setting's path (``ppo.epochs``), and a flag not given sets nothing (``--config`` or
    the default stands)."""
    from drive_drail.train.config import field_types, flag_names, setting_fields

    groups = {name: parser.add_argument_group(f"{title} settings" + (f" (TrainConfig.{name})" if name else ""))
              for name, title in SECTION_TITLES.items()}
    for path, f in setting_fields().items():
        meta, hint = f.metadata, field_types()[path]
        group = groups[path.rpartition(".")[0]]
        names = flag_names(f)
        default = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        kwargs: dict[str, object] = {"dest": path, "help": meta["help"].format(default=default)}
        if meta["once"]:
            kwargs["action"] = _Once
        if typing.get_origin(hint) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            item, *rest = typing.get_args(hint)
            kwargs.update(type=item, nargs="+" if rest == [Ellipsis] else len(rest) + 1, metavar=item.__name__.upper())
        else:  # int, float, str, float | None
            kwargs.update(type=next(t for t in (int, float, str) if hint is t or t in typing.get_args(hint)),
                          metavar=names[-1].lstrip("-").upper().replace("-", "_"))
        group.add_argument(*names, **kwargs)
        if meta["negative"]:
            group.add_argument(meta["negative"], dest=path, action="store_false", help=f"the same as --no-{names[-1][2:]}")


def main(argv: list[str] | None = None) -> int:
    _one_line_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        _error(args.command, exc)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"drive-drail {args.command}: interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as exc:
        _error(args.command, f"{exc.filename or exc}: no such file")
        return EXIT_USER_ERROR
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        reason = {PermissionError: "permission denied", IsADirectoryError: "is a folder, expected a file",
                  NotADirectoryError: "a path component is a file, expected a folder",
                  FileExistsError: "already exists"}[type(exc)]
        _error(args.command, f"{exc.filename or exc}: {reason}")
        return EXIT_USER_ERROR
    except ModuleNotFoundError as exc:  # an optional dependency (MetaDrive, Ray) that is not installed
        _error(args.command, f"needs the Python package '{exc.name}', which is not installed (see the README's install section)")
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
