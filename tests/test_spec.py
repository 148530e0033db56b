import numpy as np
import pytest

from drive_drail import spec


def _vehicle(x, y, vx=30.0, vy=0.0, heading=0.0, lane=1):
    return spec.Vehicle(x, y, vx, vy, heading, 5.0, 2.0, lane)


def test_observation_shape_names_and_scaling():
    scene = spec.Scene(_vehicle(0, 0), [_vehicle(20, 4, lane=0)], spec.LaneContext(3, 0.4, 0.0))
    obs = spec.observe(scene)
    assert obs.shape == (spec.OBS_DIM,) and obs.dtype == np.float32
    named = dict(zip(spec.OBS_NAMES, obs))
    assert named["ego_v_long"] == pytest.approx(30.0 / 40.0)
    assert named["ego_lane_offset"] == pytest.approx(0.4 / 2.0)
    assert named["n0_present"] == 1.0
    assert named["n0_dx"] == pytest.approx(20 / 100.0)
    assert named["n0_dy"] == pytest.approx(4 / 10.0)  # + = left
    assert named["n0_dlane"] == pytest.approx(-1 / 2.0)  # lane 0 is left of lane 1
    assert named["n1_present"] == 0.0 and named["n1_dx"] == 0.0


def test_neighbours_sorted_by_distance_and_radius_applies():
    others = [_vehicle(50, 0), _vehicle(-10, 0), _vehicle(150, 0), _vehicle(5, 3)]
    obs = spec.observe(spec.Scene(_vehicle(0, 0), others, spec.LaneContext(3, 0.0, 0.0)))
    named = dict(zip(spec.OBS_NAMES, obs))
    assert [named[f"n{k}_dx"] * 100 for k in range(3)] == pytest.approx([5, -10, 50])
    assert named["n3_present"] == 0.0  # the vehicle 150 m ahead is beyond the radius


def test_ego_frame_rotation():
    """A neighbour straight ahead of an ego heading +90 deg is at dx > 0, dy = 0."""
    ego = _vehicle(0, 0, vx=0, vy=20, heading=np.pi / 2)
    other = _vehicle(0, 30, vx=0, vy=25, heading=np.pi / 2)
    named = dict(zip(spec.OBS_NAMES, spec.observe(spec.Scene(ego, [other], spec.LaneContext(2, 0, np.pi / 2)))))
    assert named["n0_dx"] == pytest.approx(0.3)
    assert named["n0_dy"] == pytest.approx(0.0, abs=1e-6)
    assert named["n0_dvx"] == pytest.approx(5 / 20.0)
    assert named["ego_v_long"] == pytest.approx(0.5)
    assert named["ego_heading_to_lane"] == pytest.approx(0.0, abs=1e-6)


def test_batch_equals_single_scenes():
    rng = np.random.default_rng(0)
    scenes = []
    for _ in range(5):
        n = int(rng.integers(1, 10))
        vs = [_vehicle(*rng.normal(0, 30, 2), rng.normal(25, 3), rng.normal(0, 1), rng.normal(0, 0.1), int(rng.integers(0, 3))) for _ in range(n)]
        scenes.append(spec.Scene(vs[0], vs[1:], spec.LaneContext(3, rng.normal(), 0.0)))
    single = np.stack([spec.observe(s) for s in scenes])
    m = max(1 + len(s.others) for s in scenes)
    cols = {k: np.zeros((5, m)) for k in ("x_m", "y_m", "vx_mps", "vy_mps", "heading_rad")}
    lane = np.zeros((5, m), dtype=np.int64)
    valid = np.zeros((5, m), dtype=bool)
    ego = np.zeros(5, dtype=np.int64)
    for b, s in enumerate(scenes):
        vs = [*s.others, s.ego]  # ego in the LAST slot: the batch form takes any slot
        ego[b] = len(vs) - 1
        for j, v in enumerate(vs):
            for k in cols:
                cols[k][b, j] = getattr(v, k)
            lane[b, j], valid[b, j] = v.lane, True
    batch = spec.SceneBatch(**cols, lane=lane, valid=valid, ego=ego,
                            lane_count=np.full(5, 3.0), lane_offset_m=np.array([s.lane.offset_m for s in scenes]),
                            lane_heading_rad=np.zeros(5))
    np.testing.assert_allclose(spec.observe_batch(batch), single, atol=1e-6)


def test_action_mapping_round_trip():
    unit = np.array([[-1, -1], [0, 0], [1, 1], [0.5, -0.25]])
    phys = spec.action_to_physical(unit)
    np.testing.assert_allclose(phys[0], [spec.ACCEL_RANGE_MPS2[0], spec.STEER_RANGE_RAD[0]])
    np.testing.assert_allclose(phys[2], [spec.ACCEL_RANGE_MPS2[1], spec.STEER_RANGE_RAD[1]])
    np.testing.assert_allclose(spec.action_to_unit(phys), unit, atol=1e-12)
    assert [m.value for m in spec.MetaAction] == [0, 1, 2, 3, 4]
    assert spec.MetaAction(0).name == "LANE_LEFT"


def test_scalar_action_map_equals_the_array_form():
    """action_to_physical_one (Python floats, used by the adapters every step) gives the array
    form's numbers, clipping included."""
    unit = np.random.default_rng(3).uniform(-1.5, 1.5, size=(500, 2))
    expected = spec.action_to_physical(unit)
    got = np.array([spec.action_to_physical_one(a, s) for a, s in unit.tolist()])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert (np.abs(unit) > 1).any()  # the clipping branch is exercised


def test_single_scene_forms_are_bitwise_equal_to_the_batch_form():
    """observe / observe_one (Python floats) must give exactly observe_batch's numbers: the
    adapters use the former, the log converter and the batched simulator the latter."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        m = int(rng.integers(1, 25))
        x = rng.normal(0, 60, m)
        x[rng.random(m) < 0.2] = x[0]  # equal distances: the tie order must match
        y = rng.choice([0.0, 4.0, 8.0, -4.0], m) + rng.normal(0, 0.5, m) * (trial % 2)
        vx, vy = rng.normal(25, 5, m), rng.normal(0, 1, m)
        heading = rng.uniform(-np.pi, np.pi, m)
        lane = rng.integers(-1, 4, m)
        ego = int(rng.integers(0, m))
        lane_count, offset, lane_heading = float(rng.integers(1, 5)), float(rng.normal()), float(rng.uniform(-4, 4))
        batch = spec.SceneBatch(x[None], y[None], vx[None], vy[None], heading[None], lane[None], np.ones((1, m), bool),
                                np.array([ego]), np.array([lane_count]), np.array([offset]), np.array([lane_heading]))
        one = spec.observe_one(x.tolist(), y.tolist(), vx.tolist(), vy.tolist(), heading.tolist(), lane.tolist(),
                               ego, lane_count, offset, lane_heading)
        np.testing.assert_array_equal(one, spec.observe_batch(batch)[0])
        if ego == 0:
            vehicles = [spec.Vehicle(*vals, 4.5, 1.8, int(li)) for *vals, li in zip(x, y, vx, vy, heading, lane)]
            scene = spec.Scene(vehicles[0], vehicles[1:], spec.LaneContext(int(lane_count), offset, lane_heading))
            np.testing.assert_array_equal(spec.observe(scene), spec.observe_batch(batch)[0])


def test_lead_vehicle_is_the_nearest_ahead_in_the_ego_lane_out_to_the_lead_range():
    stalled = _vehicle(150, 0.3, vx=0.0)  # beyond the neighbour radius, in the ego lane
    others = [_vehicle(-20, 0), _vehicle(30, 4.0), stalled, _vehicle(190, 0), _vehicle(250, 0)]
    named = dict(zip(spec.OBS_NAMES, spec.observe(spec.Scene(_vehicle(0, 0, vx=20.0), others, spec.LaneContext(3, 0.0, 0.0)))))
    assert named["lead_present"] == 1.0
    assert named["lead_gap_m"] * 100 == pytest.approx(150.0)
    assert named["lead_closing_mps"] * 20 == pytest.approx(20.0)  # closing on a standing car at 20 m/s
    assert 150 > spec.NEIGHBOUR_RADIUS_M and not any(named[f"n{k}_dx"] * 100 == pytest.approx(150) for k in range(6))
    # the ego 1.5 m left of its lane centre still sees the car on that centre line; nothing ahead: no lead
    off_centre = spec.observe(spec.Scene(_vehicle(0, 1.5), [_vehicle(60, 0.0, vx=35.0)], spec.LaneContext(3, 1.5, 0.0)))
    lead = dict(zip(spec.OBS_NAMES, off_centre))
    assert lead["lead_present"] == 1.0 and lead["lead_closing_mps"] * 20 == pytest.approx(-5.0)
    empty = dict(zip(spec.OBS_NAMES, spec.observe(spec.Scene(_vehicle(0, 0), [_vehicle(-5, 0), _vehicle(40, 4)], spec.LaneContext(3, 0.0, 0.0)))))
    assert (empty["lead_present"], empty["lead_gap_m"] * 100, empty["lead_closing_mps"]) == (0.0, spec.LEAD_RANGE_M, 0.0)


def test_lead_vehicle_forms_are_bitwise_equal_on_lane_aligned_scenes_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(300):
        m = int(rng.integers(2, 30))
        lane_heading = float(rng.choice([0.0, rng.uniform(-np.pi, np.pi)]))
        along, across = rng.uniform(-50, 220, m), rng.choice([0.0, 2.0, 4.0, -4.0], m) + rng.normal(0, 0.3, m)
        along[rng.random(m) < 0.3] = along[1]  # equal gaps: the first slot must win in both forms
        c, s = np.cos(lane_heading), np.sin(lane_heading)
        x, y = along * c - across * s, along * s + across * c
        vx, vy = rng.normal(25, 5, m) * c, rng.normal(25, 5, m) * s
        heading = np.full(m, lane_heading) + rng.normal(0, 0.05, m)
        lane = rng.integers(0, 3, m)
        offset = float(across[0])
        batch = spec.SceneBatch(x[None], y[None], vx[None], vy[None], heading[None], lane[None], np.ones((1, m), bool),
                                np.array([0]), np.array([3]), np.array([offset]), np.array([lane_heading]))
        one = spec.observe_one(x.tolist(), y.tolist(), vx.tolist(), vy.tolist(), heading.tolist(), lane.tolist(),
                               0, 3.0, offset, lane_heading)
        np.testing.assert_array_equal(one, spec.observe_batch(batch)[0])


def test_no_reverse_limit_stops_at_a_standstill():
    assert spec.no_reverse_accel_mps2(-5.0, 2.0, 0.2) == -5.0  # the limit is -10: braking that stops in time is kept
    assert spec.no_reverse_accel_mps2(-5.0, 0.5, 0.2) == pytest.approx(-2.5)  # reaches 0 at the end of the hold
    assert spec.no_reverse_accel_mps2(-5.0, 0.0, 0.2) == 0.0 and spec.no_reverse_accel_mps2(-1.0, -0.3, 0.2) == 0.0
    assert spec.no_reverse_accel_mps2(3.0, 0.0, 0.2) == 3.0
    np.testing.assert_array_equal(spec.no_reverse_accel_mps2(np.array([-5.0, -5.0]), np.array([10.0, 0.2]), 0.2), [-5.0, -1.0])


def test_steering_map_is_fine_near_zero_and_reaches_the_full_range():
    u = np.linspace(-1, 1, 2001)
    steer = spec.steer_from_unit(u)
    assert np.all(np.diff(steer) > 0) and steer[0] == pytest.approx(-np.pi / 4) and steer[-1] == pytest.approx(np.pi / 4)
    np.testing.assert_allclose(spec.steer_to_unit(steer), u, atol=1e-12)
    # lane keeping (0.02 rad) and a highway lane change (0.08 rad) take a visible share of the unit range
    assert spec.steer_to_unit(0.02) > 0.09 and spec.steer_to_unit(0.08) > 0.3
    assert spec.steer_to_unit(0.02) > 3.5 * 0.02 / (np.pi / 4)  # against a linear +-pi/4 map
    phys = spec.action_to_physical(np.array([[0.3, 0.25]]))
    assert phys[0, 1] == pytest.approx(spec.steer_from_unit(0.25)) and spec.action_to_physical_one(0.3, 0.25)[1] == phys[0, 1]
    # a simulator's own linear continuous action is a separate map
    np.testing.assert_allclose(spec.physical_to_linear_unit(np.array([5.0, np.pi / 8])), [1.0, 0.5])
