"""Traffic behaviour, vectorised: highway-env's ``IDMVehicle`` (IDM + MOBIL) and its lane controller.

Everything here reproduces highway-env 1.12.1 (``vehicle/behavior.py``, ``vehicle/controller.py``,
``road/road.py``) for ``[B, N]`` vehicles at once. Each simulation frame, every IDM vehicle
that has not crashed (``IDMVehicle.act``):

1. ``follow_road``: at the end of its target lane, continue on the next lane;
2. ``change_lane_policy``: while changing lanes, abort if another vehicle is changing into
   the same lane too close ahead; otherwise, once its timer exceeds ``LANE_CHANGE_DELAY``,
   reset the timer and evaluate MOBIL for the left then the right lane (the last lane MOBIL
   approves wins, as in highway-env's loop);
3. steering: ``steering_control(target_lane)`` (cascaded lateral-position / heading P controller);
4. acceleration: IDM behind the vehicle ahead in the current lane, and the minimum with
   the target lane's leader while changing lanes, clipped to ``ACC_MAX``.

Equations (Treiber et al., as coded in ``IDMVehicle.acceleration`` / ``desired_gap``)::

    a_free = a_max_c [1 - (max(v, 0) / v0)^delta]                                    (Eq. I1)
    s*     = d0 + v T + v dv / (2 sqrt(a_max_c b_c))  ,  dv = (v_ego - v_front) . dir_ego   (Eq. I2)
    a      = a_free - a_max_c (s* / d)^2     (only with a front vehicle; d = lane distance)    (Eq. I3)

and MOBIL (``IDMVehicle.mobil``)::

    safe  : a~_new_follower (with me as leader) >= -b_safe                                (Eq. M1)
    gain  : a~_me - a_me + p (a~_new_follower - a_new_follower + a~_old_follower - a_old_follower) >= a_th   (Eq. M2)

Who evaluates matters: ``self.acceleration(ego_vehicle=other, ...)`` uses the evaluating
vehicle's ``DELTA`` with the other vehicle's speed, target speed and lane, exactly as
highway-env does. A vehicle that is not an ``IDMVehicle`` (the ego) has target speed 0,
and an obstacle (not a ``Vehicle``) has acceleration 0.

Order. highway-env's ``Road.act`` lets vehicles decide one after the other; the only
decision that reads another vehicle's *decision* is the abort test of an ongoing lane
change (it reads ``v.target_lane_index``: already updated this frame for vehicles earlier
in the list, not yet for later ones). :func:`decide` resolves that dependency exactly by a
fixed-point iteration over whole arrays (it converges in one pass unless lane changes
abort each other in a chain).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from drive_drail.sim.batched.road import LANE_VEHICLE_LENGTH_M, LaneTable, wrap_to_pi
from drive_drail.sim.batched.vehicles import VehicleState

# IDMVehicle longitudinal parameters (highway-env 1.12.1)
ACC_MAX_MPS2 = 6.0
COMFORT_ACC_MAX_MPS2 = 3.0
COMFORT_ACC_MIN_MPS2 = -5.0
DISTANCE_WANTED_M = 5.0 + 5.0  # 5 m + ControlledVehicle.LENGTH
TIME_WANTED_S = 1.5
DELTA = 4.0
DELTA_RANGE = (3.5, 4.5)
# IDMVehicle lateral (MOBIL) parameters
POLITENESS = 0.0
LANE_CHANGE_MIN_ACC_GAIN_MPS2 = 0.2
LANE_CHANGE_MAX_BRAKING_IMPOSED_MPS2 = 2.0
LANE_CHANGE_DELAY_S = 1.0
# ControlledVehicle controller parameters
TAU_ACC_S = 0.6
TAU_HEADING_S = 0.2
TAU_LATERAL_S = 0.6
TAU_PURSUIT_S = 0.5 * TAU_HEADING_S
KP_A = 1 / TAU_ACC_S
KP_HEADING = 1 / TAU_HEADING_S
KP_LATERAL = 1 / TAU_LATERAL_S
MAX_STEERING_ANGLE_RAD = np.pi / 3
NEIGHBOUR_LANE_MARGIN_M = 1.0
"""``Road.neighbour_vehicles`` counts objects within width/2 + 1 m of the lane centre."""


def not_zero(x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """highway-env ``utils.not_zero``: x if |x| > eps, else +-eps (sign of x, + for 0)."""
    return torch.where(torch.abs(x) > eps, x, torch.where(x >= 0, torch.full_like(x, eps), torch.full_like(x, -eps)))


def _at(t: torch.Tensor, b: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """``t[b[k], slot[k]]`` for ``t [B, M]`` and flat rows ``[K]`` (a negative slot reads slot 0)."""
    return t.reshape(-1)[b * t.shape[1] + slot.clamp(min=0)]


# --------------------------------------------------------------------------------------
# Neighbours on a lane (Road.neighbour_vehicles)
# --------------------------------------------------------------------------------------


class LaneProjection(NamedTuple):
    """Every slot projected on every lane, ``[B, L, M]``: ``s`` the longitudinal coordinate [m];
    ``s_on`` the same where the object is on the lane (1 m margin, real object), NaN elsewhere."""

    s: torch.Tensor
    s_on: torch.Tensor


def project_on_lanes(st: VehicleState, lanes: LaneTable) -> LaneProjection:
    s = st.x_m[:, None, :] - lanes.x_start_m[None, :, None]
    r = st.y_m[:, None, :] - lanes.y_start_m[None, :, None]
    if lanes.has_sine:
        r = r - lanes.amplitude_m[None, :, None] * torch.sin(lanes.pulsation_radpm[None, :, None] * s + lanes.phase_rad[None, :, None])
    on = (
        (torch.abs(r) <= lanes.width_m[None, :, None] / 2 + NEIGHBOUR_LANE_MARGIN_M)
        & (s >= -LANE_VEHICLE_LENGTH_M)
        & (s < lanes.length_m[None, :, None] + LANE_VEHICLE_LENGTH_M)
        & st.valid[:, None, :]
    )
    return LaneProjection(s, torch.where(on, s, float("nan")))


class Neighbours(NamedTuple):
    """Preceding and following object of each query row, slot indices ``[K]`` (-1: none)."""

    front: torch.Tensor
    rear: torch.Tensor


def neighbours(proj: LaneProjection, b: torch.Tensor, me: torch.Tensor, lane: torch.Tensor) -> Neighbours:
    """``Road.neighbour_vehicles(vehicle, lane)`` for K query rows (scene ``b``, vehicle slot ``me``, lane ``lane``).

    Front: the object with the smallest s_v >= s_me (the LAST in list order among equals);
    rear: the largest s_v < s_me (the FIRST among equals), as highway-env's loop picks them.
    Objects off the lane carry NaN, which fails every comparison.
    """
    s = proj.s_on[b, lane]  # [K, M]
    m = s.shape[1]
    s_self = proj.s[b, lane, me][:, None]
    s.scatter_(1, me[:, None], float("nan"))  # the vehicle itself is not its own neighbour
    # min/max return the first extremum: flip the slots so the last one among equals wins ahead.
    best, k = torch.where(s >= s_self, s, float("inf")).flip(1).min(dim=1)
    front = torch.where(best < float("inf"), m - 1 - k, -1)
    best, k = torch.where(s < s_self, s, float("-inf")).max(dim=1)
    rear = torch.where(best > float("-inf"), k, -1)
    return Neighbours(front, rear)


# --------------------------------------------------------------------------------------
# IDM (IDMVehicle.acceleration, desired_gap)
# --------------------------------------------------------------------------------------


def desired_gap(v_ego: torch.Tensor, h_ego: torch.Tensor, v_front: torch.Tensor, h_front: torch.Tensor) -> torch.Tensor:
    """Eq. I2 with highway-env's projected speed difference."""
    ab = -COMFORT_ACC_MAX_MPS2 * COMFORT_ACC_MIN_MPS2
    c, s = torch.cos(h_ego), torch.sin(h_ego)
    dv = (v_ego * c - v_front * torch.cos(h_front)) * c + (v_ego * s - v_front * torch.sin(h_front)) * s
    return DISTANCE_WANTED_M + v_ego * TIME_WANTED_S + v_ego * dv / (2 * np.sqrt(ab))


def idm_acceleration(st: VehicleState, lanes: LaneTable, b: torch.Tensor, ego: torch.Tensor, front: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``evaluator.acceleration(ego_vehicle=ego, front_vehicle=front)`` (Eq. I1-I3) -> ``[K]`` [m/s^2].

    Rows ``[K]``: scene ``b``, slots ``ego`` and ``front`` (-1 = None), the evaluator's ``delta``.
    """
    m = st.x_m.shape[1]
    e = b * m + ego.clamp(min=0)  # flat indices into [B, M]
    f = b * m + front.clamp(min=0)
    has_ego = (ego >= 0) & st.is_vehicle.reshape(-1)[e]
    v_e, h_e, x_e = st.speed_mps.reshape(-1)[e], st.heading_rad.reshape(-1)[e], st.x_m.reshape(-1)[e]
    lane_e = st.lane.reshape(-1)[e]
    target = torch.where(st.is_idm.reshape(-1)[e], st.target_speed_mps.reshape(-1)[e], 0.0)
    target = torch.minimum(torch.clamp(target, min=0.0), lanes.speed_limit_mps[lane_e])  # np.clip(target, 0, limit)
    acc = COMFORT_ACC_MAX_MPS2 * (1 - torch.pow(torch.clamp(v_e, min=0.0) / torch.abs(not_zero(target)), delta))  # Eq. I1

    x_f, v_f, h_f = st.x_m.reshape(-1)[f], st.speed_mps.reshape(-1)[f], st.heading_rad.reshape(-1)[f]
    xs = lanes.x_start_m[lane_e]
    d = (x_f - xs) - (x_e - xs)  # lane_distance_to along the ego's lane (every lane runs along +x)
    gap = desired_gap(v_e, h_e, v_f, h_f)
    acc = torch.where(front >= 0, acc - COMFORT_ACC_MAX_MPS2 * torch.pow(gap / not_zero(d), 2), acc)  # Eq. I3
    return torch.where(has_ego, acc, 0.0)


# --------------------------------------------------------------------------------------
# Lane controller (ControlledVehicle.steering_control)
# --------------------------------------------------------------------------------------


def steering_control(st: VehicleState, lanes: LaneTable, target_lane: torch.Tensor) -> torch.Tensor:
    """Front-wheel angle [rad] that tracks the centre of ``target_lane`` ``[B, N]``.

    lateral speed command -> heading reference -> heading-rate command -> steering angle.
    """
    n = st.n_vehicles
    x, y, psi, v = st.x_m[:, :n], st.y_m[:, :n], st.heading_rad[:, :n], st.speed_mps[:, :n]
    s = x - lanes.x_start_m[target_lane]
    r = lanes.lateral_m(target_lane, s, y)
    future_heading = lanes.heading_at(target_lane, s + v * TAU_PURSUIT_S)
    lateral_speed_command = -KP_LATERAL * r
    heading_command = torch.arcsin(torch.clamp(lateral_speed_command / not_zero(v), -1, 1))
    heading_ref = future_heading + torch.clamp(heading_command, -np.pi / 4, np.pi / 4)
    heading_rate_command = KP_HEADING * wrap_to_pi(heading_ref - psi)
    slip_angle = torch.arcsin(torch.clamp(st.length_m[:, :n] / 2 / not_zero(v) * heading_rate_command, -1, 1))
    steering = torch.arctan(2 * torch.tan(slip_angle))
    return torch.clamp(steering, -MAX_STEERING_ANGLE_RAD, MAX_STEERING_ANGLE_RAD)


# --------------------------------------------------------------------------------------
# MOBIL (IDMVehicle.mobil) and the decision of one frame (IDMVehicle.act)
# --------------------------------------------------------------------------------------


def mobil(st: VehicleState, lanes: LaneTable, b: torch.Tensor, me: torch.Tensor, new: Neighbours, old: Neighbours) -> torch.Tensor:
    """Whether MOBIL recommends the lane whose neighbours are ``new`` to vehicle rows ``(b, me)`` (Eq. M1-M2), ``[K]``.

    No vehicle here has a route, so highway-env's route branch never applies.
    """
    delta = _at(st.delta, b, me)
    # The six accelerations of Eq. M1-M2 as one [6K] IDM call, (ego, front) per block: at B = 128 a step
    # costs its number of small tensor ops, not their size.
    egos = torch.cat([new.rear, new.rear, me, me, old.rear, old.rear])
    fronts = torch.cat([new.front, me, new.front, old.front, me, old.front])
    accs = idm_acceleration(st, lanes, b.repeat(6), egos, fronts, delta.repeat(6)).view(6, -1)
    new_following_a, new_following_pred_a, self_pred_a, self_a, old_following_a, old_following_pred_a = accs
    safe = ~(new_following_pred_a < -LANE_CHANGE_MAX_BRAKING_IMPOSED_MPS2)  # Eq. M1
    jerk = self_pred_a - self_a + POLITENESS * (new_following_pred_a - new_following_a + old_following_pred_a - old_following_a)  # Eq. M2
    return safe & ~(jerk < LANE_CHANGE_MIN_ACC_GAIN_MPS2)


def reachable(st: VehicleState, lanes: LaneTable, b: torch.Tensor, me: torch.Tensor, lane: torch.Tensor) -> torch.Tensor:
    """``lane.is_reachable_from(position)`` for vehicle rows ``(b, me)`` (``lane`` ``[K]``, -1 = no lane)."""
    safe_lane = lane.clamp(min=0)
    s = _at(st.x_m, b, me) - lanes.x_start_m[safe_lane]
    r = lanes.lateral_m(safe_lane, s, _at(st.y_m, b, me))
    close = (torch.abs(r) <= 2 * lanes.width_m[safe_lane]) & (s >= 0) & (s < lanes.length_m[safe_lane] + LANE_VEHICLE_LENGTH_M)
    return (lane >= 0) & ~lanes.forbidden[safe_lane] & close


def _abort_lane_changes(st: VehicleState, lanes: LaneTable, b: torch.Tensor, me: torch.Tensor, target_start: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The targets ``[B, N]`` after the abort test of the ongoing lane changes of rows ``(b, me)``.

    Vehicle i returns to its lane if some IDM vehicle v != i, not in i's target lane, targets
    that lane too and is ahead of i closer than i's desired gap (``change_lane_policy``). i
    reads v's target as highway-env's sequential loop leaves it: decided this frame if v < i,
    from the previous frame if v > i.
    """
    n = st.n_vehicles
    lane_i = st.lane[b, me]
    tgt_i = target[b, me]
    x_i, v_i, h_i = st.x_m[b, me], st.speed_mps[b, me], st.heading_rad[b, me]
    xs = lanes.x_start_m[lane_i][:, None]
    x_v = st.x_m[b, :n]
    d = (x_v - xs) - (x_i[:, None] - xs)  # [K, N]: i.lane_distance_to(v)
    d_star = desired_gap(v_i[:, None], h_i[:, None], st.speed_mps[b, :n], st.heading_rad[b, :n])
    ar = torch.arange(n, device=b.device)
    others = st.valid[b, :n] & st.is_idm[b, :n] & (ar[None, :] != me[:, None])
    close = others & (0 < d) & (d < d_star) & (st.lane[b, :n] != tgt_i[:, None])
    earlier = ar[None, :] < me[:, None]  # v < i
    current = target
    for _ in range(n):  # fixed point; exits after one pass unless aborts chain
        seen = torch.where(earlier, current[b], target_start[b])  # v's target as i sees it, [K, N]
        abort = (close & (seen == tgt_i[:, None])).any(dim=1)
        new = target.clone()
        new[b, me] = torch.where(abort, lane_i, tgt_i)
        if torch.equal(new, current):
            break
        current = new
    return current


def decide(st: VehicleState, lanes: LaneTable) -> None:
    """One ``Road.act`` for the IDM vehicles: update target lanes, timers and stored actions in place.

    Dense over ``[B, N]`` where every vehicle needs it (follow_road, current-lane IDM,
    steering); MOBIL, aborts and target-lane IDM run on the rows that need them only.
    """
    n = st.n_vehicles
    bsz = st.x_m.shape[0]
    dev = st.x_m.device
    active = st.valid[:, :n] & st.is_idm[:, :n] & ~st.crashed[:, :n]
    lane = st.lane[:, :n]
    target_start = st.target_lane[:, :n]

    # 1. follow_road: switch to the next lane near the end of the target lane
    s_t = st.x_m[:, :n] - lanes.x_start_m[target_start]
    after_end = s_t > lanes.length_m[target_start] - LANE_VEHICLE_LENGTH_M / 2
    target = torch.where(active & after_end, lanes.next_lane[target_start], target_start)

    proj = project_on_lanes(st, lanes)
    b_all = torch.arange(bsz, device=dev).repeat_interleave(n)
    me_all = torch.arange(n, device=dev).repeat(bsz)
    on_lane = neighbours(proj, b_all, me_all, lane.reshape(-1))

    # 2. change_lane_policy
    policy = active & st.lane_change[:, :n]
    changing = target != lane
    mobil_turn = policy & ~changing & (st.timer_s[:, :n] > LANE_CHANGE_DELAY_S)  # utils.do_every
    st.timer_s[:, :n] = torch.where(mobil_turn, 0.0, st.timer_s[:, :n])
    bk, mk = torch.nonzero(mobil_turn & (torch.abs(st.speed_mps[:, :n]) >= 1), as_tuple=True)
    if len(bk):
        lane_k = lane[bk, mk]
        flat = bk * n + mk
        old = Neighbours(on_lane.front[flat], on_lane.rear[flat])
        # Both sides in one pass of [2K] rows: left first, right last (right wins).
        sides = torch.cat([lanes.left[lane_k], lanes.right[lane_k]])
        b2, m2 = bk.repeat(2), mk.repeat(2)
        new = neighbours(proj, b2, m2, sides.clamp(min=0))
        old2 = Neighbours(old.front.repeat(2), old.rear.repeat(2))
        go_left, go_right = (reachable(st, lanes, b2, m2, sides) & mobil(st, lanes, b2, m2, new, old2)).view(2, -1)
        left, right = sides.view(2, -1)
        choice = torch.where(go_left, left, target[bk, mk])
        target[bk, mk] = torch.where(go_right, right, choice)

    bk, mk = torch.nonzero(policy & changing & (lanes.edge[lane] == lanes.edge[target]), as_tuple=True)
    if len(bk):
        target = _abort_lane_changes(st, lanes, bk, mk, target_start, target)

    # 3. steering toward the target lane; 4. IDM in the current lane, and in the target lane while changing
    steer = steering_control(st, lanes, target)
    delta = st.delta[:, :n].reshape(-1)
    accel = idm_acceleration(st, lanes, b_all, me_all, on_lane.front, delta).reshape(bsz, n)
    bk, mk = torch.nonzero(active & (target != lane), as_tuple=True)
    if len(bk):
        ahead = neighbours(proj, bk, mk, target[bk, mk]).front
        accel[bk, mk] = torch.minimum(accel[bk, mk], idm_acceleration(st, lanes, bk, mk, ahead, st.delta[bk, mk]))
    accel = torch.clamp(accel, -ACC_MAX_MPS2, ACC_MAX_MPS2)

    st.target_lane[:, :n] = torch.where(active, target, target_start)
    st.steer_rad[:, :n] = torch.where(active, steer, st.steer_rad[:, :n])
    st.accel_mps2[:, :n] = torch.where(active, accel, st.accel_mps2[:, :n])
