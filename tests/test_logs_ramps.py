"""On-ramps and lane drops found from lane centre lines (``drive_drail.logs.ramps``).

Maps are ScenarioNet ``map_features`` dicts: lanes with a ``polyline`` and no ``entry_lanes`` /
``exit_lanes`` (nuScenes has none; MetaDrive's exporter gives only road-level ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drive_drail.logs.scenarionet import ScenarioNetReader, build_lane_map
from drive_drail.pairs.convert import ConvertConfig, convert
from log_factories import write_scenarionet

LANE_W = 3.5


def lane(x0: float, x1: float, y: float, step_m: float = 5.0) -> dict:
    """A straight lane along +x from x0 to x1 at lateral position y [m]."""
    xs = np.linspace(x0, x1, max(2, int(round((x1 - x0) / step_m)) + 1))
    return {"type": "LANE_SURFACE_STREET", "polyline": np.stack([xs, np.full_like(xs, y)], axis=1)}


def curve(points: list[tuple[float, float]]) -> dict:
    return {"type": "LANE_SURFACE_STREET", "polyline": np.asarray(points, np.float64)}


def arc(centre: tuple[float, float], radius_m: float, from_deg: float, to_deg: float, n: int = 20) -> list[tuple[float, float]]:
    t = np.radians(np.linspace(from_deg, to_deg, n))
    return [(centre[0] + radius_m * np.cos(a), centre[1] + radius_m * np.sin(a)) for a in t]


def ramps_of(features: dict) -> dict[str, str]:
    return build_lane_map(features, Path("map.pkl")).ramp_reasons


def test_an_acceleration_lane_that_ends_beside_the_road_and_the_ramp_feeding_it_are_ramps():
    features = {
        "main_left": lane(0, 400, LANE_W),
        "main_right": lane(0, 400, 0.0),
        "ramp": curve([(40.0, -30.0), (70.0, -15.0), (100.0, -LANE_W)]),
        "accel_lane": lane(100, 200, -LANE_W),
    }
    reasons = ramps_of(features)
    assert reasons == {"accel_lane": "ends", "ramp": "feeds"}


def test_lanes_that_end_together_at_the_edge_of_the_map_are_not_ramps():
    features = {"a": lane(0, 200, LANE_W), "b": lane(0, 200, 0.0), "c": lane(0, 200, -LANE_W)}
    assert ramps_of(features) == {}


def test_a_lane_whose_continuation_starts_a_few_metres_on_is_not_a_lane_drop():
    # junction geometry: the right lane's continuation begins 6 m after its end, in line with it
    features = {"left": lane(0, 300, LANE_W), "right": lane(0, 100, 0.0), "right_after": lane(106, 300, 0.0)}
    assert ramps_of(features) == {}


def test_a_lane_drop_is_found_where_the_lane_beside_is_cut_into_pieces():
    # the lane beside goes on as two pieces (as MetaDrive cuts its roads into blocks)
    features = {"left_1": lane(0, 150, LANE_W), "left_2": lane(150, 400, LANE_W), "right": lane(0, 140, 0.0)}
    assert ramps_of(features) == {"right": "ends"}


def test_a_ramp_that_joins_beside_the_road_is_a_ramp_and_the_straight_lane_is_not():
    features = {
        "road_in": lane(0, 100, 0.0),
        "ramp_in": curve([(20.0, -20.0), (50.0, -4.0), (75.0, -3.5), (100.0, 0.0)]),  # beside, then a taper
        "road_out": lane(100, 300, 0.0),
    }
    assert ramps_of(features) == {"ramp_in": "joins road_out"}


def test_a_turn_at_a_junction_that_ends_on_the_same_lane_is_not_a_ramp():
    # a right turn (radius 30 m) from a road running north, whose last 10 m run straight along the road:
    # 20 m before its end it is beside the road and nearly aligned; 40 m before, it still points north-east
    turn = arc((60.0, -30.0), 30.0, 180.0, 90.0)  # (30, -30) heading north -> (60, 0) heading east
    features = {
        "road_in": lane(0, 70, 0.0),
        "north_in": curve([(30.0, -80.0), (30.0, -30.0)]),
        "turn": curve(turn + [(70.0, 0.0)]),
        "road_out": lane(70, 300, 0.0),
    }
    assert ramps_of(features) == {}


def test_ramp_rows_flip_on_ramp_and_the_move_onto_the_road_is_a_merge(tmp_path):
    """A vehicle driving the acceleration lane into the main lane: its pairs are merge pairs, not lane changes."""
    t = np.arange(0, 14.0, 0.1)
    x = 100.0 + 20.0 * t
    y = np.where(t < 4.0, -LANE_W, np.where(t < 7.0, -LANE_W + LANE_W * (t - 4.0) / 3.0, 0.0))
    vy = np.gradient(y, t)
    heading = np.arctan2(vy, 20.0)
    features = {"main_left": lane(0, 600, LANE_W), "main_right": lane(0, 600, 0.0), "accel_lane": lane(100, 260, -LANE_W)}
    track = {
        "type": "VEHICLE",
        "state": {
            "position": np.stack([x, y, np.zeros_like(x)], axis=1),
            "heading": heading,
            "velocity": np.stack([np.full_like(x, 20.0), vy], axis=1),
            "valid": np.ones_like(x, dtype=bool),
            "length": np.full_like(x, 4.5),
            "width": np.full_like(x, 1.9),
        },
        "metadata": {},
    }
    scenario = {"id": "ramp", "version": "test", "length": len(t), "tracks": {"car": track}, "dynamic_map_states": {},
                "map_features": features, "metadata": {"ts": t, "sdc_id": "car", "dataset": "test"}}
    folder = write_scenarionet(tmp_path / "ds", [scenario])
    log = ScenarioNetReader().read(folder)
    assert log.extra["ramp_lanes"] == {0: {"accel_lane": "ends"}}
    assert log.tracks["on_ramp"].to_numpy()[: int(4.0 / 0.1)].all()
    pairs = convert(log, ConvertConfig(egos="moving"))
    assert pairs["is_merge"].sum() > 0 and pairs["is_lane_change"].sum() == 0
