"""highD reader: image frame -> spec frame, lanes from the markings, file resolution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drive_drail.logs.base import TRACK_COLUMNS
from drive_drail.logs.highd import HighDReader, lane_from_markings
from drive_drail.logs.registry import detect_format, read_log
from log_factories import (
    HIGHD_LOWER_MARKINGS,
    HIGHD_UPPER_MARKINGS,
    HighDVehicle,
    highd_frames,
    highd_slot_centre,
    make_highd,
    make_ngsim,
    write_highd,
)


@pytest.fixture
def files(tmp_path):
    return make_highd(tmp_path / "highd")


@pytest.fixture
def tracks(files):
    return HighDReader().read(files.tracks).tracks


def _track(tracks: pd.DataFrame, track_id: int) -> pd.DataFrame:
    return tracks[tracks.track_id == track_id].reset_index(drop=True)


def test_any_of_the_three_files_or_the_prefix_reads_the_same_recording(files):
    reader = HighDReader()
    ref = reader.read(files.tracks).tracks
    for p in (files.tracks_meta, files.recording_meta, files.prefix):
        assert reader.sniff(p)
        pd.testing.assert_frame_equal(reader.read(p).tracks, ref)
    assert detect_format(files.prefix) == "highd"
    assert read_log(files.recording_meta).format == "highd"


def test_record_format_and_metadata(files, tracks):
    log = HighDReader().read(files.prefix)
    assert list(log.tracks.columns) == list(TRACK_COLUMNS)
    assert {c: str(t) for c, t in log.tracks.dtypes.items()} == TRACK_COLUMNS
    assert log.frame_rate_hz == 25.0 and not log.heading_known
    assert len(tracks) == sum(v.n_frames for v in files.vehicles)
    assert tracks.heading_rad.isna().all()
    assert tracks.expert.all() and not tracks.on_ramp.any()
    assert (tracks.lane_heading_rad == 0).all()
    # frames kept as logged (highD starts at 1); t = frame / frameRate
    v5 = _track(tracks, 5)
    assert v5.frame.iloc[0] == 21 and tracks.frame.min() == 1
    np.testing.assert_allclose(tracks.t_s, tracks.frame / 25.0)
    # one scene per carriageway: 10 * recording id + drivingDirection
    assert set(_track(tracks, 4).scene_id) == {11} and set(_track(tracks, 1).scene_id) == {12}
    assert log.extra["scene_direction"] == {11: 1, 12: 2}


def test_lower_carriageway_mirrors_y_and_uses_box_centre(files, tracks):
    v = files.vehicles[0]  # id 1, direction 2, image slot 1
    t = _track(tracks, 1)
    # centre = corner + (width, height) / 2; direction 2 keeps x and negates y
    np.testing.assert_allclose(t.x_m.iloc[0], v.x0 + 0.5 * v.length, atol=1e-3)
    np.testing.assert_allclose(t.y_m, -highd_slot_centre(2, 1), atol=1e-3)
    np.testing.assert_allclose(t.vx_mps, 30.0)
    assert np.all(np.diff(t.x_m) > 0)
    np.testing.assert_allclose(t.length_m, 4.5)
    np.testing.assert_allclose(t.width_m, 1.8)
    truck = _track(tracks, 3)
    np.testing.assert_allclose(truck.length_m, 12.0)  # highD 'width' is the extent along x
    np.testing.assert_allclose(truck.width_m, 2.5)


def test_upper_carriageway_is_rotated_so_it_drives_plus_x(files, tracks):
    v = files.vehicles[3]  # id 4, direction 1, xVelocity -32 (towards image -x)
    t = _track(tracks, 4)
    assert (t.vx_mps > 0).all()
    np.testing.assert_allclose(t.vx_mps, 32.0)
    assert np.all(np.diff(t.x_m) > 0)  # moves forward in the spec frame
    np.testing.assert_allclose(t.x_m.iloc[0], -(v.x0 + 0.5 * v.length), atol=1e-3)
    np.testing.assert_allclose(t.y_m, highd_slot_centre(1, 2), atol=1e-3)


def test_lane_indices_count_from_the_median(tracks):
    # lower carriageway (drives +x): slot 0 (top, next to the median) is the leftmost lane
    assert set(_track(tracks, 3).lane_index) == {0}
    assert set(_track(tracks, 1).lane_index) == {1}
    # upper carriageway (drives -x): slot 2 (bottom, next to the median) is the leftmost lane
    assert set(_track(tracks, 4).lane_index) == {0}
    assert set(_track(tracks, 5).lane_index) == {2}
    assert set(tracks.lane_count) == {3}
    np.testing.assert_allclose(_track(tracks, 1).lane_offset_m, 0.0, atol=1e-3)


def test_lane_change_to_the_left(tracks):
    t = _track(tracks, 2)  # lower carriageway, image slot 2 -> 1: moves up in the image = left
    lanes = t.lane_index.to_numpy()
    assert lanes[0] == 2 and lanes[-1] == 1
    switch = np.flatnonzero(np.diff(lanes))
    assert switch.size == 1  # exactly one lane change
    k = int(switch[0])
    # just before crossing the marking it is left of its old lane centre; just after, right of the new one
    assert t.lane_offset_m[k] > 1.5 and t.lane_offset_m[k + 1] < -1.5
    assert t.y_m[k] < -HIGHD_LOWER_MARKINGS[2] <= t.y_m[k + 1]  # the switch happens at the marking
    assert (t.vy_mps[(t.t_s > 1.5) & (t.t_s < 2.5)] > 0).all()  # leftward lateral speed


@pytest.mark.parametrize("direction,vid", [(2, 1), (1, 4)])
def test_offset_sign_is_positive_to_the_left(tmp_path, direction, vid):
    tr, meta, rec = highd_frames()
    # image y grows downwards: +0.5 m is to the right for direction 2, to the left for direction 1
    tr.loc[tr.id == vid, "y"] += 0.5
    files = write_highd(tmp_path, (tr, meta, rec))
    t = _track(HighDReader().read(files.tracks).tracks, vid)
    expected = -0.5 if direction == 2 else 0.5
    np.testing.assert_allclose(t.lane_offset_m, expected, atol=1e-3)


def test_lane_from_markings_edges():
    markings = -np.asarray(HIGHD_LOWER_MARKINGS)  # direction 2 in spec y
    y = np.array([-24.5, -27.0, -30.0, -35.0, -40.0, -20.0])
    idx, off, n = lane_from_markings(y, markings)
    assert n == 3
    np.testing.assert_array_equal(idx, [0, 0, 1, 2, 2, 0])  # outside the road -> nearest edge lane
    np.testing.assert_allclose(off[0], -24.5 + 0.5 * (24.0 + 27.84))


def test_column_order_and_extra_columns_do_not_matter(tmp_path, tracks):
    tr, meta, rec = highd_frames()
    tr = tr[list(reversed(tr.columns))].assign(extraColumn=7)
    files = write_highd(tmp_path, (tr, meta, rec))
    pd.testing.assert_frame_equal(HighDReader().read(files.tracks).tracks, tracks)


def test_two_recordings_have_distinct_scene_ids(tmp_path):
    a = HighDReader().read(make_highd(tmp_path, prefix="01", recording_id=1).prefix).tracks
    b = HighDReader().read(make_highd(tmp_path, prefix="02", recording_id=2).prefix).tracks
    assert set(a.scene_id).isdisjoint(set(b.scene_id))


def test_sniff_rejects_other_formats(tmp_path):
    ngsim = make_ngsim(tmp_path / "trajectories.csv")
    assert not HighDReader().sniff(ngsim)
    assert not HighDReader().sniff(tmp_path / "nothing_here")


def test_custom_vehicle_in_upper_outer_lane(tmp_path):
    v = HighDVehicle(9, 1, slot=0, x0=300.0, x_velocity=-20.0, n_frames=30)
    t = HighDReader().read(make_highd(tmp_path, vehicles=[v]).prefix).tracks
    assert set(t.lane_index) == {2}
    np.testing.assert_allclose(t.y_m, 0.5 * (HIGHD_UPPER_MARKINGS[0] + HIGHD_UPPER_MARKINGS[1]), atol=1e-3)


def test_positions_in_feet_with_speeds_in_metres_are_refused(tmp_path):
    """A recording whose positions were written in feet while its speeds stayed in m/s moves 3.28x
    too fast for its own speeds: the reader compares the two over 1 s windows and names the speed column."""
    from drive_drail.logs.base import LogError

    files = make_highd(tmp_path / "hd")
    tracks = pd.read_csv(files.tracks)
    for c in ("x", "y", "width", "height"):
        tracks[c] = tracks[c] * 3.28084
    tracks.to_csv(files.tracks, index=False)
    with pytest.raises(LogError, match=r"xVelocity is 0\.30 x the speed implied by x") as err:
        read_log(files.tracks)
    assert err.value.column == "xVelocity" and err.value.row is not None
