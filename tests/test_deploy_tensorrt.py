"""TensorRT engine build and runtime.

The engine tests need TensorRT and a CUDA GPU and skip with the precise reason elsewhere.
The build material (trtexec command, build script) is checked everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from drive_drail import spec
from drive_drail.deploy import tensorrt_build as trtb
from drive_drail.deploy.export import FP16_TOLERANCE, FP32_TOLERANCE, build_engine_in_export, export_policy
from drive_drail.deploy.manifest import ManifestError, sha256_file
from drive_drail.deploy.runtime import load_policy
from drive_drail.models.policy import ActorConfig, DeterministicActor

REPO = Path(__file__).resolve().parents[1]
TRT_AVAILABLE, TRT_REASON = trtb.tensorrt_status()
needs_tensorrt = pytest.mark.skipif(
    not TRT_AVAILABLE, reason=f"TensorRT engine tests need TensorRT and a CUDA GPU: {TRT_REASON}"
)


def make_actor() -> DeterministicActor:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    actor = DeterministicActor(
        ActorConfig(hidden_sizes=(64, 64)), rng.normal(0, 0.5, spec.OBS_DIM), rng.uniform(0.05, 2.0, spec.OBS_DIM)
    )
    with torch.no_grad():
        for p in actor.net.parameters():
            p.mul_(2.0)
    return actor.eval()


@pytest.fixture(scope="module")
def actor_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("run") / "actor.pt"
    make_actor().save(path)
    return path


# ------------------------------------------------------------------------------ everywhere


def test_parse_batch():
    assert trtb.parse_batch("1") == trtb.BatchRange(1, 1, 1)
    assert trtb.parse_batch(16) == trtb.BatchRange(16, 16, 16)
    assert trtb.parse_batch("1:8:64") == trtb.BatchRange(1, 8, 64)
    for bad in ("0", "1:8", "4:2:8", "a:b:c", "1:2:3:4"):
        with pytest.raises(ValueError, match="expected N or MIN:OPT:MAX"):
            trtb.parse_batch(bad)


def test_trtexec_command_flags():
    fp32 = trtb.trtexec_command("fp32", trtb.BatchRange(1, 8, 64), spec.OBS_DIM, "out")
    assert fp32[:3] == ["trtexec", "--onnx=out/policy.onnx", "--saveEngine=out/policy.engine"]
    assert f"--minShapes=obs:1x{spec.OBS_DIM}" in fp32 and f"--maxShapes=obs:64x{spec.OBS_DIM}" in fp32
    assert "--noTF32" in fp32 and "--stronglyTyped" in fp32 and "--timingCacheFile=out/timing.cache" in fp32
    fp16 = trtb.trtexec_command("fp16", trtb.BatchRange(1, 1, 1), spec.OBS_DIM)
    assert "--stronglyTyped" in fp16 and "--noTF32" not in fp16
    assert not any(flag in fp16 for flag in ("--fp16", "--int8", "--best"))  # removed in TensorRT 11


def test_repo_build_script_is_the_canonical_one():
    """One source: the package data file; ``deploy/build_engine.sh`` is a relative link to it."""
    packaged = REPO / "drive_drail" / "deploy" / trtb.BUILD_SCRIPT_NAME
    script = REPO / "deploy" / "build_engine.sh"
    assert script.is_symlink() and os.readlink(script) == "../drive_drail/deploy/build_engine.sh"
    assert script.resolve() == packaged.resolve()
    assert packaged.read_text() == trtb.BUILD_ENGINE_SH
    assert script.read_text() == trtb.BUILD_ENGINE_SH
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_build_script_refuses_a_changed_onnx(actor_file, tmp_path):
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum (coreutils) is not installed")
    out = tmp_path / "export"
    export_policy(actor_file, out, build_engine=False)
    with open(out / "policy.onnx", "ab") as f:
        f.write(b"\0")
    result = subprocess.run(
        ["bash", str(out / "build_engine.sh"), str(out)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TRTEXEC": "/nonexistent/trtexec"},
    )
    assert result.returncode == 1
    assert "policy.onnx: sha256" in result.stderr and "does not match ONNX_SHA256" in result.stderr
    assert not (out / "policy.engine").exists()


# ------------------------------------------------------------------------------ with TensorRT + GPU


@pytest.fixture(scope="module")
def engine_export(actor_file, tmp_path_factory) -> Path:
    if not TRT_AVAILABLE:
        pytest.skip(f"TensorRT engine tests need TensorRT and a CUDA GPU: {TRT_REASON}")
    out = tmp_path_factory.mktemp("engine_fp32")
    export_policy(actor_file, out, precision="fp32", batch="1:8:64")
    return out


@needs_tensorrt
def test_fp32_engine_built_recorded_and_within_parity(engine_export):
    import tensorrt as trt

    manifest = json.loads((engine_export / "manifest.json").read_text())
    record = manifest["tensorrt"]
    assert record["built"] and record["version"] == trt.__version__
    major, minor = torch.cuda.get_device_capability(0)
    assert record["compute_capability"] == f"{major}.{minor}" and record["gpu_name"] == torch.cuda.get_device_name(0)
    assert record["strongly_typed"] and record["tf32"] is False
    assert manifest["artifacts"]["policy.engine"] == sha256_file(engine_export / "policy.engine")
    assert manifest["parity"]["tensorrt"]["max_abs_err_action"] <= FP32_TOLERANCE
    assert (engine_export / "timing.cache").stat().st_size > 0


@needs_tensorrt
@pytest.mark.parametrize("batch", [1, 64, 100])  # 100 > profile max: split into chunks
def test_engine_policy_matches_actor(engine_export, actor_file, batch):
    actor = DeterministicActor.load(actor_file)
    policy = load_policy(engine_export, backend="tensorrt")
    obs = np.random.default_rng(batch).standard_normal((batch, spec.OBS_DIM)).astype(np.float32)
    np.testing.assert_allclose(policy.act(obs), actor.act(obs), rtol=0, atol=FP32_TOLERANCE)
    assert policy.act(obs[0]).shape == (2,)
    physical = policy.runner.run(obs)["action_physical"]
    np.testing.assert_allclose(physical, spec.action_to_physical(policy.act(obs)), rtol=0, atol=2e-6)


@needs_tensorrt
def test_fp16_engine_within_tolerance_and_timing_cache_reused(actor_file, tmp_path):
    out = tmp_path / "fp16"
    first = export_policy(actor_file, out, precision="fp16", batch="1:1:16")
    assert first.parity["tensorrt"]["max_abs_err_action"] <= FP16_TOLERANCE
    assert first.tensorrt["timing_cache"] == "new"
    second = build_engine_in_export(out)
    assert second.tensorrt["timing_cache"] == "loaded"
    assert load_policy(out / "policy.engine").backend == "tensorrt"


@needs_tensorrt
def test_engine_built_later_on_target_and_tamper_refused(actor_file, tmp_path):
    out = tmp_path / "later"
    export_policy(actor_file, out, build_engine=False)
    with pytest.raises(ManifestError, match="tensorrt.built"):
        load_policy(out, backend="tensorrt")
    manifest = build_engine_in_export(out)
    assert manifest.tensorrt["built"] and manifest.parity["tensorrt"]["passed"]
    assert load_policy(out, backend="tensorrt").act(np.zeros(spec.OBS_DIM, np.float32)).shape == (2,)
    with open(out / "policy.engine", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match=r"policy\.engine: sha256"):
        load_policy(out, backend="tensorrt")
