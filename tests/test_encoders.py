"""The neighbour set encoder: what it ignores, what it keeps, its normaliser, and its export."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from drive_drail import spec
from drive_drail.deploy.onnx_export import export_onnx
from drive_drail.models.encoders import EGO_DIM, SLOT_DIM, NeighbourSetEncoder
from drive_drail.models.policy import ActorConfig, DeterministicActor
from drive_drail.train.config import TrainConfig
from drive_drail.train.demos import slot_shared_normaliser

K = spec.K_NEIGHBOURS


def spec_observations(n: int, seed: int = 0) -> np.ndarray:
    """``[n, OBS_DIM]`` spec-scaled observations: random features, slot k occupied with probability 0.8 / (k + 1),
    an absent slot all zeros as spec.observe writes it."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, spec.OBS_DIM)).astype(np.float32)
    slots = obs[:, EGO_DIM:].reshape(n, K, SLOT_DIM)
    present = rng.random((n, K)) < 0.8 / (np.arange(K) + 1)
    slots *= present[:, :, None]
    slots[:, :, 0] = present
    return obs


@pytest.fixture(scope="module")
def obs():
    return spec_observations(400)


@pytest.fixture(scope="module")
def set_actor(obs):
    torch.manual_seed(0)
    mean, std = slot_shared_normaliser(obs, 0.5)
    return DeterministicActor(ActorConfig(hidden_sizes=(32, 32), encoder="set"), mean, std).eval()


def slots_of(obs: np.ndarray) -> np.ndarray:
    return obs[:, EGO_DIM:].reshape(len(obs), K, SLOT_DIM)


def test_slot_shared_normaliser_keeps_present_raw_and_shares_slot_statistics(obs):
    mean, std = slot_shared_normaliser(obs, 0.5)
    m, s = slots_of(mean[None])[0], slots_of(std[None])[0]
    np.testing.assert_array_equal(m[:, 0], 0.0)
    np.testing.assert_array_equal(s[:, 0], 1.0)
    for k in range(1, K):  # every slot the same statistics, the rarely filled last slots too
        np.testing.assert_array_equal(m[k], m[0])
        np.testing.assert_array_equal(s[k], s[0])
    occupied = slots_of(obs).reshape(-1, SLOT_DIM)
    occupied = occupied[occupied[:, 0] > 0.5, 1:]
    np.testing.assert_allclose(m[0, 1:], occupied.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s[0, 1:], np.maximum(occupied.std(axis=0), 0.5), rtol=1e-5)
    np.testing.assert_allclose(mean[:EGO_DIM], obs[:, :EGO_DIM].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_set_actor_ignores_slot_order_and_absent_slots(set_actor, obs):
    base = set_actor.act(obs)
    reversed_slots = obs.copy()
    reversed_slots[:, EGO_DIM:] = slots_of(obs)[:, ::-1].reshape(len(obs), -1)
    np.testing.assert_allclose(set_actor.act(reversed_slots), base, atol=1e-6)
    junk = obs.copy()
    s = slots_of(junk)  # a view
    absent = s[:, :, 0] < 0.5
    s[..., 1:][absent] = 7.0  # whatever an absent slot holds is masked out
    np.testing.assert_allclose(set_actor.act(junk), base, atol=1e-6)
    assert absent.any()


def test_a_vehicle_in_the_last_slot_is_encoded_as_in_the_first():
    """Denser traffic than in training fills the last slots: the set encoder reads them with the same network."""
    torch.manual_seed(1)
    enc = NeighbourSetEncoder((16, 16))
    one = np.zeros((1, spec.OBS_DIM), np.float32)
    vehicle = np.array([1.0, 0.4, -0.3, 0.2, 0.0, 1.0, 0.0, 0.5], np.float32)
    first, last = one.copy(), one.copy()
    slots_of(first)[0, 0] = vehicle
    slots_of(last)[0, K - 1] = vehicle
    with torch.no_grad():
        f0, f5, none = (enc(torch.as_tensor(x)) for x in (first, last, one))
    torch.testing.assert_close(f0, f5)
    assert torch.all(none[:, EGO_DIM:] == 0)
    assert torch.any(f0[:, EGO_DIM:] != 0)


def test_set_actor_refuses_a_normaliser_that_scales_present(obs):
    mean, std = slot_shared_normaliser(obs, 0.5)
    std[EGO_DIM] = 2.0
    with pytest.raises(ValueError, match="present"):
        DeterministicActor(ActorConfig(encoder="set"), mean, std)


def test_set_actor_file_round_trip_and_old_files_load_as_flat(set_actor, obs, tmp_path):
    set_actor.save(tmp_path / "set.pt")
    loaded = DeterministicActor.load(tmp_path / "set.pt")
    assert loaded.config.encoder == "set"
    np.testing.assert_array_equal(loaded.act(obs), set_actor.act(obs))
    flat = DeterministicActor(ActorConfig(hidden_sizes=(8,)))
    payload = {"kind": "drive_drail.DeterministicActor", "state_dict": flat.state_dict(),
               "config": {k: v for k, v in vars(flat.config).items() if k not in ("encoder", "set_hidden")}}
    torch.save(payload, tmp_path / "old.pt")  # an actor written before encoders existed
    old = DeterministicActor.load(tmp_path / "old.pt")
    assert old.config.encoder == "flat"
    np.testing.assert_array_equal(old.act(obs), flat.act(obs))


def test_saved_run_configs_without_an_encoder_are_flat():
    assert TrainConfig().policy.encoder == "set"
    assert TrainConfig.from_dict({"scenario": "stop"}).policy.encoder == "flat"


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-5), ("fp16", 5e-3)])
def test_set_actor_exports_to_onnx_and_runs_in_onnxruntime(set_actor, obs, tmp_path, precision, atol):
    path = tmp_path / f"policy_{precision}.onnx"
    export_onnx(set_actor, path, precision)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    action, _ = session.run(None, {session.get_inputs()[0].name: obs})
    np.testing.assert_allclose(action, set_actor.act(obs), atol=atol)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"ReduceMax", "Where", "Relu"} <= ops
