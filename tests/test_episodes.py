"""Expert pairs as episodes: a transitions Parquet file and a real Minari dataset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from drive_drail import spec
from drive_drail.pairs.convert import ConvertConfig, convert
from drive_drail.pairs.episodes import episodes, transitions_table, write_minari
from drive_drail.pairs.storage import read_pairs, write_pairs
from pair_factories import sim_log

META = {"frame_rate_hz": 15.0, "action_hz": 5.0, "format": "simlog", "source_file": "constructed"}


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    log, _ = sim_log()
    return convert(log, ConvertConfig(egos="all"))


def test_consecutive_pairs_of_a_track_are_one_episode_and_next_obs_is_the_next_pair(pairs):
    eps = episodes(pairs, META)
    assert [(e.scene_id, e.track_id) for e in eps] == [(0, 0), (0, 1), (0, 2)]
    for e in eps:
        track = pairs[pairs["track_id"] == e.track_id].sort_values("frame")
        assert len(e.observations) == len(track) and len(e.actions) == len(track) - 1
        np.testing.assert_array_equal(e.observations, track[list(spec.OBS_NAMES)].to_numpy(np.float32))
        np.testing.assert_allclose(spec.action_to_physical(e.actions), track[list(spec.ACTION_NAMES)].to_numpy()[:-1], atol=1e-5)
    table = transitions_table(eps)
    assert len(table) == sum(len(e.actions) for e in eps)
    for _, ep in table.groupby("episode_id"):
        obs, nxt = ep[list(spec.OBS_NAMES)].to_numpy(), ep[[f"next_{n}" for n in spec.OBS_NAMES]].to_numpy()
        np.testing.assert_array_equal(nxt[:-1], obs[1:])  # next_obs is the following transition's obs
        assert ep["truncated"].tolist() == [False] * (len(ep) - 1) + [True]
    assert not table["terminal"].any() and (table["reward"] == 0).all()


def test_a_dropped_pair_splits_the_track_and_a_single_pair_is_no_episode(pairs):
    track0 = pairs[pairs["track_id"] == 0].sort_values("frame")
    gap = pairs.drop(index=track0.index[10])  # as the converter drops an implausible action
    lone = gap.drop(index=track0.index[12:])  # leaves frame 11 alone after the gap
    assert [len(e.observations) for e in episodes(gap, META) if e.track_id == 0] == [10, len(track0) - 11]
    assert [len(e.observations) for e in episodes(lone, META) if e.track_id == 0] == [10]


def test_a_pairs_file_converts_to_a_minari_dataset_that_loads_and_recovers_its_environment(pairs, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    eps = episodes(pairs, META)
    write_minari(eps, "drive-drail/lane_change/test-v0", META, env_id="drive-drail/lane_change-v0", root=tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = minari.load_dataset("drive-drail/lane_change/test-v0")
    assert dataset.total_episodes == 3 and dataset.total_steps == sum(len(e.actions) for e in eps)
    for loaded, e in zip(dataset.iterate_episodes(), eps):
        np.testing.assert_array_equal(loaded.observations, e.observations)
        np.testing.assert_array_equal(loaded.actions, e.actions)
        assert loaded.truncations[-1] and not loaded.terminations.any()
    env = dataset.recover_environment(eval_env=True)  # the spec adapter on real highway-env
    obs, _ = env.reset(seed=0)
    assert obs.shape == (spec.OBS_DIM,) and env.action_space.shape == (spec.ACTION_DIM,)
    env.close()


def test_cli_writes_transitions_and_refuses_an_existing_minari_id_in_one_line(pairs, tmp_path):
    pytest.importorskip("minari")
    src = tmp_path / "pairs.parquet"
    write_pairs(src, pairs, {**META, "output": str(src)})
    run = lambda *a: subprocess.run([sys.executable, "-m", "drive_drail.cli", "episodes", str(src), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    done = run("-o", str(tmp_path / "tr.parquet"))
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(tmp_path / "tr.parquet")) == len(pairs) - 3  # one transition fewer per track
    minari_args = ("--minari", "drive-drail/x/expert-v0", "--minari-root", str(tmp_path / "mn"))
    assert run(*minari_args).returncode == 0
    again = run(*minari_args)
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    neither = run()
    assert neither.returncode == 2 and "-o" in neither.stderr and "Traceback" not in neither.stderr
    pairs_back, _ = read_pairs(src)
    assert len(pairs_back) == len(pairs)  # the input is left as it was
