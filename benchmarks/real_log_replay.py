"""A policy learned from real logs, driven closed loop on real scenes it never saw.

The data are ScenarioNet folders (by default the eight real nuScenes scenes of
``../shared/data/scenarionet_nuscenes_mini``, read in place). Leave one folder out: for each folder,

1. every other folder's scenarios are converted to expert pairs with the same converter as any
   log (``drive-drail convert``: moving tracks only, at the replay's 10 Hz decision rate);
2. BC is trained on them (``drive-drail train --algo bc``; the MetaDrive scenario only fixes the
   10 Hz action rate: BC never steps a simulator), once per seed;
3. the held-out folder is replayed in MetaDrive (``drive-drail replay``): the policy drives the
   logged sdc, every other agent replays its log. Beside it, on the same scenes:
   ``constant`` (hold speed, wheels straight) and ``log``, the logged sdc's own actions recovered
   by the converter and driven open loop: the fidelity row of the inverse dynamics and action map.

Every scene is thus scored by policies that never saw it. Scenes whose logged sdc never drives
faster than 1 m/s are not applicable and left out of the aggregates (listed in the per-scene CSV).
Writes ``--out/scenes.csv`` (one row per policy, seed and scene), ``results.json`` and
``RESULTS.md``; prints the JSON.

    python benchmarks/real_log_replay.py --seeds 0 1 2 --out benchmarks/results/real_log_replay
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from drive_drail.evaluate.aggregate import wilson
from drive_drail.evaluate.policies import replay_policy
from drive_drail.logs.scenarionet import scenario_files
from drive_drail.sim.scenario_replay import DECISION_HZ, metrics_table, replay_evaluate

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenarionet_nuscenes_mini"
TRAIN_SCENARIO = "metadrive_lane_change"  # acts at 10 Hz, the replay's rate; BC never steps it


def cli(*args: str) -> None:
    """One ``drive-drail`` command in its own process, one torch thread (quiet, errors shown)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "drive_drail.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"drive-drail {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def training_folder(folders: list[Path], out: Path) -> Path:
    """A ScenarioNet folder of links to every scenario of ``folders`` (no index files: dataset order = name order)."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for f in scenario_files(folder):
            link = out / f"{folder.name}__{f.name}"
            if not link.exists():
                link.symlink_to(f.resolve())
    return out


def aggregate(scenes: pd.DataFrame) -> list[dict]:
    """Per policy, over the applicable scenes (all seeds pooled): rates with Wilson 95 % intervals, mean distances."""
    rows = []
    for policy, g in scenes[scenes["applicable"]].groupby("policy", sort=False):
        n = len(g)
        row = {"policy": policy, "episodes": n, "scenes": int(g["scenario_id"].nunique()),
               "route_completion": float(g["route_completion"].mean()),
               "ade_m": float(g["ade_m"].mean()), "fde_m": float(g["fde_m"].mean()),
               "mean_speed_mps": float(g["mean_speed_mps"].mean()), "steps": float(g["steps"].mean())}
        for rate in ("success", "crashed", "offroad"):
            k = int(g[rate].sum())
            row[rate] = k / n
            row[f"{rate}_ci95"] = list(wilson(k, n))
        rows.append(row)
    return rows


def markdown(summary: list[dict], settings: dict, not_applicable: list[str]) -> str:
    lines = [
        "# A policy learned from real logs, replayed closed loop on unseen real scenes",
        "",
        f"Data: {settings['data']} ({settings['folders']} folders, leave one folder out). Pairs: "
        f"`drive-drail convert` (moving tracks, {settings['action_hz']:g} Hz); BC: {settings['bc_epochs']} epochs, "
        f"seeds {settings['seeds']}; replay in MetaDrive, every other agent on its log.",
        "",
        f"    {settings['command']}",
        "",
        f"Wall time: {settings['wall_s']:.0f} s on this machine (2 cores).",
        "",
        "| policy | episodes | success | collision | off-road | route completion | ADE m | FDE m | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        def rate(k: str) -> str:
            lo, hi = r[f"{k}_ci95"]
            return f"{r[k]:.2f} [{lo:.2f}, {hi:.2f}]"

        lines.append(f"| {r['policy']} | {r['episodes']} ({r['scenes']} scenes) | {rate('success')} | {rate('crashed')} | "
                     f"{rate('offroad')} | {r['route_completion']:.2f} | {r['ade_m']:.1f} | {r['fde_m']:.1f} | {r['steps']:.0f} |")
    lines += ["", "Rates pooled over seeds and scenes with Wilson 95 % intervals; route completion along the logged "
              "route, ADE / FDE to the logged sdc over the steps driven (an episode ends at a collision or off-road).",
              f"Not applicable (the logged sdc never exceeds 1 m/s): {', '.join(not_applicable) or 'none'}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder of ScenarioNet folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="BC training seeds")
    parser.add_argument("--bc-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_log_replay"))
    args = parser.parse_args()
    folders = sorted(p for p in args.data.iterdir() if p.is_dir()) if args.data.is_dir() else []
    if len(folders) < 2:
        raise SystemExit(f"{args.data}: needs at least two ScenarioNet folders to leave one out")
    start = time.time()
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)  # pairs and runs are rebuilt: a stale converter's pairs must not be reused
    tables = []
    for held_out in folders:
        fold = work / f"without-{held_out.name}"
        train_sn = training_folder([f for f in folders if f != held_out], fold / "scenes")
        pairs = fold / "pairs.parquet"
        cli("convert", str(train_sn), "-o", str(pairs), "--action-hz", f"{DECISION_HZ:g}", "--egos", "moving")
        policies = {"log": "log", "constant": "constant"}
        for seed in args.seeds:
            run = fold / f"bc-s{seed}"
            cli("train", "--scenario", TRAIN_SCENARIO, "--algo", "bc", "--demos", str(pairs), "--sim", "adapter",
                "--n-envs", "1", "--seed", str(seed), "--bc-epochs", str(args.bc_epochs), "--out", str(run), "--quiet")
            policies[f"bc-s{seed}"] = str(run)
        for label, source in policies.items():
            table = metrics_table(replay_evaluate(replay_policy(source), held_out))
            table.insert(0, "policy", "bc" if label.startswith("bc-s") else label)
            table.insert(1, "seed", int(label[4:]) if label.startswith("bc-s") else -1)
            table.insert(2, "folder", held_out.name)
            tables.append(table)
    scenes = pd.concat(tables, ignore_index=True)
    wall_s = time.time() - start
    settings = {"data": str(args.data), "folders": len(folders), "seeds": args.seeds, "bc_epochs": args.bc_epochs,
                "action_hz": DECISION_HZ, "wall_s": wall_s, "command": "python benchmarks/real_log_replay.py " + " ".join(sys.argv[1:])}
    summary = aggregate(scenes)
    not_applicable = sorted(scenes.loc[~scenes["applicable"], "scenario_id"].unique())
    args.out.mkdir(parents=True, exist_ok=True)
    scenes.to_csv(args.out / "scenes.csv", index=False)
    result = {"settings": settings, "summary": summary, "not_applicable": not_applicable}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(markdown(summary, settings, not_applicable))
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
