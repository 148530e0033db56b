"""NGSIM reader: feet -> metres, spec frame, lane layouts of US-101 / I-80, track pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from drive_drail.logs.base import TRACK_COLUMNS
from drive_drail.logs.ngsim import SEGMENT_ID_STRIDE, NgsimReader
from drive_drail.logs.registry import read_log
from log_factories import FT, NgsimVehicle, make_ngsim, ngsim_default_vehicles, ngsim_frame


@pytest.fixture
def path(tmp_path):
    return make_ngsim(tmp_path / "trajectories.csv")


@pytest.fixture
def raw(path):
    return pd.read_csv(path)


@pytest.fixture
def tracks(path):
    return NgsimReader().read(path).tracks


def _track(tracks: pd.DataFrame, track_id: int) -> pd.DataFrame:
    return tracks[tracks.track_id == track_id].reset_index(drop=True)


def test_record_format_and_flags(path, tracks):
    log = read_log(path)
    assert log.format == "ngsim" and log.frame_rate_hz == 10.0
    assert not log.heading_known and log.smooth_positions
    assert list(log.tracks.columns) == list(TRACK_COLUMNS)
    assert tracks.heading_rad.isna().all() and tracks.expert.all()
    np.testing.assert_allclose(tracks.t_s, tracks.frame * 0.1)
    assert set(tracks.scene_id) == {1}  # Location us-101


def test_feet_become_metres_in_the_spec_frame(raw, tracks):
    for vid in raw.Vehicle_ID.unique():
        r = raw[raw.Vehicle_ID == vid].sort_values("Frame_ID")
        t = _track(tracks, int(vid))
        np.testing.assert_array_equal(t.frame, r.Frame_ID)
        np.testing.assert_allclose(t.x_m, (r.Local_Y - r.v_Length / 2) * FT)  # longitudinal, the centre (Local_Y is the front)
        np.testing.assert_allclose(t.y_m, -r.Local_X * FT)  # Local_X grows to the right; y is left
        np.testing.assert_allclose(t.vx_mps, r.v_Vel * FT)
        np.testing.assert_allclose(t.length_m, r.v_Length * FT)
        np.testing.assert_allclose(t.width_m, r.v_Width * FT)
    np.testing.assert_allclose(_track(tracks, 10).vx_mps, 60.0 * FT)  # 60 ft/s = 18.288 m/s


def test_lanes_and_offsets(tracks):
    assert set(_track(tracks, 10).lane_index) == {0}  # Lane_ID 1 is leftmost
    assert set(_track(tracks, 11).lane_index) == {1}
    assert set(_track(tracks, 13).lane_index) == {2}
    # vehicle 10 drives 1 ft right of its lane centre
    np.testing.assert_allclose(_track(tracks, 10).lane_offset_m, -1.0 * FT, atol=1e-6)
    np.testing.assert_allclose(_track(tracks, 11).lane_offset_m, 0.0, atol=1e-6)


def test_lane_change_to_the_left(tracks):
    t = _track(tracks, 12)  # Lane_ID 3 -> 2
    lanes = t.lane_index.to_numpy()
    assert lanes[0] == 2 and lanes[-1] == 1
    assert np.flatnonzero(np.diff(lanes)).size == 1
    k = int(np.flatnonzero(np.diff(lanes))[0])
    assert t.lane_offset_m[k] > 1.0 and t.lane_offset_m[k + 1] < -1.0
    assert (t.vy_mps[(t.t_s > 12.5) & (t.t_s < 13.5)] > 0).all()  # moving left: y_m grows
    assert np.all(np.abs(_track(tracks, 11).vy_mps) < 1e-9)


def test_us101_auxiliary_lane_is_on_ramp(tracks):
    aux = _track(tracks, 14)  # Lane_ID 6 on US-101: auxiliary lane
    assert aux.on_ramp.all() and set(aux.lane_index) == {5}
    assert set(aux.lane_count) == {6}  # raised so that lane_index < lane_count
    main = tracks[tracks.track_id != 14]
    assert not main.on_ramp.any() and set(main.lane_count) == {5}


def test_i80_layout(tmp_path):
    vehicles = [
        NgsimVehicle(1, lane=6, y0_ft=0.0, speed_ftps=50.0),
        NgsimVehicle(2, lane=7, y0_ft=50.0, speed_ftps=40.0),
    ]
    t = NgsimReader().read(make_ngsim(tmp_path / "x.csv", vehicles, location="i-80")).tracks
    assert not _track(t, 1).on_ramp.any() and set(_track(t, 1).lane_count) == {6}  # lane 6 is main on I-80
    assert _track(t, 2).on_ramp.all()
    assert set(t.scene_id) == {2}


def test_layout_without_location_column(tmp_path):
    no_loc = make_ngsim(tmp_path / "trajectories-0750am-0805am.csv", location=None)
    t = NgsimReader().read(no_loc).tracks
    # max Lane_ID 6 and no hint: every lane counts as a main lane
    assert not t.on_ramp.any() and set(t.lane_count) == {6} and set(t.scene_id) == {0}
    # the reader argument or the file name pick the US-101 layout
    forced = NgsimReader(location="US-101").read(no_loc).tracks
    assert _track(forced, 14).on_ramp.all() and set(_track(forced, 10).lane_count) == {5}
    named = make_ngsim(tmp_path / "us-101-trajectories.csv", location=None)
    assert _track(NgsimReader().read(named).tracks, 14).on_ramp.all()


def test_unordered_rows_give_the_same_tracks(tmp_path, tracks):
    shuffled = ngsim_frame().sample(frac=1.0, random_state=0)
    t = NgsimReader().read(_write(shuffled, tmp_path / "s.csv")).tracks
    pd.testing.assert_frame_equal(t, tracks)


def _write(df: pd.DataFrame, path):
    df.to_csv(path, index=False)
    return path


def test_reused_vehicle_id_far_apart_in_time_becomes_two_tracks(tmp_path):
    vehicles = ngsim_default_vehicles()[:2] + [NgsimVehicle(10, lane=2, y0_ft=0.0, speed_ftps=40.0, first_frame=5000)]
    t = NgsimReader().read(make_ngsim(tmp_path / "r.csv", vehicles)).tracks
    assert set(t.track_id) == {10, 11, 10 + SEGMENT_ID_STRIDE}
    later = _track(t, 10 + SEGMENT_ID_STRIDE)
    assert later.frame.iloc[0] == 5000 and np.all(np.diff(later.frame) == 1)
    assert set(later.lane_index) == {1}


def test_data_gov_column_names_and_two_sites(tmp_path):
    a = ngsim_frame(location="us-101")
    b = ngsim_frame(location="i-80")
    both = pd.concat([a, b], ignore_index=True).rename(columns={"v_Length": "v_length", "Local_X": "local_x"})
    both["O_Zone"] = 0
    t = NgsimReader().read(_write(both, tmp_path / "ngsim.csv")).tracks
    assert set(t.scene_id) == {1, 2}  # the same Vehicle_ID at two sites is no clash
    assert len(t) == len(a) + len(b)
    assert t[t.scene_id == 1].on_ramp.any() and not t[t.scene_id == 2].on_ramp.any()


def test_sniff(path, tmp_path):
    assert NgsimReader().sniff(path)
    other = tmp_path / "o.csv"
    other.write_text("a,b\n1,2\n")
    assert not NgsimReader().sniff(other)


def test_byte_order_mark_and_spaces_in_the_header(tmp_path, tracks):
    df = ngsim_frame()
    df.columns = [f" {c}" if c == "Local_X" else c for c in df.columns]
    p = tmp_path / "bom.csv"
    df.to_csv(p, index=False, encoding="utf-8-sig")
    pd.testing.assert_frame_equal(NgsimReader().read(p).tracks, tracks)


def test_integer_columns_may_be_written_as_floats(tmp_path, tracks):
    df = ngsim_frame().astype({"Vehicle_ID": float, "Frame_ID": float, "Lane_ID": float})
    pd.testing.assert_frame_equal(NgsimReader().read(_write(df, tmp_path / "f.csv")).tracks, tracks)


def test_positions_are_the_vehicle_centre_not_its_front(raw, tracks):
    """FHWA: Local_Y is the front centre; a 40 ft truck's centre lies 20 ft behind it."""
    truck = raw[raw.Vehicle_ID == 13].sort_values("Frame_ID")
    np.testing.assert_allclose(_track(tracks, 13).x_m, (truck.Local_Y - 20.0) * FT)


def _fhwa_txt(path, frame: pd.DataFrame):
    """FHWA's original layout: no header, 18 columns separated by runs of spaces."""
    body = frame[[c for c in frame.columns if c != "Location"]].to_string(header=False, index=False)
    path.write_text("\n".join("  " + line.strip() for line in body.splitlines()) + "\n")
    return path


def test_the_headerless_whitespace_files_fhwa_ships_read_like_the_csv(tmp_path, path, tracks):
    frame = ngsim_frame(location=None)
    txt = _fhwa_txt(tmp_path / "trajectories-0750am-0805am.txt", frame)
    assert read_log(txt).format == "ngsim"  # recognised without a header
    log = NgsimReader(location="us-101").read(txt)
    csv_log = NgsimReader(location="us-101").read(make_ngsim(tmp_path / "plain.csv", location=None))
    pd.testing.assert_frame_equal(log.tracks.drop(columns="scene_id"), csv_log.tracks.drop(columns="scene_id"))


@pytest.mark.parametrize("damage, says", [
    (lambda lines: lines[:3] + [lines[3].rsplit(None, 4)[0]] + lines[4:], "row 4"),
    (lambda lines: lines[:5] + [lines[5].replace(lines[5].split()[5], "12.3ft", 1)] + lines[6:], "column 'Local_Y', row 6: value '12.3ft' is not a number"),
])
def test_a_damaged_headerless_file_names_the_row(tmp_path, damage, says):
    txt = _fhwa_txt(tmp_path / "trajectories.txt", ngsim_frame(location=None))
    lines = txt.read_text().splitlines()
    txt.write_text("\n".join(damage(lines)) + "\n")
    with pytest.raises(Exception) as err:
        NgsimReader().read(txt)
    assert says in str(err.value) and str(txt) in str(err.value)


@pytest.mark.parametrize("form", ["csv", "fhwa_txt"])
def test_motorcycles_are_traffic_never_experts_and_classes_are_counted(tmp_path, form):
    frame = ngsim_frame(location=None)
    frame.loc[frame.Vehicle_ID == 11, "v_Class"] = 1  # a motorcycle
    if form == "csv":
        _write(frame, tmp_path / "t.csv")
        log = NgsimReader(location="us-101").read(tmp_path / "t.csv")
    else:
        log = NgsimReader(location="us-101").read(_fhwa_txt(tmp_path / "t.txt", frame))
    expert = log.tracks.groupby("track_id").expert.all()
    assert not expert[11] and expert.drop(11).all()
    assert log.extra["vehicle_classes"] == {"motorcycle": 1, "auto": 3, "truck": 1}  # vehicle 13 is a 40 ft truck


def test_an_unknown_vehicle_class_names_the_row(tmp_path):
    frame = ngsim_frame(location=None)
    frame.loc[7, "v_Class"] = 4
    _write(frame, tmp_path / "t.csv")
    with pytest.raises(Exception, match=r"column 'v_Class', row 8: vehicle class 4 is not one of 1 \(motorcycle\)"):
        NgsimReader().read(tmp_path / "t.csv")


def test_a_file_without_v_class_keeps_every_vehicle_as_an_expert(tmp_path):
    _write(ngsim_frame(location=None).drop(columns="v_Class"), tmp_path / "t.csv")
    log = NgsimReader(location="us-101").read(tmp_path / "t.csv")
    assert log.tracks.expert.all() and "vehicle_classes" not in log.extra
