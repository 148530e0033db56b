"""The CPU kernel of the batched simulator: highway-env frames compiled with numba, scene by scene.

:func:`drive_drail.sim.batched.env.simulate_frame` steps every scene with whole-array torch ops
(:mod:`behavior`, :mod:`physics`, :mod:`collision`): the path for CUDA, where B is large. On a CPU
that path spends its time on ``[B x N, M]`` temporaries and on resolving highway-env's sequential
decisions with array tricks (a fixed point for the lane-change aborts). This kernel runs the same
equations in highway-env's own order, one scene at a time, in compiled loops over its ~20
vehicles, with the scenes split over threads. Each equation cites the function of :mod:`behavior`,
:mod:`physics` or :mod:`collision` that states it; the differential tests run both paths against
highway-env. A frame (``AbstractEnv._simulate``'s loop body):

1. ``Road.act``: every IDM vehicle in list order (``IDMVehicle.act``): follow_road, the lane-change
   abort (reading the targets of the vehicles before it as decided this frame, those after it as
   left last frame) or MOBIL (Eq. M1-M2, left then right), the lane controller, IDM (Eq. I1-I3);
2. ``Road.step``: the bicycle model (Eq. B1-B4) with ``clip_actions`` and the closest lane;
3. the collision pass: sphere pre-check, then the separating-axis test on every pair.

Float64 only. Transcendental functions come from LLVM's libm instead of torch's vectorised
ones, so states agree with the torch path to rounding, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from drive_drail.sim.batched import behavior as bh
from drive_drail.sim.batched import physics
from drive_drail.sim.batched.road import LANE_VEHICLE_LENGTH_M, LaneTable
from drive_drail.sim.batched.vehicles import VehicleState

try:
    import numba
except ImportError:  # the torch path needs no compiler
    numba = None

AVAILABLE = numba is not None
"""Whether the kernel can run (numba is installed)."""

_PI = math.pi
_SQRT_AB = math.sqrt(-bh.COMFORT_ACC_MAX_MPS2 * bh.COMFORT_ACC_MIN_MPS2)
_SCENES_PER_CHUNK = 8
"""Scenes per thread chunk: each chunk allocates its scratch arrays once."""


def _jit(**kw):
    return numba.njit(cache=True, nogil=True, **kw) if AVAILABLE else (lambda f: f)


@_jit(inline="always")
def _wrap(x):
    """``utils.wrap_to_pi`` (Python's floor mod, as numpy's)."""
    return ((x + _PI) % (2 * _PI)) - _PI


@_jit(inline="always")
def _not_zero(x):
    if abs(x) > 1e-2:
        return x
    return 1e-2 if x >= 0 else -1e-2


@_jit(inline="always")
def _lateral(lane, s, y, ys, amp, puls, phase, has_sine):
    """``LaneTable.lateral_m``."""
    r = y - ys[lane]
    if has_sine:
        r = r - amp[lane] * math.sin(puls[lane] * s + phase[lane])
    return r


@_jit(inline="always")
def _lane_heading(lane, s, amp, puls, phase, has_sine):
    """``LaneTable.heading_at``."""
    if not has_sine:
        return 0.0
    return math.atan(amp[lane] * puls[lane] * math.cos(puls[lane] * s + phase[lane]))


@_jit(inline="always")
def _desired_gap(v_e, c_e, s_e, v_f, c_f, s_f):
    """Eq. I2 (``behavior.desired_gap``), from the cos and sin of both headings."""
    dv = (v_e * c_e - v_f * c_f) * c_e + (v_e * s_e - v_f * s_f) * s_e
    return bh.DISTANCE_WANTED_M + v_e * bh.TIME_WANTED_S + v_e * dv / (2 * _SQRT_AB)


@_jit()
def _idm(b, ego, front, delta, x, cos_h, sin_h, v, lane_of, is_vehicle, is_idm, target_speed, xs, speed_limit):
    """``evaluator.acceleration(ego_vehicle=ego, front_vehicle=front)`` (Eq. I1-I3, ``behavior.idm_acceleration``)."""
    if ego < 0 or not is_vehicle[b, ego]:
        return 0.0
    v_e = v[b, ego]
    lane_e = lane_of[b, ego]
    target = target_speed[b, ego] if is_idm[b, ego] else 0.0
    target = min(max(target, 0.0), speed_limit[lane_e])
    acc = bh.COMFORT_ACC_MAX_MPS2 * (1 - (max(v_e, 0.0) / abs(_not_zero(target))) ** delta)  # Eq. I1
    if front >= 0:
        x0 = xs[lane_e]
        d = (x[b, front] - x0) - (x[b, ego] - x0)
        gap = _desired_gap(v_e, cos_h[ego], sin_h[ego], v[b, front], cos_h[front], sin_h[front])
        acc = acc - bh.COMFORT_ACC_MAX_MPS2 * (gap / _not_zero(d)) ** 2  # Eq. I3
    return acc


@_jit()
def _neighbours(proj_s, members, n_members, me, lane):
    """``Road.neighbour_vehicles`` (``behavior.neighbours``): front = the smallest s >= s_me (the last
    slot among equals), rear = the largest s < s_me (the first among equals); -1 for none.
    ``members[lane, :n_members[lane]]``: the slots on the lane, in slot order (so ties resolve as a
    scan of every slot would)."""
    s_self = proj_s[lane, me]
    front, rear = -1, -1
    best_f, best_r = np.inf, -np.inf
    for k in range(n_members[lane]):
        j = members[lane, k]
        if j == me:
            continue
        s = proj_s[lane, j]
        if s >= s_self:
            if s <= best_f:
                best_f, front = s, j
        elif s > best_r:
            best_r, rear = s, j
    return front, rear


@_jit()
def _frame(b, n, m, dt, x, y, h, v, length, width, target_speed, timer, delta, steer, accel, impact_x, impact_y,
           lane_of, target_lane, valid, is_vehicle, is_idm, lane_change, check, crashed, has_impact,
           xs, ys, lane_len, lane_w, amp, puls, phase, speed_limit, forbidden, left, right, next_lane, edge, has_sine,
           proj_s, members, n_members, target, target_start, front, rear, new_steer, new_accel, active, cos_h, sin_h):
    """One highway-env frame of scene ``b`` in place (``env.simulate_frame``)."""
    n_lanes = xs.shape[0]
    for j in range(m):
        cos_h[j], sin_h[j] = math.cos(h[b, j]), math.sin(h[b, j])
    # ---- Road.act (behavior.decide) -------------------------------------------------------------
    for ln in range(n_lanes):  # behavior.project_on_lanes
        count = 0
        for j in range(m):
            s = x[b, j] - xs[ln]
            r = _lateral(ln, s, y[b, j], ys, amp, puls, phase, has_sine)
            proj_s[ln, j] = s
            if (abs(r) <= lane_w[ln] / 2 + bh.NEIGHBOUR_LANE_MARGIN_M and s >= -LANE_VEHICLE_LENGTH_M
                    and s < lane_len[ln] + LANE_VEHICLE_LENGTH_M and valid[b, j]):
                members[ln, count] = j  # the lane's slots, in slot order: neighbour scans visit only these
                count += 1
        n_members[ln] = count
    for i in range(n):
        active[i] = valid[b, i] and is_idm[b, i] and not crashed[b, i]
        ts = target_lane[b, i]
        target_start[i] = ts
        after_end = x[b, i] - xs[ts] > lane_len[ts] - LANE_VEHICLE_LENGTH_M / 2  # 1. follow_road
        target[i] = next_lane[ts] if (active[i] and after_end) else ts
        front[i], rear[i] = _neighbours(proj_s, members, n_members, i, lane_of[b, i])
    for i in range(n):  # 2. change_lane_policy, in list order
        if not (active[i] and lane_change[b, i]):
            continue
        lane_i = lane_of[b, i]
        if target[i] != lane_i:
            if edge[lane_i] != edge[target[i]]:
                continue
            # abort (behavior._abort_lane_changes): another IDM vehicle heading for my target lane, close ahead
            tgt = target[i]
            x0 = xs[lane_i]
            for j in range(n):
                if j == i or not (valid[b, j] and is_idm[b, j]) or lane_of[b, j] == tgt:
                    continue
                seen = target[j] if j < i else target_start[j]
                if seen != tgt:
                    continue
                d = (x[b, j] - x0) - (x[b, i] - x0)
                if 0 < d and d < _desired_gap(v[b, i], cos_h[i], sin_h[i], v[b, j], cos_h[j], sin_h[j]):
                    target[i] = lane_i
                    break
            continue
        if not timer[b, i] > bh.LANE_CHANGE_DELAY_S:  # utils.do_every
            continue
        timer[b, i] = 0.0
        if abs(v[b, i]) < 1:
            continue
        choice = target[i]
        for side_k in range(2):  # MOBIL (behavior.mobil): left first, right last (right wins)
            side = left[lane_i] if side_k == 0 else right[lane_i]
            if side < 0 or forbidden[side]:
                continue
            s = x[b, i] - xs[side]
            r = _lateral(side, s, y[b, i], ys, amp, puls, phase, has_sine)
            if not (abs(r) <= 2 * lane_w[side] and s >= 0 and s < lane_len[side] + LANE_VEHICLE_LENGTH_M):  # reachable
                continue
            nf, nr = _neighbours(proj_s, members, n_members, i, side)
            dl = delta[b, i]
            args = (x, cos_h, sin_h, v, lane_of, is_vehicle, is_idm, target_speed, xs, speed_limit)
            new_following_a = _idm(b, nr, nf, dl, *args)
            new_following_pred_a = _idm(b, nr, i, dl, *args)
            self_pred_a = _idm(b, i, nf, dl, *args)
            self_a = _idm(b, i, front[i], dl, *args)
            old_following_a = _idm(b, rear[i], front[i], dl, *args)
            old_following_pred_a = _idm(b, rear[i], i, dl, *args)
            safe = not (new_following_pred_a < -bh.LANE_CHANGE_MAX_BRAKING_IMPOSED_MPS2)  # Eq. M1
            jerk = self_pred_a - self_a + bh.POLITENESS * (new_following_pred_a - new_following_a + old_following_pred_a - old_following_a)  # Eq. M2
            if safe and not (jerk < bh.LANE_CHANGE_MIN_ACC_GAIN_MPS2):
                choice = side
        target[i] = choice
    for i in range(n):  # 3. steering (behavior.steering_control); 4. IDM in the current and the target lane
        if not active[i]:
            continue
        tl = target[i]
        vi, psi = v[b, i], h[b, i]
        s = x[b, i] - xs[tl]
        r = _lateral(tl, s, y[b, i], ys, amp, puls, phase, has_sine)
        future_heading = _lane_heading(tl, s + vi * bh.TAU_PURSUIT_S, amp, puls, phase, has_sine)
        heading_command = math.asin(min(max(-bh.KP_LATERAL * r / _not_zero(vi), -1.0), 1.0))
        heading_ref = future_heading + min(max(heading_command, -_PI / 4), _PI / 4)
        heading_rate_command = bh.KP_HEADING * _wrap(heading_ref - psi)
        slip_angle = math.asin(min(max(length[b, i] / 2 / _not_zero(vi) * heading_rate_command, -1.0), 1.0))
        new_steer[i] = min(max(math.atan(2 * math.tan(slip_angle)), -bh.MAX_STEERING_ANGLE_RAD), bh.MAX_STEERING_ANGLE_RAD)
        args = (x, cos_h, sin_h, v, lane_of, is_vehicle, is_idm, target_speed, xs, speed_limit)
        a = _idm(b, i, front[i], delta[b, i], *args)
        if tl != lane_of[b, i]:
            ahead, _ = _neighbours(proj_s, members, n_members, i, tl)
            a = min(a, _idm(b, i, ahead, delta[b, i], *args))
        new_accel[i] = min(max(a, -bh.ACC_MAX_MPS2), bh.ACC_MAX_MPS2)
    for i in range(n):
        if active[i]:
            target_lane[b, i] = target[i]
            steer[b, i] = new_steer[i]
            accel[b, i] = new_accel[i]

    # ---- Road.step: the bicycle model (physics.bicycle_step) ------------------------------------
    for i in range(n):
        if not (valid[b, i] and is_vehicle[b, i]):
            continue
        if is_idm[b, i]:
            timer[b, i] = timer[b, i] + dt
        vi = v[b, i]
        if crashed[b, i]:  # clip_actions
            steer[b, i] = 0.0
            accel[b, i] = -1.0 * vi
        if vi > physics.MAX_SPEED_MPS:
            accel[b, i] = min(accel[b, i], 1.0 * (physics.MAX_SPEED_MPS - vi))
        if vi < physics.MIN_SPEED_MPS:
            accel[b, i] = max(accel[b, i], 1.0 * (physics.MIN_SPEED_MPS - vi))
        psi = h[b, i]
        beta = math.atan(1 / 2 * math.tan(steer[b, i]))  # Eq. B1
        x_new = x[b, i] + vi * math.cos(psi + beta) * dt  # Eq. B2
        y_new = y[b, i] + vi * math.sin(psi + beta) * dt
        if has_impact[b, i]:
            x_new = x_new + impact_x[b, i]
            y_new = y_new + impact_y[b, i]
            crashed[b, i] = True
            has_impact[b, i] = False
        h[b, i] = psi + vi * math.sin(beta) / (length[b, i] / 2) * dt  # Eq. B3
        v[b, i] = vi + accel[b, i] * dt  # Eq. B4
        x[b, i], y[b, i] = x_new, y_new
        best, best_d = 0, np.inf  # LaneTable.closest_lane: the first minimum
        for ln in range(n_lanes):
            s = x_new - xs[ln]
            r = _lateral(ln, s, y_new, ys, amp, puls, phase, has_sine)
            d = abs(r) + max(s - lane_len[ln], 0.0) + max(-s, 0.0) + abs(_wrap(h[b, i] - _lane_heading(ln, s, amp, puls, phase, has_sine)))
            if d < best_d:
                best, best_d = ln, d
        lane_of[b, i] = best

    # ---- Road.step: collisions (collision.handle_collisions), pairs (i, j > i) in loop order ------
    for i in range(n):
        if not (valid[b, i] and is_vehicle[b, i]):
            continue
        for j in range(i + 1, m):
            if not valid[b, j] or not (check[b, i] or check[b, j]):
                continue
            dx, dy = x[b, j] - x[b, i], y[b, j] - y[b, i]
            diag_i = math.sqrt(length[b, i] ** 2 + width[b, i] ** 2)
            diag_j = math.sqrt(length[b, j] ** 2 + width[b, j] ** 2)
            if math.sqrt(dx * dx + dy * dy) > (diag_i + diag_j) / 2 + v[b, i] * dt:
                continue
            _collide(b, i, j, dt, x, y, h, v, length, width, is_vehicle, crashed, has_impact, impact_x, impact_y)


@_jit()
def _corners(xc, yc, hc, lc, wc, out):
    """``RoadObject.polygon()`` without the closing point (``collision._corners``), into ``out [4, 2]``."""
    c, s = math.cos(hc), math.sin(hc)
    px = (-lc / 2, -lc / 2, lc / 2, lc / 2)
    py = (-wc / 2, wc / 2, wc / 2, -wc / 2)
    for k in range(4):
        out[k, 0] = c * px[k] - s * py[k] + xc
        out[k, 1] = s * px[k] + c * py[k] + yc


@_jit(inline="always")
def _interval_distance(lo_a, hi_a, lo_b, hi_b):
    return lo_b - hi_a if lo_a < lo_b else lo_a - hi_b


@_jit()
def _collide(b, i, j, dt, x, y, h, v, length, width, is_vehicle, crashed, has_impact, impact_x, impact_y):
    """``utils.are_polygons_intersecting`` for objects i and j (``collision.are_polygons_intersecting``),
    then their crash flags and impacts (the later pair in loop order overwrites an impact)."""
    a = np.empty((4, 2))
    o = np.empty((4, 2))
    _corners(x[b, i], y[b, i], h[b, i], length[b, i], width[b, i], a)
    _corners(x[b, j], y[b, j], h[b, j], length[b, j], width[b, j], o)
    rel_x = v[b, i] * math.cos(h[b, i]) * dt - v[b, j] * math.cos(h[b, j]) * dt
    rel_y = v[b, i] * math.sin(h[b, i]) * dt - v[b, j] * math.sin(h[b, j]) * dt
    intersecting, will = True, True
    best_k, best_abs, best_nx, best_ny = -1, np.inf, 0.0, 0.0
    for k in range(8):
        p = a if k < 4 else o
        q0, q1 = k % 4, (k % 4 + 1) % 4
        nx = -p[q1, 1] + p[q0, 1]
        ny = p[q1, 0] - p[q0, 0]
        norm = math.sqrt(nx ** 2 + ny ** 2)
        nx, ny = nx / norm, ny / norm
        min_a, max_a, min_b, max_b = np.inf, -np.inf, np.inf, -np.inf
        for c in range(4):
            pa = a[c, 0] * nx + a[c, 1] * ny
            pb = o[c, 0] * nx + o[c, 1] * ny
            min_a, max_a = min(min_a, pa), max(max_a, pa)
            min_b, max_b = min(min_b, pb), max(max_b, pb)
        if _interval_distance(min_a, max_a, min_b, max_b) > 0:
            intersecting = False
        vp = nx * rel_x + ny * rel_y
        if vp < 0:
            min_a = min_a + vp
        else:
            max_a = max_a + vp
        dist = _interval_distance(min_a, max_a, min_b, max_b)
        if dist > 0:
            will = False
        if abs(dist) < best_abs:
            best_k, best_abs, best_nx, best_ny = k, abs(dist), nx, ny
    if intersecting:
        crashed[b, i] = True
        crashed[b, j] = True
    if not will:
        return
    cdx = (a[0, 0] + a[1, 0] + a[2, 0] + a[3, 0]) / 4 - (o[0, 0] + o[1, 0] + o[2, 0] + o[3, 0]) / 4
    cdy = (a[0, 1] + a[1, 1] + a[2, 1] + a[3, 1]) / 4 - (o[0, 1] + o[1, 1] + o[2, 1] + o[3, 1]) / 4
    sign = 1.0 if cdx * best_nx + cdy * best_ny > 0 else -1.0
    tx, ty = best_abs * best_nx * sign, best_abs * best_ny * sign
    if is_vehicle[b, j]:
        impact_x[b, i], impact_y[b, i] = tx * 0.5, ty * 0.5
        impact_x[b, j], impact_y[b, j] = -tx / 2, -ty / 2
        has_impact[b, j] = True
    else:
        impact_x[b, i], impact_y[b, i] = tx * 1.0, ty * 1.0
    has_impact[b, i] = True


@_jit(parallel=True)
def _run(frames, dt, n, x, y, h, v, length, width, target_speed, timer, delta, steer, accel, impact_x, impact_y,
         lane_of, target_lane, valid, is_vehicle, is_idm, lane_change, check, crashed, has_impact,
         xs, ys, lane_len, lane_w, amp, puls, phase, speed_limit, forbidden, left, right, next_lane, edge, has_sine):
    n_scenes, m = x.shape
    n_lanes = xs.shape[0]
    n_chunks = (n_scenes + _SCENES_PER_CHUNK - 1) // _SCENES_PER_CHUNK
    for c in numba.prange(n_chunks):
        proj_s = np.empty((n_lanes, m))
        members = np.empty((n_lanes, m), dtype=np.int64)
        n_members = np.empty(n_lanes, dtype=np.int64)
        target = np.empty(n, dtype=np.int64)
        target_start = np.empty(n, dtype=np.int64)
        front = np.empty(n, dtype=np.int64)
        rear = np.empty(n, dtype=np.int64)
        new_steer = np.empty(n)
        new_accel = np.empty(n)
        active = np.empty(n, dtype=np.bool_)
        cos_h = np.empty(m)
        sin_h = np.empty(m)
        for b in range(c * _SCENES_PER_CHUNK, min((c + 1) * _SCENES_PER_CHUNK, n_scenes)):
            for _ in range(frames):
                _frame(b, n, m, dt, x, y, h, v, length, width, target_speed, timer, delta, steer, accel, impact_x, impact_y,
                       lane_of, target_lane, valid, is_vehicle, is_idm, lane_change, check, crashed, has_impact,
                       xs, ys, lane_len, lane_w, amp, puls, phase, speed_limit, forbidden, left, right, next_lane, edge, has_sine,
                       proj_s, members, n_members, target, target_start, front, rear, new_steer, new_accel, active, cos_h, sin_h)


def _arrays(t: torch.Tensor) -> np.ndarray:
    return t.numpy()  # shares memory: the kernel writes the state in place


def simulate_frames(st: VehicleState, lanes: LaneTable, dt_s: float, frames: int, threads: int | None = None) -> None:
    """``frames`` highway-env frames of every scene, in place (as ``frames`` calls of ``env.simulate_frame``).

    The state must be float64 CPU tensors, contiguous. Threads: ``threads``, default torch's intra-op
    thread count, each taking the next chunk of scenes when it is free (dynamic scheduling: a thread
    slowed by another process on its core does not hold the others back).
    """
    if not AVAILABLE:
        raise RuntimeError("the batched simulator's CPU kernel needs numba (pip install numba)")
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads or torch_threads, numba.config.NUMBA_NUM_THREADS)))
    numba.set_parallel_chunksize(1)
    f = [_arrays(getattr(st, k)) for k in ("x_m", "y_m", "heading_rad", "speed_mps", "length_m", "width_m", "target_speed_mps",
                                             "timer_s", "delta", "steer_rad", "accel_mps2", "impact_x_m", "impact_y_m",
                                             "lane", "target_lane", "valid", "is_vehicle", "is_idm", "lane_change",
                                             "check_collisions", "crashed", "has_impact")]
    ln = [_arrays(getattr(lanes, k)) for k in ("x_start_m", "y_start_m", "length_m", "width_m", "amplitude_m", "pulsation_radpm",
                                                 "phase_rad", "speed_limit_mps", "forbidden", "left", "right", "next_lane", "edge")]
    _run(int(frames), float(dt_s), int(st.n_vehicles), *f, *ln, bool(lanes.has_sine))
    # numba's OpenMP layer, started by the first parallel call, sets the OpenMP thread count that torch
    # shares to all cores: a process held to 1 thread (a sweep trial beside another) would run its
    # learner and every later frame on 2. Give torch its count back.
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


def usable(st: VehicleState) -> bool:
    """Whether :func:`simulate_frames` can step this state (numba present, float64 on the CPU, contiguous)."""
    return AVAILABLE and st.x_m.device.type == "cpu" and st.x_m.dtype == torch.float64 and all(
        t.is_contiguous() for t in st.tensors().values())
