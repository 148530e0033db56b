"""ScenarioNet files as current tools write them: MetaDrive's own exporter and ``save_dataset``.

Such files carry ``collections.defaultdict`` (MetaDrive's summary code puts ``defaultdict(int)``
into ``metadata.number_summary``) and, under numpy 2, ``numpy._core`` globals. The reader must
load them through the safe unpickler and convert them to pairs; nothing else is admitted.
"""

from __future__ import annotations

import io
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metadrive")

from drive_drail.errors import LogError  # noqa: E402
from drive_drail.logs.registry import read_log  # noqa: E402
from drive_drail.logs.safe_pickle import safe_loads  # noqa: E402
from drive_drail.pairs.convert import ConvertConfig, convert  # noqa: E402
from drive_drail.sim.metadrive.assets import state_only_engine  # noqa: E402
from drive_drail.sim.metadrive.config import NullObservation  # noqa: E402


def export_dataset(folder: Path, n_scenarios: int = 2, steps: int = 60) -> Path:
    """Drive MetaDrive's ego at a gentle throttle on two procedural maps and write the episodes with
    ``export_scenarios`` + ``save_dataset``, as ScenarioNet's converters do (10 Hz)."""
    from metadrive.envs import MetaDriveEnv
    from metadrive.scenario.utils import save_dataset

    config = {"use_render": False, "image_observation": False, "agent_observation": NullObservation, "num_scenarios": n_scenarios,
              "start_seed": 0, "map": "SS", "traffic_density": 0.15, "log_level": 50,
              "vehicle_config": {"lidar": {"num_lasers": 0}, "side_detector": {"num_lasers": 0}, "lane_line_detector": {"num_lasers": 0}}}
    with state_only_engine():
        env = MetaDriveEnv(config)
        try:
            scenarios, _done_info = env.export_scenarios(lambda obs: [0.0, 0.4], scenario_index=list(range(n_scenarios)), max_episode_length=steps)
        finally:
            env.close()
    save_dataset(list(scenarios.values()), dataset_name="metadrive_export", dataset_version="v0", dataset_dir=str(folder))
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_dataset(tmp_path_factory.mktemp("export") / "md")


def pickled_globals(path: Path) -> set[str]:
    """``module.name`` of every global a (trusted, test-made) pickle file loads."""
    found: set[str] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            found.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recording(io.BytesIO(path.read_bytes())).load()
    return found


@pytest.mark.slow
def test_exported_files_carry_the_globals_real_files_carry(exported):
    scenario_files = sorted(p for p in exported.glob("*.pkl") if not p.name.startswith(("dataset_", "dataset")))
    assert len(scenario_files) == 2
    names = set().union(*(pickled_globals(p) for p in scenario_files))
    assert "collections.defaultdict" in names
    if int(np.__version__.split(".")[0]) >= 2:
        assert any(n.startswith("numpy._core.") for n in names)


@pytest.mark.slow
def test_exported_dataset_reads_and_converts_to_pairs(exported):
    log = read_log(str(exported))
    tracks = log.tracks
    assert tracks.scene_id.nunique() == 2
    assert log.frame_rate_hz == pytest.approx(10.0)
    sdc = log.extra["sdc_track_ids"]  # scene -> the track id of the self-driving car (MetaDrive's ego)
    for scene, ego in tracks.groupby("scene_id"):
        ego = ego[ego.track_id.isin(sdc[scene])].sort_values("frame")
        assert np.hypot(*(ego[["x_m", "y_m"]].iloc[-1] - ego[["x_m", "y_m"]].iloc[0])) > 5.0  # the ego drove
    pairs = convert(log, ConvertConfig(action_hz=5.0, egos="all"))
    assert len(pairs) > 0
    assert np.isfinite(pairs[["accel_mps2", "steer_rad"]].to_numpy()).all()


def test_a_defaultdict_loads_as_a_plain_dict_with_its_items():
    back = safe_loads(pickle.dumps({"number_summary": defaultdict(int, {"object_types": 2})}))
    assert type(back["number_summary"]) is dict and back["number_summary"] == {"object_types": 2}


@pytest.mark.parametrize("factory", [np.dtype, np.ndarray])
def test_a_defaultdict_whose_factory_is_not_a_builtin_type_is_refused(factory):
    with pytest.raises(LogError, match="forbidden defaultdict factory") as err:
        safe_loads(pickle.dumps(defaultdict(factory)), path="s.pkl")
    assert "\n" not in str(err.value) and "s.pkl" in str(err.value)


def test_a_pickled_scenario_description_loads_as_a_dict():
    from metadrive.scenario.scenario_description import ScenarioDescription

    sd = ScenarioDescription({"id": "x", "length": 2, "metadata": {"ts": np.arange(2) * 0.1}})
    back = safe_loads(pickle.dumps(sd))
    assert type(back) is dict and back["id"] == "x" and np.allclose(back["metadata"]["ts"], [0.0, 0.1])


@pytest.mark.slow
def test_an_exported_metadrive_on_ramp_merge_converts_to_merge_pairs(tmp_path):
    """The ego of the metadrive_merge scenario, driven by MetaDrive's IDM from the on-ramp into the road,
    exported as ScenarioNet files: the acceleration lane (it ends beside the road) and the ramp road
    (it leads only onto it) are ramps by their geometry, so the sdc's move onto the road is a merge
    and not a lane change (the exporter's lane types and entry/exit lists do not say so)."""
    from metadrive.envs import MetaDriveEnv
    from metadrive.policy.idm_policy import IDMPolicy
    from metadrive.scenario.utils import save_dataset

    from drive_drail.scenario import load_scenario
    from drive_drail.sim.metadrive.config import metadrive_config

    config, _adapter = metadrive_config(load_scenario("metadrive_merge"), "train")
    config.update(agent_policy=IDMPolicy, start_seed=0, num_scenarios=1)
    with state_only_engine():
        env = MetaDriveEnv(config)
        try:
            scenarios, done = env.export_scenarios(lambda obs: [0.0, 0.0], scenario_index=[0], max_episode_length=300)
        finally:
            env.close()
    assert done[0]["arrive_dest"]
    save_dataset(list(scenarios.values()), dataset_name="md_merge", dataset_version="v0", dataset_dir=str(tmp_path / "md"))
    log = read_log(str(tmp_path / "md"))
    reasons = log.extra["ramp_lanes"][0]
    assert "ends" in reasons.values() and "feeds" in reasons.values()
    pairs = convert(log, ConvertConfig(egos="moving"))
    sdc = pairs[pairs["track_id"].isin(log.extra["sdc_track_ids"][0])]
    assert sdc["is_merge"].sum() >= 10 and sdc["is_lane_change"].sum() == 0
