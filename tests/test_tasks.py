"""The task rules (drive_drail.tasks) on [B] arrays: one rule for every simulator."""

import numpy as np

from drive_drail import tasks
from drive_drail.scenario import SuccessCriteria, load_scenario
from drive_drail.tasks import Measurements

F, T = False, True


def m(**values) -> Measurements:
    b = len(next(iter(values.values())))
    base = {"crashed": np.zeros(b, bool), "offroad": np.zeros(b, bool), "route_completion": np.ones(b)}
    return Measurements(**{**base, **{k: np.asarray(v) for k, v in values.items()}})


def test_stop_succeeds_only_stopped_in_the_zone_and_held_and_ends_only_by_collision_or_offroad():
    c = load_scenario("stop").success
    gap = np.array([0.0, 0.01, c.stopped_before_m, c.stopped_before_m + 0.01, 3.0, 3.0, 3.0])
    held = np.array([c.hold_seconds] * 4 + [c.hold_seconds - 0.2, c.hold_seconds, c.hold_seconds])
    crashed = np.array([F, F, F, F, F, T, F])
    ok = tasks.stop.success(c, m(gap_m=gap, stopped_s=held, crashed=crashed))
    assert ok.tolist() == [F, T, T, F, F, F, T]
    ends = tasks.stop.terminated("highway", m(crashed=np.array([F, T, F]), offroad=np.array([F, F, T])))
    assert ends.tolist() == [F, T, T]  # reaching the stop zone (route done) does not end it: the ego must hold


def test_stopped_time_grows_while_slow_and_resets_when_moving():
    c = load_scenario("stop").success
    s = np.zeros(3)
    for _ in range(4):
        s = tasks.stop.stopped_s(s, np.array([0.0, c.max_final_speed_mps * 0.9, 5.0]), 0.2, c)
    assert np.allclose(s, [0.8, 0.8, 0.0])
    assert tasks.stop.stopped_s(s, np.array([5.0, 0.0, 0.0]), 0.2, c).tolist() == [0.0, 1.0, 0.2]


def test_merge_needs_the_main_lane_where_required_and_ends_at_the_route_end():
    required, optional = SuccessCriteria(require_merge=True), SuccessCriteria(require_merge=False)
    x = m(route_completion=np.array([1.0, 1.0, 0.9]), merged=np.array([T, F, T]))
    assert tasks.merge.success(required, x).tolist() == [T, F, F]
    assert tasks.merge.success(optional, x).tolist() == [T, T, F]
    assert tasks.merge.terminated("highway", x).tolist() == [T, T, F]


def test_lane_change_counts_arrival_and_ends_at_the_route_only_in_metadrive():
    c = SuccessCriteria(route_length_m=400.0, min_route_completion=0.9)
    x = m(route_completion=np.array([0.95, 0.5, 0.5, 1.0]), arrived=np.array([F, F, T, F]), offroad=np.array([F, F, F, T]))
    assert tasks.lane_change.success(c, x).tolist() == [T, F, T, F]
    done = m(route_completion=np.array([1.0, 0.99]))
    assert tasks.lane_change.terminated("highway", done).tolist() == [F, F]
    assert tasks.lane_change.terminated("metadrive", done).tolist() == [T, F]
    assert np.allclose(tasks.lane_change.goal_x_m(np.array([10.0, -5.0]), c), [410.0, 395.0])


def test_one_measurement_from_scalars_is_a_batch_of_one():
    one = Measurements.one(crashed=False, offroad=False, route_completion=1.0, merged=True, gap_m=None)
    assert one.crashed.shape == (1,) and one.gap_m is None
    assert tasks.task("merge").success(SuccessCriteria(require_merge=True), one).tolist() == [True]
