"""``export_policy``: actor checkpoint -> ONNX (+ TensorRT engine where possible) + manifest.

Steps, top to bottom:

1. load the :class:`DeterministicActor` (``actor.pt`` or a folder holding it);
2. export ``policy.onnx`` (:mod:`.onnx_export`) in the requested precision;
3. parity: torch (fp32 actor, the reference) vs onnxruntime on the parity observations
   (recorded ones when given, else generated around the actor's normaliser), stored with
   the torch actions in ``parity.npz`` so the target can re-check its engine;
4. vehicle-side material: ``build_engine.env``, ``build_engine.sh``, ``BUILD_ON_TARGET.md``;
5. a TensorRT engine when TensorRT and a CUDA GPU are here, checked against the same
   torch actions; otherwise a plain message that the engine must be built on the target;
6. ``manifest.json`` with the sha256 of every artifact.

Parity tolerances (max abs error on the unit action, over all observations):

- fp32: :data:`FP32_TOLERANCE` = 1e-5. Measured ~4e-7 (onnxruntime CPU, 256x256 tanh MLP).
- fp16: :data:`FP16_TOLERANCE` = 1e-2, i.e. 0.05 m/s^2 of acceleration and 0.45 deg of
  steering. Measured on the default 256x256 tanh actor over 10,000 observations: 2.7e-4
  with initial-scale weights, 1.1e-3 and 3.6e-3 with weights scaled 2x and 4x (more than
  half of the actions clipped): float16's 2^-11 relative rounding, grown through three
  layers. 1e-2 leaves ~3x headroom over the worst measured case, well below any
  controller-relevant change.

A parity failure raises :class:`ParityError` and writes no manifest, so the runtime
refuses the folder.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from drive_drail import spec
from drive_drail.atomic import atomic_path, write_text
from drive_drail.errors import ArgumentError
from drive_drail.deploy import tensorrt_build as trtb
from drive_drail.deploy.manifest import MANIFEST_NAME, Manifest, sha256_file, signing_key_from_env, verify_signature
from drive_drail.deploy.onnx_export import OUTPUT_NAMES, PRECISIONS, export_onnx, realistic_observations
from drive_drail.deploy.runtime import ACTOR_NAME, ONNX_NAME, make_session
from drive_drail.models.policy import DeterministicActor

FP32_TOLERANCE = 1e-5
"""Max abs error on the unit action allowed for an fp32 export (torch vs onnxruntime/TensorRT)."""
FP16_TOLERANCE = 1e-2
"""Max abs error on the unit action allowed for an fp16 export (see the module docstring)."""
TOLERANCE = {"fp32": FP32_TOLERANCE, "fp16": FP16_TOLERANCE}
PARITY_NAME = "parity.npz"
N_PARITY_OBS = 10_000
PARITY_SEED = 0


class ParityError(RuntimeError):
    """An exported artifact's actions differ from the torch actor's beyond the tolerance."""


def resolve_actor(path: str | Path) -> Path:
    """An actor ``.pt`` file, or a run/checkpoint folder containing ``actor.pt``."""
    path = Path(path)
    if path.is_dir():
        if (path / ACTOR_NAME).is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path / ACTOR_NAME))
        if not (path / ACTOR_NAME).is_file():
            raise FileNotFoundError(f"{path}: folder has no {ACTOR_NAME}")
        return path / ACTOR_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such actor file or checkpoint folder")
    return path


def _check_parity_obs(obs: np.ndarray, obs_dim: int) -> np.ndarray:
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.shape[1] != obs_dim or obs.shape[0] < 1:
        raise ArgumentError(f"parity_obs: shape {obs.shape}, expected [N, {obs_dim}] with N >= 1")
    if not np.issubdtype(obs.dtype, np.floating):
        raise ArgumentError(f"parity_obs: dtype {obs.dtype}, expected floating point")
    bad = np.flatnonzero(~np.isfinite(obs).all(axis=1))
    if bad.size:
        raise ArgumentError(f"parity_obs: row {bad[0]} has a non-finite value")
    return np.ascontiguousarray(obs, dtype=np.float32)


def parity_record(outputs: dict[str, np.ndarray], action_torch: np.ndarray, precision: str) -> dict:
    """Max abs errors of a backend's outputs against the torch actor's actions.

    ``action``: against the torch actor's unit action. ``action_physical``: against
    ``spec.action_to_physical(torch action)`` [m/s^2, rad]. ``physical_vs_own_action``:
    the graph's unit mapping against ``spec.action_to_physical`` of its own ``action``.
    """
    err_action = float(np.max(np.abs(outputs["action"] - action_torch)))
    err_physical = float(np.max(np.abs(outputs["action_physical"] - spec.action_to_physical(action_torch))))
    err_mapping = float(np.max(np.abs(outputs["action_physical"] - spec.action_to_physical(outputs["action"]))))
    tolerance = TOLERANCE[precision]
    return {
        "max_abs_err_action": err_action,
        "max_abs_err_action_physical": err_physical,
        "max_abs_err_physical_vs_own_action": err_mapping,
        "tolerance_action": tolerance,
        "passed": err_action <= tolerance,
    }


def _require_parity(record: dict, backend: str, path: Path, precision: str) -> None:
    if not record["passed"]:
        raise ParityError(
            f"{path}: {backend} {precision} max abs action error {record['max_abs_err_action']:.3g} "
            f"exceeds tolerance {record['tolerance_action']:g} (no manifest written)"
        )


def _engine_step(
    export_dir: Path, precision: str, batch: trtb.BatchRange, obs_dim: int, obs: np.ndarray, action_torch: np.ndarray
) -> tuple[dict, dict | None]:
    """Build and check the engine if TensorRT and a GPU are here: (tensorrt record, parity record or None)."""
    ok, reason = trtb.tensorrt_status()
    if not ok:
        message = (
            f"TensorRT engine NOT built here: {reason}. Build it on the target: "
            f"run {export_dir / trtb.BUILD_SCRIPT_NAME} there (see {export_dir / trtb.BUILD_DOC_NAME})."
        )
        return {"built": False, "reason": reason, "message": message}, None
    info = trtb.build_engine(
        export_dir / ONNX_NAME,
        export_dir / trtb.ENGINE_NAME,
        precision,
        batch,
        obs_dim,
        export_dir / trtb.TIMING_CACHE_NAME,
    )
    record = parity_record(trtb.TensorRTRunner(info.path).run(obs), action_torch, precision)
    _require_parity(record, "TensorRT", info.path, precision)
    tensorrt = {
        "built": True,
        "message": f"TensorRT {info.tensorrt_version} engine built on {info.gpu_name} (compute capability {info.compute_capability}); "
        "it runs only on that GPU architecture and TensorRT version.",
        "engine": trtb.ENGINE_NAME,
        "version": info.tensorrt_version,
        "gpu_name": info.gpu_name,
        "compute_capability": info.compute_capability,
        "strongly_typed": info.strongly_typed,
        "tf32": info.tf32,
        "timing_cache": info.timing_cache,
    }
    return tensorrt, record


def _hash_artifacts(export_dir: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(export_dir / name) for name in names if (export_dir / name).is_file()}


def export_policy(
    actor_path: str | Path,
    out_dir: str | Path,
    precision: str = "fp32",
    batch: str | int = "1",
    parity_obs: np.ndarray | None = None,
    build_engine: bool = True,
    signing_key: bytes | None = None,
    progress: bool = False,
) -> Manifest:
    """Export an actor for in-vehicle inference; see the module docstring for the steps.

    Args:
        actor_path: ``actor.pt`` or a run/checkpoint folder containing it.
        out_dir: export folder (created; files in it are replaced atomically).
        precision: ``"fp32"`` or ``"fp16"`` (compute precision inside the ONNX graph).
        batch: ``"N"`` or ``"MIN:OPT:MAX"``: TensorRT optimisation profile for input ``obs``.
            The ONNX batch dimension is dynamic regardless.
        parity_obs: ``[N, OBS_DIM]`` recorded observations for the parity check; ``None``
            draws :data:`N_PARITY_OBS` around the actor's normaliser (recorded in the manifest).
        build_engine: try to build the TensorRT engine here (needs TensorRT and a CUDA GPU).
        signing_key: sign ``manifest.json`` (``manifest.sig``, HMAC-SHA256); None = the key in
            ``$DRIVE_DRAIL_SIGNING_KEY``, if set.
        progress: a bar over the four stages (ONNX, onnxruntime parity, TensorRT engine, manifest),
            each named as it runs, on a terminal (the engine build can take minutes).

    Returns:
        The :class:`Manifest` written to ``out_dir/manifest.json``; ``manifest.tensorrt["message"]``
        says whether the engine was built or must be built on the target.

    Raises:
        ParityError: an artifact's actions differ from the torch actor's beyond tolerance.
        ValueError / FileNotFoundError: bad arguments, named in a one-line message.
    """
    if precision not in PRECISIONS:
        raise ArgumentError(f"precision '{precision}': expected one of {', '.join(PRECISIONS)}")
    batch_range = trtb.parse_batch(batch)
    actor_file = resolve_actor(actor_path)
    actor = DeterministicActor.load(actor_file)
    obs_dim = actor.config.obs_dim
    if parity_obs is None:
        obs = realistic_observations(actor, N_PARITY_OBS, PARITY_SEED)
        obs_source = f"generated: obs_mean + obs_std * N(0, 1), seed {PARITY_SEED} (no recorded observations given)"
    else:
        obs = _check_parity_obs(parity_obs, obs_dim)
        obs_source = "recorded: observations passed to export_policy(parity_obs=...)"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    bar = tqdm(total=4, desc="export ONNX", unit="stage", disable=None if progress else True)

    def stage_done(next_stage: str) -> None:
        bar.update(1)
        bar.set_description(next_stage)

    # 2. ONNX
    onnx_info = export_onnx(actor, out / ONNX_NAME, precision)
    stage_done("parity (onnxruntime)")

    # 3. parity: torch fp32 actor (reference) vs onnxruntime, on the same observations
    action_torch = actor.act(obs)
    with atomic_path(out / PARITY_NAME) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, obs=obs, action_torch=action_torch)
    session = make_session(onnx_info.path)
    ort_out = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"obs": obs}), strict=True))
    ort_record = parity_record(ort_out, action_torch, precision)
    _require_parity(ort_record, "onnxruntime", onnx_info.path, precision)
    stage_done("TensorRT engine" if build_engine else "manifest")

    # 4. vehicle-side material
    write_text(
        out / trtb.BUILD_ENV_NAME, trtb.build_env_text(precision, batch_range, obs_dim, sha256_file(onnx_info.path))
    )
    write_text(out / trtb.BUILD_SCRIPT_NAME, trtb.BUILD_ENGINE_SH)
    (out / trtb.BUILD_SCRIPT_NAME).chmod(0o755)

    # 5. TensorRT engine, or the message to build it on the target
    if build_engine:
        tensorrt, trt_record = _engine_step(out, precision, batch_range, obs_dim, obs, action_torch)
    else:
        reason = "engine build not requested (build_engine=False)"
        tensorrt = {
            "built": False,
            "reason": reason,
            "message": f"TensorRT engine NOT built here: {reason}. Build it on the target: see {out / trtb.BUILD_DOC_NAME}.",
        }
        trt_record = None
    status = (
        tensorrt["message"] + " Build again on the vehicle unless it has the same GPU and TensorRT."
        if tensorrt["built"]
        else f"No TensorRT engine was built at export time: {tensorrt['reason']}."
    )
    write_text(out / trtb.BUILD_DOC_NAME, trtb.build_on_target_text(status, precision, batch_range, obs_dim))
    stage_done("manifest")

    # 6. manifest
    manifest = Manifest(
        precision=precision,
        opset=onnx_info.opset,
        batch=batch_range.as_dict(),
        inputs=onnx_info.inputs,
        outputs=onnx_info.outputs,
        actor={"file": str(actor_file), "sha256": sha256_file(actor_file), "config": asdict(actor.config)},
        parity={
            "reference": "torch fp32 DeterministicActor.act",
            "obs_file": PARITY_NAME,
            "obs_source": obs_source,
            "n_obs": int(obs.shape[0]),
            "onnxruntime": ort_record,
            "tensorrt": trt_record,
        },
        tensorrt={**tensorrt, "trtexec": " ".join(trtb.trtexec_command(precision, batch_range, obs_dim))},
    )
    manifest.artifacts = _hash_artifacts(
        out,
        [ONNX_NAME, PARITY_NAME, trtb.BUILD_ENV_NAME, trtb.BUILD_SCRIPT_NAME, trtb.BUILD_DOC_NAME]
        + ([trtb.ENGINE_NAME] if tensorrt["built"] else []),
    )
    manifest.exported_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest.save(out, signing_key or signing_key_from_env())
    stage_done(f"wrote {out.name}")
    bar.close()
    return manifest


def build_engine_in_export(export_dir: str | Path, signing_key: bytes | None = None) -> Manifest:
    """On the target: build ``policy.engine`` for an existing export and record it in its manifest.

    Checks the engine against the torch actions stored in ``parity.npz`` at export time. With a
    signing key (or ``$DRIVE_DRAIL_SIGNING_KEY``), the export must verify first and is re-signed.
    """
    export_dir = Path(export_dir)
    signing_key = signing_key or signing_key_from_env()
    if signing_key:
        verify_signature(export_dir, signing_key)
    manifest = Manifest.load(export_dir)
    manifest.check_compatible(export_dir)
    manifest.check_artifact(export_dir, ONNX_NAME)
    ok, reason = trtb.tensorrt_status()
    if not ok:
        raise RuntimeError(f"{export_dir}: cannot build a TensorRT engine here: {reason}")
    with np.load(manifest.check_artifact(export_dir, PARITY_NAME)) as data:
        obs, action_torch = data["obs"], data["action_torch"]
    batch = trtb.BatchRange(**manifest.batch)
    obs_dim = int(manifest.inputs[0]["shape"][1])
    tensorrt, record = _engine_step(export_dir, manifest.precision, batch, obs_dim, obs, action_torch)
    manifest.tensorrt = {**tensorrt, "trtexec": manifest.tensorrt.get("trtexec", "")}
    manifest.parity["tensorrt"] = record
    manifest.artifacts[trtb.ENGINE_NAME] = sha256_file(export_dir / trtb.ENGINE_NAME)
    manifest.save(export_dir, signing_key)
    return manifest


def summary_lines(manifest: Manifest, out_dir: str | Path) -> list[str]:
    """Human-readable lines for the CLI: what was written, parity figures, engine status."""
    out = Path(out_dir)
    ort = manifest.parity["onnxruntime"]
    lines = [
        f"exported {manifest.precision} policy (spec {manifest.spec_version}, opset {manifest.opset}) to {out}",
        f"  {ONNX_NAME}: obs [batch, {manifest.inputs[0]['shape'][1]}] float32 -> action, action_physical [batch, 2] float32",
        f"  parity vs torch on {manifest.parity['n_obs']} observations ({manifest.parity['obs_source'].split(':')[0]}): "
        f"onnxruntime max abs action error {ort['max_abs_err_action']:.2e} (tolerance {ort['tolerance_action']:g})",
    ]
    trt_parity = manifest.parity.get("tensorrt")
    if trt_parity:
        lines.append(
            f"  TensorRT max abs action error {trt_parity['max_abs_err_action']:.2e} (tolerance {trt_parity['tolerance_action']:g})"
        )
    lines.append(f"  {manifest.tensorrt['message']}")
    if not manifest.tensorrt["built"]:
        lines.append(f"  on the target: {manifest.tensorrt['trtexec']}")
    lines.append(f"  manifest: {out / MANIFEST_NAME}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m drive_drail.deploy.export --build-engine EXPORT_DIR`` (run on the target)."""
    parser = argparse.ArgumentParser(description="Build the TensorRT engine of a drive-drail export on this machine.")
    parser.add_argument(
        "--build-engine", metavar="EXPORT_DIR", required=True, help="export folder (holds manifest.json)"
    )
    args = parser.parse_args(argv)
    manifest = build_engine_in_export(args.build_engine)
    print("\n".join(summary_lines(manifest, args.build_engine)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
