"""ONNX export, manifest, parity and the runtime loader, on CPU with real onnxruntime."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from drive_drail import spec
from drive_drail.deploy import tensorrt_build as trtb
from drive_drail.deploy.export import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    N_PARITY_OBS,
    ParityError,
    export_policy,
    resolve_actor,
    summary_lines,
)
from drive_drail.deploy.manifest import MANIFEST_FORMAT, Manifest, ManifestError, sha256_file
from drive_drail.deploy.onnx_export import OPSET
from drive_drail.deploy.runtime import load_policy
from drive_drail.models.policy import ActorConfig, DeterministicActor

REPO = Path(__file__).resolve().parents[1]


def make_actor(seed: int = 0, weight_scale: float = 2.0) -> DeterministicActor:
    """A trained-looking actor: random weights scaled so some actions clip, nontrivial normaliser."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    actor = DeterministicActor(
        ActorConfig(hidden_sizes=(64, 64)),
        obs_mean=rng.normal(0.0, 0.5, spec.OBS_DIM),
        obs_std=rng.uniform(0.05, 2.0, spec.OBS_DIM),
    )
    with torch.no_grad():
        for p in actor.net.parameters():
            p.mul_(weight_scale)
    return actor.eval()


@pytest.fixture(scope="module")
def actor_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    make_actor().save(run / "actor.pt")
    return run


@pytest.fixture(scope="module")
def recorded_obs(actor_dir) -> np.ndarray:
    """Stand-in for recorded observations: shifted away from the normaliser on purpose."""
    actor = DeterministicActor.load(actor_dir / "actor.pt")
    rng = np.random.default_rng(7)
    mean, std = actor.obs_mean.numpy(), actor.obs_std.numpy()
    return (mean + 1.5 * std * rng.standard_normal((N_PARITY_OBS, spec.OBS_DIM)) + 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def fp32_export(actor_dir, tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("fp32")
    return out, export_policy(actor_dir, out, precision="fp32", batch="1:8:64")  # generated parity obs


@pytest.fixture(scope="module")
def fp16_export(actor_dir, recorded_obs, tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("fp16")
    return out, export_policy(actor_dir / "actor.pt", out, precision="fp16", batch="1", parity_obs=recorded_obs)


def ort_run(out: Path, obs: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"obs": obs}), strict=True))


# ------------------------------------------------------------------------------ ONNX graph


@pytest.mark.parametrize("which", ["fp32_export", "fp16_export"])
def test_onnx_passes_full_checker_with_named_dynamic_io(which, request):
    out, _ = request.getfixturevalue(which)
    model = onnx.load(out / "policy.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
    (inp,) = model.graph.input
    assert inp.name == "obs"
    assert [o.name for o in model.graph.output] == ["action", "action_physical"]
    for value in [inp, *model.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
    assert inp.type.tensor_type.shape.dim[1].dim_value == spec.OBS_DIM


def test_fp16_precision_lives_in_the_graph(fp16_export, fp32_export):
    model16 = onnx.load(fp16_export[0] / "policy.onnx")
    gemm_weights = {n.input[1] for n in model16.graph.node if n.op_type == "Gemm"}
    dtypes = {i.name: i.data_type for i in model16.graph.initializer}
    assert gemm_weights and all(dtypes[w] == onnx.TensorProto.FLOAT16 for w in gemm_weights)
    casts = [n for n in model16.graph.node if n.op_type == "Cast"]
    cast_to = sorted(next(a.i for a in n.attribute if a.name == "to") for n in casts)
    assert cast_to == sorted([onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT])  # in and out
    model32 = onnx.load(fp32_export[0] / "policy.onnx")
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in model32.graph.initializer)
    assert not any(n.op_type == "Cast" for n in model32.graph.node)


@pytest.mark.parametrize("batch", [1, 64])
def test_dynamic_batch_runs_in_onnxruntime(fp32_export, fp16_export, batch):
    obs = np.random.default_rng(batch).standard_normal((batch, spec.OBS_DIM)).astype(np.float32)
    for out, _ in (fp32_export, fp16_export):
        result = ort_run(out, obs)
        assert result["action"].shape == (batch, 2) and result["action_physical"].shape == (batch, 2)
        assert result["action"].dtype == np.float32
        assert np.all(np.abs(result["action"]) <= 1.0)


def test_action_physical_is_spec_mapping_of_action(fp32_export):
    out, _ = fp32_export
    with np.load(out / "parity.npz") as data:
        obs = data["obs"]
    result = ort_run(out, obs)
    np.testing.assert_allclose(result["action_physical"], spec.action_to_physical(result["action"]), rtol=0, atol=2e-6)
    assert np.any(np.abs(result["action"]) == 1.0), "parity set should exercise the clip"


# ------------------------------------------------------------------------------ parity


def test_fp32_parity_on_10000_observations(fp32_export, actor_dir):
    out, manifest = fp32_export
    actor = DeterministicActor.load(actor_dir / "actor.pt")
    with np.load(out / "parity.npz") as data:
        obs, stored = data["obs"], data["action_torch"]
    assert obs.shape == (N_PARITY_OBS, spec.OBS_DIM)
    np.testing.assert_array_equal(stored, actor.act(obs))
    err = np.abs(ort_run(out, obs)["action"] - actor.act(obs)).max()
    assert err <= FP32_TOLERANCE
    record = manifest.parity["onnxruntime"]
    assert record["passed"] and record["tolerance_action"] == FP32_TOLERANCE
    assert record["max_abs_err_action"] == pytest.approx(float(err), abs=1e-9)
    assert manifest.parity["n_obs"] == N_PARITY_OBS
    assert manifest.parity["obs_source"].startswith("generated")


def test_fp16_parity_within_documented_tolerance(fp16_export, actor_dir, recorded_obs):
    out, manifest = fp16_export
    actor = DeterministicActor.load(actor_dir / "actor.pt")
    err = np.abs(ort_run(out, recorded_obs)["action"] - actor.act(recorded_obs)).max()
    assert 0.0 < err <= FP16_TOLERANCE  # > 0: the graph really computes in fp16
    assert manifest.parity["onnxruntime"]["max_abs_err_action"] == pytest.approx(float(err), abs=1e-9)
    assert manifest.parity["onnxruntime"]["tolerance_action"] == FP16_TOLERANCE
    assert manifest.parity["obs_source"].startswith("recorded")
    with np.load(out / "parity.npz") as data:
        np.testing.assert_array_equal(data["obs"], recorded_obs)


def test_parity_failure_raises_and_writes_no_manifest(tmp_path):
    # A last layer 100x too large: fp16 rounding of large cancelling sums is far off the fp32 actor.
    actor = make_actor(seed=3)
    with torch.no_grad():
        actor.net[-1].weight.mul_(100.0)
    actor.save(tmp_path / "actor.pt")
    with pytest.raises(ParityError, match=r"policy\.onnx: onnxruntime fp16 max abs action error .* exceeds tolerance"):
        export_policy(tmp_path / "actor.pt", tmp_path / "out", precision="fp16")
    assert not (tmp_path / "out" / "manifest.json").exists()


# ------------------------------------------------------------------------------ manifest


@pytest.mark.parametrize("which", ["fp32_export", "fp16_export"])
def test_manifest_fields_and_hashes(which, request):
    out, manifest = request.getfixturevalue(which)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest.to_dict()))
    assert on_disk["format"] == MANIFEST_FORMAT
    assert on_disk["spec_version"] == spec.SPEC_VERSION and on_disk["spec"] == json.loads(json.dumps(spec.spec_dict()))
    assert on_disk["precision"] == which[:4]
    assert on_disk["opset"] == OPSET
    assert on_disk["inputs"] == [{"name": "obs", "shape": ["batch", spec.OBS_DIM], "dtype": "float32"}]
    assert [o["name"] for o in on_disk["outputs"]] == ["action", "action_physical"]
    assert on_disk["batch"] == (
        {"min": 1, "opt": 8, "max": 64} if which == "fp32_export" else {"min": 1, "opt": 1, "max": 1}
    )
    for tool in ("torch", "onnx", "onnxruntime", "drive_drail"):
        assert on_disk["versions"][tool]
    assert on_disk["versions"]["onnxruntime"] == ort.__version__
    expected = {"policy.onnx", "parity.npz", "build_engine.env", "build_engine.sh", "BUILD_ON_TARGET.md"}
    assert expected <= set(on_disk["artifacts"])
    for name, digest in on_disk["artifacts"].items():
        assert sha256_file(out / name) == digest, name
    assert on_disk["actor"]["sha256"] == sha256_file(on_disk["actor"]["file"])


# ------------------------------------------------------------------------------ CPU-only path


def test_without_tensorrt_export_says_build_on_target(fp32_export):
    out, manifest = fp32_export
    available, reason = trtb.tensorrt_status()
    if available:  # a GPU machine with TensorRT: the engine must have been built instead
        assert manifest.tensorrt["built"] and (out / "policy.engine").is_file()
        return
    assert manifest.tensorrt["built"] is False
    assert reason in manifest.tensorrt["message"]
    assert "Build it on the target" in manifest.tensorrt["message"]
    assert not (out / "policy.engine").exists()
    lines = summary_lines(manifest, out)
    assert any("NOT built here" in line for line in lines)
    assert any(line.strip().startswith("on the target: trtexec --onnx=") for line in lines)
    doc = (out / "BUILD_ON_TARGET.md").read_text()
    for flag in (
        "--onnx=",
        "--saveEngine=",
        f"--minShapes=obs:1x{spec.OBS_DIM}",
        f"--optShapes=obs:8x{spec.OBS_DIM}",
        f"--maxShapes=obs:64x{spec.OBS_DIM}",
        "--noTF32",
        "--stronglyTyped",
        "--timingCacheFile=",
    ):
        assert flag in doc, flag
    assert reason in doc
    script = out / "build_engine.sh"
    assert script.read_text() == (REPO / "drive_drail" / "deploy" / "build_engine.sh").read_text()
    assert script.stat().st_mode & 0o111


def test_build_engine_false_still_writes_onnx_and_manifest(actor_dir, tmp_path):
    manifest = export_policy(actor_dir, tmp_path, build_engine=False)
    assert (tmp_path / "policy.onnx").is_file() and (tmp_path / "manifest.json").is_file()
    assert not manifest.tensorrt["built"] and "build_engine=False" in manifest.tensorrt["message"]
    assert "--noTF32" in manifest.tensorrt["trtexec"]


# ------------------------------------------------------------------------------ runtime


def test_runtime_backends_share_the_act_interface(fp32_export, fp16_export, actor_dir):
    actor = DeterministicActor.load(actor_dir / "actor.pt")
    obs = np.random.default_rng(1).standard_normal((5, spec.OBS_DIM)).astype(np.float32)
    for path, tol in (
        (fp32_export[0], FP32_TOLERANCE),
        (fp32_export[0] / "policy.onnx", FP32_TOLERANCE),
        (fp16_export[0], FP16_TOLERANCE),
        (actor_dir, 0.0),
        (actor_dir / "actor.pt", 0.0),
    ):
        policy = load_policy(path)
        batch, single = policy.act(obs), policy.act(obs[2])
        assert batch.shape == (5, 2) and single.shape == (2,)
        np.testing.assert_allclose(batch, actor.act(obs), rtol=0, atol=tol)
        np.testing.assert_allclose(single, batch[2], rtol=0, atol=1e-6)
    assert load_policy(fp32_export[0]).backend == "onnxruntime"
    assert load_policy(actor_dir).backend == "torch"
    with pytest.raises(ValueError, match=r"obs shape \(3,\): expected"):
        load_policy(fp32_export[0]).act(np.zeros(3))


@pytest.fixture
def export_copy(fp32_export, tmp_path) -> Path:
    dst = tmp_path / "export"
    shutil.copytree(fp32_export[0], dst)
    return dst


def test_runtime_refuses_tampered_onnx(export_copy):
    onnx_path = export_copy / "policy.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[-100] ^= 0x01  # one bit in a weight
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"policy\.onnx: sha256 .* does not match field 'artifacts\.policy\.onnx'"):
        load_policy(export_copy)


def _edit_manifest(export_dir: Path, **fields) -> None:
    path = export_dir / "manifest.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_runtime_refuses_wrong_spec_version(export_copy):
    _edit_manifest(export_copy, spec_version="0.9")
    with pytest.raises(ManifestError, match=r"manifest\.json: field 'spec_version' is '0\.9'"):
        load_policy(export_copy)


def test_runtime_refuses_unknown_manifest_format(export_copy):
    _edit_manifest(export_copy, format="drive_drail.deploy.manifest/0")
    with pytest.raises(ManifestError, match=r"field 'format'"):
        load_policy(export_copy / "policy.onnx")


def test_runtime_refuses_missing_manifest_and_engine_not_built(export_copy):
    if not load_policy(export_copy).manifest.tensorrt["built"]:
        with pytest.raises(ManifestError, match=r"field 'tensorrt\.built' is false"):
            load_policy(export_copy, backend="tensorrt")
    (export_copy / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json: missing"):
        load_policy(export_copy)


@pytest.mark.parametrize("tool, version, needs", [
    ("onnxruntime", "99.0.0", "at least 99.0"),  # exported (and parity-checked) on a newer runtime
    ("drive_drail", "7.3.0", "the same major.minor"),
    ("onnx", "0.1", "the same major"),
])
def test_runtime_refuses_tool_versions_outside_the_policy(export_copy, tool, version, needs):
    versions = json.loads((export_copy / "manifest.json").read_text())["versions"]
    _edit_manifest(export_copy, versions={**versions, tool: version})
    with pytest.raises(ManifestError, match=rf"field 'versions\.{tool}' is '{re.escape(version)}'.*needs {needs}"):
        load_policy(export_copy)


def test_runtime_accepts_an_export_from_an_older_onnxruntime(export_copy):
    versions = json.loads((export_copy / "manifest.json").read_text())["versions"]
    _edit_manifest(export_copy, versions={**versions, "onnxruntime": "1.0.0"})
    load_policy(export_copy).act(np.zeros(spec.OBS_DIM, np.float32))


@pytest.mark.parametrize("field, value, kind", [("inputs", 5, "array"), ("opset", "18", "integer"), ("versions", [], "object")])
def test_runtime_names_a_manifest_field_of_the_wrong_type(export_copy, field, value, kind):
    _edit_manifest(export_copy, **{field: value})
    with pytest.raises(ManifestError, match=rf"field '{field}' must be a JSON {kind}"):
        load_policy(export_copy)


def test_signed_export_loads_with_its_key_and_a_swapped_artifact_is_refused(actor_dir, fp32_export, fp16_export, tmp_path, monkeypatch):
    """The sha256 list is rewritten along with a swapped ONNX; only the signature catches it."""
    signed = tmp_path / "signed"
    export_policy(actor_dir, signed, signing_key=b"vehicle-fleet-key")
    assert (signed / "manifest.sig").is_file()
    load_policy(signed, signing_key=b"vehicle-fleet-key").act(np.zeros(spec.OBS_DIM, np.float32))
    with pytest.raises(ManifestError, match=r"manifest\.sig: the signature does not match"):
        load_policy(signed, signing_key=b"another-key")

    # Swap in another valid ONNX and rewrite its hash into the manifest, as a tamperer would.
    shutil.copy(fp16_export[0] / "policy.onnx", signed / "policy.onnx")  # another valid graph
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["artifacts"]["policy.onnx"] = sha256_file(signed / "policy.onnx")
    (signed / "manifest.json").write_text(json.dumps(manifest))
    load_policy(signed)  # without a key the hashes agree, and it loads: corruption is caught, not tampering
    monkeypatch.setenv("DRIVE_DRAIL_SIGNING_KEY", "vehicle-fleet-key")
    with pytest.raises(ManifestError, match=r"manifest\.sig: the signature does not match"):
        load_policy(signed)
    with pytest.raises(ManifestError, match=r"manifest\.sig: missing"):
        load_policy(fp32_export[0])  # an unsigned export, with a key set
    with pytest.raises(ManifestError, match=r"carries no signature"):
        load_policy(actor_dir)


# ------------------------------------------------------------------------------ argument errors


def test_argument_errors_are_one_line(actor_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="has no actor.pt"):
        resolve_actor(tmp_path)
    with pytest.raises(ValueError, match=r"batch '8:4:64'"):
        export_policy(actor_dir, tmp_path / "x", batch="8:4:64")
    with pytest.raises(ValueError, match=r"precision 'int8'"):
        export_policy(actor_dir, tmp_path / "x", precision="int8")
    bad = np.zeros((10, spec.OBS_DIM), np.float32)
    bad[4, 3] = np.nan
    with pytest.raises(ValueError, match=r"parity_obs: row 4 has a non-finite value"):
        export_policy(actor_dir, tmp_path / "x", parity_obs=bad)
    with pytest.raises(ValueError, match=r"parity_obs: shape \(10, 3\)"):
        export_policy(actor_dir, tmp_path / "x", parity_obs=np.zeros((10, 3)))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("batch", ["8:4:x", "0", "8:4:64", "1:2"])
def test_export_cli_refuses_a_bad_batch_range_in_one_line(actor_dir, tmp_path, batch):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "drive_drail.cli", "export", str(actor_dir), "-o", str(tmp_path / "x"), "--batch", batch],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"drive-drail export: error: batch '{batch}': expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX"
    assert not (tmp_path / "x").exists()


def test_export_shows_its_stages_on_a_terminal_and_is_quiet_when_asked(actor_dir, tmp_path):
    import subprocess
    import sys

    from terminal import stderr_on_a_terminal

    rc, text = stderr_on_a_terminal([sys.executable, "-m", "drive_drail.cli", "export", str(actor_dir), "-o", str(tmp_path / "x")])
    assert rc == 0 and "4/4" in text and "parity (onnxruntime)" in text and "stage" in text, text
    quiet = subprocess.run([sys.executable, "-m", "drive_drail.cli", "export", str(actor_dir), "-o", str(tmp_path / "y"), "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "stage" not in quiet.stderr and (tmp_path / "y" / "manifest.json").exists()
