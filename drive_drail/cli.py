"""``drive-drail``: thin subcommands over the pipeline stages.

    record  -> convert -> train -> evaluate -> report -> export

Each subcommand parses its flags and calls one function of its stage. User errors
(bad files, keys, flags) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from drive_drail.errors import UserError

EXIT_USER_ERROR = 2


def _cmd_convert(args: argparse.Namespace) -> None:
    from drive_drail.pairs.convert import ConvertConfig, convert_file
    from drive_drail.pairs.storage import summary

    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise UserError(f"{args.output}: the output is the input log; choose another -o")
    if not (args.action_hz > 0 and args.action_hz != float("inf")):
        raise UserError(f"--action-hz must be a positive finite rate in Hz, got {args.action_hz}")
    if args.smooth_s is not None and not (args.smooth_s >= 0 and args.smooth_s != float("inf")):
        raise UserError(f"--smooth-s must be >= 0 seconds, got {args.smooth_s}")
    config = ConvertConfig(action_hz=args.action_hz, smooth_s=args.smooth_s, egos=args.egos)
    pairs, meta = convert_file(args.input, args.output, args.format, config)
    print(summary(pairs, meta))
    print(f"wrote {args.output}")


def _cmd_summary(args: argparse.Namespace) -> None:
    from drive_drail.pairs.storage import read_pairs, summary

    pairs, meta = read_pairs(args.pairs)
    print(summary(pairs, {**meta, "output": args.pairs}))


def _cmd_record(args: argparse.Namespace) -> None:
    from drive_drail.record import record_episodes
    from drive_drail.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    path = record_episodes(scenario, n_episodes=args.episodes, seed=args.seed, out_path=args.output, progress=not args.quiet)
    print(f"wrote {path}")


def _cmd_train(args: argparse.Namespace) -> None:
    from drive_drail.train.adversarial import TrainingDiverged, train
    from drive_drail.train.config import TrainConfig

    if args.resume:
        if not args.out:
            raise UserError("--resume needs the run folder: --out RUN (or -o RUN)")
        from drive_drail.train import checkpoint

        saved = checkpoint.load_config(args.out)
        if saved is None:
            raise UserError(f"{args.out}: nothing to resume (no checkpoint found)")
        for flag, given, kept in (("--scenario", args.scenario, saved.scenario), ("--algo", args.algo, saved.algo),
                                  ("--demos", args.demos, saved.demos), ("--seed", args.seed, saved.seed)):
            if given is not None and given != kept:
                raise UserError(f"{flag} {given} contradicts the run in {args.out} ({kept}); a resume keeps the run's settings")
    elif not args.scenario:
        raise UserError("--scenario is required (a resumed run takes it from its folder)")
    config = TrainConfig(
        scenario=args.scenario or "",
        algo=args.algo or "drail",
        demos=args.demos or "",
        steps=args.steps if args.steps is not None else 20_000,
        seed=args.seed if args.seed is not None else 0,
        n_envs=args.n_envs,
        out=args.out or f"runs/{args.scenario}-{args.algo or 'drail'}-s{args.seed or 0}",
        n_steps=args.n_steps,
        bc_warm_start=not args.no_bc_warm_start,
        bc_epochs=args.bc_epochs,
        fused=not args.unshared,
        label_injection=args.label_injection,
        batch_size=args.ppo_batch,
        ppo_epochs=args.ppo_epochs,
        learning_rate=args.ppo_lr,
        disc_epochs=args.disc_epochs,
        disc_batch=args.disc_batch,
        task_filter=args.task_filter,
        reward_norm=args.reward_norm,
        reward_samples=args.reward_samples,
        sim=args.sim,
        checkpoint_interval_s=args.checkpoint_interval_s,
        torch_threads=args.torch_threads,
    )
    try:
        run_dir = train(config, resume=args.resume, progress=not args.quiet, steps=args.steps)
    except TrainingDiverged as exc:
        raise UserError(f"training diverged: {exc}; the last good checkpoint is in {config.out}/checkpoints") from None
    print(f"run folder {run_dir}: actor.pt, metrics.csv, checkpoints/")


def _output_folder(path: str, flag: str = "-o") -> None:
    """Refuse an output folder that cannot be written before any work starts (a file, a read-only parent)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, expected a folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent if not os.path.exists(path) else path, os.W_OK):
        raise UserError(f"{flag} {path}: cannot write there (permission denied)")


def _cmd_export(args: argparse.Namespace) -> None:
    import numpy as np

    from drive_drail.deploy.export import export_policy, summary_lines

    _output_folder(args.output)
    parity = np.load(args.parity_obs, allow_pickle=False) if args.parity_obs else None
    manifest = export_policy(args.checkpoint, args.output, precision=args.precision, batch=args.batch, parity_obs=parity)
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
        split=args.split,
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
    from drive_drail.deploy.runtime import load_policy
    from drive_drail.evaluate.policies import resolve_artifact
    from drive_drail.sim.scenario_replay import metrics_table, replay_evaluate

    policy = load_policy(resolve_artifact(args.policy))
    table = metrics_table(replay_evaluate(policy.act, args.folder, max_steps=args.max_steps))
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_string(index=False, max_cols=12))
    print(f"wrote {args.output}")


def _cmd_report(args: argparse.Namespace) -> None:
    from drive_drail.evaluate.report import write_report

    _output_folder(args.output)
    print(write_report(args.results, args.output, training_logs=args.training_logs))


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
    from drive_drail.train.config import ALGOS

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
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("summary", help="print the summary of a pairs dataset", description="Print a pairs dataset's summary.")
    p.add_argument("pairs", help="pairs .parquet file")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("record", help="record a scripted expert's episodes as a drive-drail log",
                       description="Run a scenario's scripted expert and log every vehicle at every simulation step.")
    p.add_argument("--scenario", required=True, help="scenario name (scenarios/NAME.yaml) or path")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("-o", "--output", required=True, help="output log (.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("train", help="train a policy by DRAIL or a baseline (GAIL, DiffAIL, DRAIL-UN, BC)",
                       description="Adversarial imitation (PPO + discriminator) or behaviour cloning on expert pairs.")
    p.add_argument("--scenario", help="scenario name or path (required unless --resume)")
    p.add_argument("--algo", choices=list(ALGOS), default=None, help="algorithm (default drail)")
    p.add_argument("--demos", help="expert pairs .parquet (from `drive-drail convert`)")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default 20000; with --resume: the new total)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--n-envs", type=int, default=2, help="parallel environments (default 2; with --sim batched e.g. 256)")
    p.add_argument("--sim", choices=["adapter", "batched"], default="adapter",
                   help="adapter: the scenario's simulator (default); batched: the vectorised highway simulator")
    p.add_argument("--n-steps", type=int, default=256, help="rollout steps per worker per iteration (default 256)")
    p.add_argument("--bc-epochs", type=int, default=30, help="behaviour-cloning epochs (default 30)")
    p.add_argument("--no-bc-warm-start", action="store_true", help="start PPO from a random policy")
    p.add_argument("--ppo-batch", type=int, default=128, help="PPO minibatch size (default 128)")
    p.add_argument("--ppo-epochs", type=int, default=10, help="PPO epochs per iteration (default 10)")
    p.add_argument("--ppo-lr", type=float, default=1e-4, help="PPO learning rate, linearly decayed to 0 (default 1e-4)")
    p.add_argument("--disc-epochs", type=int, default=5, help="discriminator passes over each rollout (default 5)")
    p.add_argument("--disc-batch", type=int, default=128, help="discriminator minibatch, expert and agent each (default 128)")
    p.add_argument("--unshared", action="store_true", help="DRAIL: score the two labels with their own t and eps")
    p.add_argument("--label-injection", choices=["input", "film"], default="film",
                   help="DRAIL: the label scales the last hidden layer (film, default: the fused pass runs the trunk once) "
                        "or joins the network input (input, METHOD.md's public implementation)")
    p.add_argument("--reward-norm", action=argparse.BooleanOptionalAction, default=False,
                   help="divide rewards by the running std of the discounted return (default off)")
    p.add_argument("--reward-samples", type=int, default=4, help="(t, eps) draws averaged per diffusion reward (default 4)")
    p.add_argument("--task-filter", action="store_true", help="train only on pairs labelled with the scenario's manoeuvre")
    p.add_argument("-o", "--output", "--out", dest="out", help="run folder (default runs/SCENARIO-ALGO-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="learner torch threads (default 0: one per core; 1 when runs share the machine)")
    p.add_argument("--checkpoint-interval-s", type=float, default=30.0,
                   help="seconds between checkpoints (default 30; the last iteration is always saved; 0: every iteration)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="run policies closed loop and write a tidy results table",
                       description="Closed-loop evaluation of policies (trained, exported, expert, random, constant) on scenarios.")
    p.add_argument("--policy", action="append", required=True,
                   help="run folder, actor.pt, ONNX export folder, LABEL=PATH, or expert | random | constant[:ACCEL,STEER]; repeatable")
    p.add_argument("--scenario", required=True, help="scenario name or 'all'")
    p.add_argument("--episodes", type=int, default=10, help="episodes per policy, scenario and split (default 10)")
    p.add_argument("--split", default="heldout", help="train, heldout (default), a generalization split, or all")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel episode workers (default: all cores)")
    p.add_argument("--ray", help="Ray address, or 'local' to start a local Ray instance")
    p.add_argument("-o", "--output", required=True, help="results folder (appended to)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("replay", help="drive a policy as the logged ego of real ScenarioNet scenarios (MetaDrive)",
                       description="Closed-loop replay: the policy drives the sdc while every other agent replays the log.")
    p.add_argument("folder", help="ScenarioNet folder (dataset_summary.pkl, dataset_mapping.pkl, scenario .pkl files)")
    p.add_argument("--policy", required=True, help="run folder, actor.pt or ONNX export folder")
    p.add_argument("--max-steps", type=int, default=None, help="policy steps per scenario (default: the log's length)")
    p.add_argument("-o", "--output", required=True, help="per-scenario metrics .csv")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("report", help="write an HTML + Markdown evaluation report",
                       description="Self-contained HTML report (and a Markdown twin) from evaluation results.")
    p.add_argument("results", nargs="+", help="results folders or files")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--training-logs", nargs="*", default=None, help="run folders whose metrics.csv become learning curves")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="export a trained policy to ONNX (and a TensorRT engine where possible)",
                       description="Write policy.onnx + manifest.json (+ a TensorRT engine when TensorRT and a GPU are present).")
    p.add_argument("checkpoint", help="run folder, checkpoint folder or actor.pt")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="graph precision (default fp32)")
    p.add_argument("--batch", default="1", help="batch size or MIN:OPT:MAX range for the engine profile (default 1)")
    p.add_argument("--parity-obs", help="observations .npy [N, obs_dim] for the torch/onnxruntime parity check")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("scenarios", help="list the available scenarios", description="List scenarios/ files.")
    p.set_defaults(func=_cmd_scenarios)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UserError as exc:
        print(f"drive-drail {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"drive-drail {args.command}: interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as exc:
        print(f"drive-drail {args.command}: error: {exc.filename or exc}: no such file", file=sys.stderr)
        return EXIT_USER_ERROR
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        reason = {PermissionError: "permission denied", IsADirectoryError: "is a folder, expected a file",
                  NotADirectoryError: "a path component is a file, expected a folder",
                  FileExistsError: "already exists"}[type(exc)]
        print(f"drive-drail {args.command}: error: {exc.filename or exc}: {reason}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as exc:  # an optional dependency (MetaDrive, Ray) that is not installed
        print(f"drive-drail {args.command}: error: needs the Python package '{exc.name}', which is not installed "
              f"(see the README's install section)", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
