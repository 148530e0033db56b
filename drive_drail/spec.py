"""The one observation and action spec shared by logs, simulators, trainer and deploy.

Frame convention (ISO 8855 style, right-handed): x points along the road's driving
direction, y points to the LEFT, headings are counter-clockwise from +x in radians.
Every log reader and simulator adapter converts into this frame (highway-env's
screen frame has y pointing right, so its adapter mirrors y, heading and steering).

Lane indices count from the leftmost lane of the carriageway (0 = leftmost), which is
highway-env's convention: LANE_LEFT decreases the index.

The observation is defined by ONE pure, vectorised function, :func:`observe_batch`,
from a :class:`SceneBatch`. :func:`observe` (a :class:`Scene`) and :func:`observe_one`
(plain columns) are its single-scene forms: the same arithmetic in the same order on
Python floats, bitwise equal to it (tested on random scenes), because for one live scene
numpy's per-call cost of ~50 tiny array operations outweighs the work. The log converter
and every simulator adapter go through these, which is what makes log pairs and
simulator rollouts the same kind of data.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, Sequence

import numpy as np

SPEC_VERSION = "2.0"
"""2.0: the lead vehicle in the ego lane (presence, gap, closing speed) out to LEAD_RANGE_M, and a
cubic steering map (STEER_SLOPE_RAD). Pairs, actors and exports of 1.0 are refused (re-convert, retrain)."""

K_NEIGHBOURS = 6
"""Number of nearest other vehicles in the observation."""

NEIGHBOUR_RADIUS_M = 100.0
"""Vehicles whose centre is farther than this from the ego centre are 'absent' [m]."""


@dataclass(frozen=True)
class Feature:
    """One observation entry: ``normalised = raw / scale``."""

    name: str
    unit: str
    scale: float
    doc: str


LEAD_RANGE_M = 200.0
"""The lead vehicle is looked for this far ahead [m]: past every scenario's event at its start
(stop's stalled car 90-140 m ahead, 130-180 m on fast_approach; merge's lane-end obstacle), where the
K nearest neighbours within NEIGHBOUR_RADIUS_M miss it in traffic."""

LEAD_HALF_WIDTH_M = 2.0
"""A vehicle leads when its centre lies within this of the ego lane's centre line [m] (half of
highway-env's 4 m lane; MetaDrive's lanes are 3.5 m wide). The centre line is the straight line
through the ego's lane point along the lane heading, exact on straight roads."""

EGO_FEATURES: tuple[Feature, ...] = (
    Feature("ego_v_long", "m/s", 40.0, "ego velocity along the lane direction"),
    Feature("ego_v_lat", "m/s", 5.0, "ego velocity across the lane, +left"),
    Feature("ego_heading_to_lane", "rad", 0.5, "ego heading minus lane heading, wrapped to (-pi, pi]"),
    Feature("ego_lane_offset", "m", 2.0, "signed offset of the ego centre from the lane centre, +left"),
    Feature("ego_lane_index", "lanes", 4.0, "ego lane index, 0 = leftmost"),
    Feature("ego_lane_count", "lanes", 4.0, "number of lanes of the carriageway"),
    Feature("lead_present", "1", 1.0, "1 if a vehicle ahead in the ego lane within LEAD_RANGE_M, else 0"),
    Feature("lead_gap_m", "m", 100.0, "centre distance along the lane to the lead vehicle; LEAD_RANGE_M if none"),
    Feature("lead_closing_mps", "m/s", 20.0, "ego speed minus lead speed along the lane (+ = closing); 0 if none"),
)

NEIGHBOUR_FEATURES: tuple[Feature, ...] = (
    Feature("present", "1", 1.0, "1 if the slot holds a vehicle within the radius, else 0 (slot all zeros)"),
    Feature("dx", "m", 100.0, "relative position along the ego heading"),
    Feature("dy", "m", 10.0, "relative position across the ego heading, +left"),
    Feature("dvx", "m/s", 20.0, "relative velocity along the ego heading"),
    Feature("dvy", "m/s", 5.0, "relative velocity across the ego heading, +left"),
    Feature("cos_dheading", "1", 1.0, "cosine of the relative heading"),
    Feature("sin_dheading", "1", 1.0, "sine of the relative heading"),
    Feature("dlane", "lanes", 2.0, "lane index minus the ego lane index (+ = to the right)"),
)

OBS_FEATURES: tuple[Feature, ...] = EGO_FEATURES + tuple(
    Feature(f"n{k}_{f.name}", f.unit, f.scale, f"neighbour {k} (k-th nearest): {f.doc}")
    for k in range(K_NEIGHBOURS)
    for f in NEIGHBOUR_FEATURES
)
OBS_NAMES: tuple[str, ...] = tuple(f.name for f in OBS_FEATURES)
OBS_DIM = len(OBS_FEATURES)
_OBS_SCALE = np.array([f.scale for f in OBS_FEATURES], dtype=np.float64)


# --------------------------------------------------------------------------------------
# Action spec
# --------------------------------------------------------------------------------------

ACCEL_RANGE_MPS2 = (-5.0, 5.0)
"""Longitudinal acceleration range [m/s^2] (highway-env ContinuousAction's)."""

STEER_RANGE_RAD = (-np.pi / 4, np.pi / 4)
"""Front-wheel steering angle range [rad], + = left (highway-env's range)."""

STEER_SLOPE_RAD = 0.2
"""Steering per unit of policy action at zero [rad]. The policy's steering is a cubic of its unit
action (:func:`steer_from_unit`): lane keeping needs ~0.02 rad and highway lane changes up to ~0.08
rad (expert p99), only 2.5 % and 10 % of a linear +-pi/4 unit range, too little for an MSE in unit
space or an exploration std to resolve; the cubic gives them 0.1 and 0.35 of the unit range and
still reaches +-pi/4, which the merge expert needs to pull out at walking pace (10 % of its pairs
steer beyond 0.2 rad, median speed 1.4 m/s)."""

_STEER_CUBIC_RAD = STEER_RANGE_RAD[1] - STEER_SLOPE_RAD


def steer_from_unit(steer_unit):
    """``steer = s0 * u + (max - s0) * u^3`` [rad] for a unit steering ``u`` in [-1, 1] (s0 = STEER_SLOPE_RAD).
    Odd, strictly increasing, ``steer(+-1) = +-pi/4``. Floats or arrays."""
    return STEER_SLOPE_RAD * steer_unit + _STEER_CUBIC_RAD * (steer_unit * steer_unit * steer_unit)


def steer_to_unit(steer_rad):
    """Inverse of :func:`steer_from_unit` (Cardano: ``u^3 + p u - q = 0`` has one real root since p > 0),
    clipped to [-1, 1]. Arrays [rad]."""
    p = STEER_SLOPE_RAD / _STEER_CUBIC_RAD
    q = np.asarray(steer_rad, dtype=np.float64) / _STEER_CUBIC_RAD
    root = np.sqrt(q * q / 4.0 + p**3 / 27.0)
    return np.clip(np.cbrt(q / 2.0 + root) + np.cbrt(q / 2.0 - root), -1.0, 1.0)


ACTION_NAMES = ("accel_mps2", "steer_rad")
ACTION_DIM = 2


class MetaAction(enum.IntEnum):
    """Discrete meta-action labels; the values match highway-env's DiscreteMetaAction."""

    LANE_LEFT = 0
    IDLE = 1
    LANE_RIGHT = 2
    FASTER = 3
    SLOWER = 4


_ACTION_LOW = np.array([ACCEL_RANGE_MPS2[0], STEER_RANGE_RAD[0]])
_ACTION_HIGH = np.array([ACCEL_RANGE_MPS2[1], STEER_RANGE_RAD[1]])


def action_to_physical(action_unit: np.ndarray) -> np.ndarray:
    """Map a policy action in [-1, 1]^2 to ``[accel_mps2, steer_rad]``: acceleration linear, steering
    :func:`steer_from_unit`. Shape ``[..., 2]``."""
    a = np.minimum(np.maximum(np.asarray(action_unit, dtype=np.float64), -1.0), 1.0)  # clip; np.clip costs 5x on one action
    out = _ACTION_LOW + (a + 1.0) * 0.5 * (_ACTION_HIGH - _ACTION_LOW)
    out[..., 1] = steer_from_unit(a[..., 1])
    return out


def action_to_physical_one(accel_unit: float, steer_unit: float) -> tuple[float, float]:
    """:func:`action_to_physical` of one action on Python floats: ``(accel_mps2, steer_rad)``.
    Equal to the array form (tested); the MetaDrive adapter calls it every step, where numpy's
    per-call cost on a 2-vector is most of the work."""
    a = min(max(accel_unit, -1.0), 1.0)
    s = min(max(steer_unit, -1.0), 1.0)
    return (ACCEL_RANGE_MPS2[0] + (a + 1.0) * 0.5 * (ACCEL_RANGE_MPS2[1] - ACCEL_RANGE_MPS2[0]), steer_from_unit(s))


def no_reverse_accel_mps2(accel_mps2, speed_mps, hold_s: float):
    """The acceleration actually applied for a command held ``hold_s`` seconds: braking stops at a
    standstill, never reverses. ``accel >= -max(speed, 0) / hold_s``, so speed reaches 0 at the end of
    the hold at the latest and a stopped vehicle's braking does nothing.

    Every simulator applies it to every policy (and the scripted experts obey it): highway-env lets
    a vehicle brake down to -40 m/s, and learned stop policies used to reverse away from the car
    they had stopped behind. Works on floats or arrays of the same shape [m/s^2, m/s, s].
    """
    return np.maximum(accel_mps2, -np.maximum(speed_mps, 0.0) / hold_s)


def action_to_unit(action_physical: np.ndarray) -> np.ndarray:
    """Inverse of :func:`action_to_physical`, clipped to [-1, 1]. Shape ``[..., 2]``."""
    a = np.asarray(action_physical, dtype=np.float64)
    out = physical_to_linear_unit(a)
    out[..., 1] = steer_to_unit(a[..., 1])
    return out


def physical_to_linear_unit(action_physical: np.ndarray) -> np.ndarray:
    """``[accel_mps2, steer_rad]`` -> the LINEAR unit map of a simulator's own continuous action over the
    spec ranges (highway-env's ``ContinuousAction`` lmaps [-1, 1] onto them), clipped. Shape ``[..., 2]``."""
    a = np.asarray(action_physical, dtype=np.float64)
    return np.minimum(np.maximum(2.0 * (a - _ACTION_LOW) / (_ACTION_HIGH - _ACTION_LOW) - 1.0, -1.0), 1.0)


# --------------------------------------------------------------------------------------
# Scene snapshot
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vehicle:
    """One vehicle of a scene snapshot, in the spec frame."""

    x_m: float
    y_m: float
    vx_mps: float
    vy_mps: float
    heading_rad: float
    length_m: float
    width_m: float
    lane: int
    """Lane index, 0 = leftmost; -1 if unknown."""


@dataclass(frozen=True)
class LaneContext:
    """The ego's lane, as both logs and simulators provide it."""

    count: int
    offset_m: float
    """Signed offset of the ego centre from its lane centre, + = left [m]."""
    heading_rad: float
    """Direction of the lane at the ego position [rad]."""


@dataclass(frozen=True)
class Scene:
    """A scene snapshot: the ego, every other vehicle on its carriageway, the ego lane."""

    ego: Vehicle
    others: Sequence[Vehicle]
    lane: LaneContext


class SceneBatch(NamedTuple):
    """B padded scenes of M vehicle slots each, in the spec frame.

    Per-vehicle arrays have shape ``[B, M]``; ``valid`` marks real vehicles, ``ego``
    ``[B]`` holds the ego slot of each scene; the lane arrays have shape ``[B]`` and
    describe the ego lane.
    """

    x_m: np.ndarray
    y_m: np.ndarray
    vx_mps: np.ndarray
    vy_mps: np.ndarray
    heading_rad: np.ndarray
    lane: np.ndarray
    valid: np.ndarray
    ego: np.ndarray
    lane_count: np.ndarray
    lane_offset_m: np.ndarray
    lane_heading_rad: np.ndarray


def wrap_angle(angle_rad: np.ndarray) -> np.ndarray:
    """Wrap angles to (-pi, pi]."""
    return np.pi - np.mod(np.pi - np.asarray(angle_rad), 2.0 * np.pi)


def observe(scene: Scene) -> np.ndarray:
    """Normalised observation of one scene, shape ``[OBS_DIM]``, float32 (the ego is slot 0)."""
    vehicles = [scene.ego, *scene.others]
    return observe_one(
        [v.x_m for v in vehicles], [v.y_m for v in vehicles], [v.vx_mps for v in vehicles],
        [v.vy_mps for v in vehicles], [v.heading_rad for v in vehicles], [v.lane for v in vehicles],
        0, scene.lane.count, scene.lane.offset_m, scene.lane.heading_rad,
    )  # fmt: skip


def observe_one(
    x_m: Sequence[float],
    y_m: Sequence[float],
    vx_mps: Sequence[float],
    vy_mps: Sequence[float],
    heading_rad: Sequence[float],
    lane: Sequence[int],
    ego: int,
    lane_count: float,
    lane_offset_m: float,
    lane_heading_rad: float,
) -> np.ndarray:
    """:func:`observe_batch` of one scene whose M slots are all real vehicles, shape ``[OBS_DIM]``, float32.

    Per-vehicle sequences have length M (lists are fastest); ``ego`` is the ego's slot and
    the lane arguments describe the ego lane, as in :class:`SceneBatch`.
    """
    ex, ey, evx, evy, eh, el = x_m[ego], y_m[ego], vx_mps[ego], vy_mps[ego], heading_rad[ego], int(lane[ego])
    cl, sl = math.cos(lane_heading_rad), math.sin(lane_heading_rad)
    wrapped = math.pi - (math.pi - (eh - lane_heading_rad)) % (2.0 * math.pi)  # wrap_angle
    ego_along = evx * cl + evy * sl
    raw = [ego_along, -evx * sl + evy * cl, wrapped, float(lane_offset_m), float(el), float(lane_count)]

    ch, sh = math.cos(eh), math.sin(eh)
    radius2 = NEIGHBOUR_RADIUS_M**2
    candidates = []
    lead_gap, lead = LEAD_RANGE_M, -1
    for i in range(len(x_m)):
        if i == ego:
            continue
        rx, ry = x_m[i] - ex, y_m[i] - ey
        dist2 = rx * rx + ry * ry
        if dist2 <= radius2:  # False for NaN, as in the batch form
            candidates.append((dist2, i, rx, ry))
        along = rx * cl + ry * sl
        if 0.0 < along < lead_gap and abs(-rx * sl + ry * cl + lane_offset_m) <= LEAD_HALF_WIDTH_M:
            lead_gap, lead = along, i  # strict <: the first slot wins a tie, as argmin does
    if lead >= 0:
        raw += [1.0, lead_gap, ego_along - (vx_mps[lead] * cl + vy_mps[lead] * sl)]
    else:
        raw += [0.0, LEAD_RANGE_M, 0.0]
    candidates.sort(key=itemgetter(0))  # stable: equal distances keep slot order, like argsort(kind="stable")
    for _, i, rx, ry in candidates[:K_NEIGHBOURS]:
        rvx, rvy = vx_mps[i] - evx, vy_mps[i] - evy
        dh = heading_rad[i] - eh
        li = int(lane[i])
        raw += [1.0, rx * ch + ry * sh, -rx * sh + ry * ch, rvx * ch + rvy * sh, -rvx * sh + rvy * ch,
                math.cos(dh), math.sin(dh), float(li - el) if li >= 0 and el >= 0 else 0.0]  # fmt: skip
    raw += [0.0] * (OBS_DIM - len(raw))
    return (np.array(raw) / _OBS_SCALE).astype(np.float32)


def observe_batch(scenes: SceneBatch) -> np.ndarray:
    """Normalised observations of B scenes, shape ``[B, OBS_DIM]``, float32.

    Pure and vectorised: no loop over scenes or vehicles. Neighbour slots are ordered
    by centre distance to the ego (nearest first); slots without a vehicle within
    :data:`NEIGHBOUR_RADIUS_M` are all zeros. Gathers index the flattened ``[B * M]`` arrays
    and features are written into one preallocated row each (the simulator and the converter
    call this on every step: benchmarks/batched_sim.py, benchmarks/convert_highd.py).
    """
    n_b, m = scenes.x_m.shape
    b = np.arange(n_b)
    e = scenes.ego
    flat_e = b * m + e
    x, y, vx, vy, hd = scenes.x_m, scenes.y_m, scenes.vx_mps, scenes.vy_mps, scenes.heading_rad
    ego_x, ego_y = x.ravel()[flat_e], y.ravel()[flat_e]
    ego_vx, ego_vy = vx.ravel()[flat_e], vy.ravel()[flat_e]
    ego_h = hd.ravel()[flat_e]
    ego_lane = scenes.lane.ravel()[flat_e]
    cl, sl = np.cos(scenes.lane_heading_rad), np.sin(scenes.lane_heading_rad)
    ego_along = ego_vx * cl + ego_vy * sl
    rx, ry = x - ego_x[:, None], y - ego_y[:, None]

    raw = np.zeros((n_b, OBS_DIM))  # ego features, then K_NEIGHBOURS slots of NEIGHBOUR_FEATURES
    # Lead vehicle: the nearest centre ahead along the lane within LEAD_HALF_WIDTH_M of the ego lane's centre line.
    along = rx * cl[:, None] + ry * sl[:, None]
    across = -rx * sl[:, None] + ry * cl[:, None] + scenes.lane_offset_m[:, None]
    is_lead = scenes.valid & (along > 0.0) & (along < LEAD_RANGE_M) & (np.abs(across) <= LEAD_HALF_WIDTH_M)
    is_lead.ravel()[flat_e] = False
    lead_along = np.where(is_lead, along, np.inf)
    lead = np.argmin(lead_along, axis=1)
    flat_l = b * m + lead
    has_lead = is_lead.ravel()[flat_l]
    lead_speed = vx.ravel()[flat_l] * cl + vy.ravel()[flat_l] * sl
    raw[:, 0] = ego_along
    raw[:, 1] = -ego_vx * sl + ego_vy * cl
    raw[:, 2] = wrap_angle(ego_h - scenes.lane_heading_rad)
    raw[:, 3] = scenes.lane_offset_m
    raw[:, 4] = ego_lane
    raw[:, 5] = scenes.lane_count
    raw[:, 6] = has_lead
    raw[:, 7] = np.where(has_lead, lead_along.ravel()[flat_l], LEAD_RANGE_M)
    raw[:, 8] = np.where(has_lead, ego_along - lead_speed, 0.0)

    dist2 = rx * rx + ry * ry
    candidate = scenes.valid & (dist2 <= NEIGHBOUR_RADIUS_M**2)
    candidate.ravel()[flat_e] = False
    dist2 = np.where(candidate, dist2, np.inf)
    k = min(K_NEIGHBOURS, m)
    # One sort of a few dozen slots beats partition-then-sort (and their gathers) at every B.
    nearest = np.argsort(dist2, axis=1, kind="stable")[:, :k]  # [B, k], nearest first
    flat_n = (b * m)[:, None] + nearest  # [B, k]
    present = candidate.ravel()[flat_n]
    g_rx, g_ry = rx.ravel()[flat_n], ry.ravel()[flat_n]
    g_rvx, g_rvy = vx.ravel()[flat_n] - ego_vx[:, None], vy.ravel()[flat_n] - ego_vy[:, None]
    ch, sh = np.cos(ego_h)[:, None], np.sin(ego_h)[:, None]
    dh = hd.ravel()[flat_n] - ego_h[:, None]
    g_lane = scenes.lane.ravel()[flat_n]
    dlane = np.where((g_lane >= 0) & (ego_lane[:, None] >= 0), g_lane - ego_lane[:, None], 0)
    n_ego, n_nb = len(EGO_FEATURES), len(NEIGHBOUR_FEATURES)
    nb = raw[:, n_ego : n_ego + k * n_nb].reshape(n_b, k, n_nb)  # a view: rows are contiguous within a slot
    # NEIGHBOUR_FEATURES in order: the relative state rotated into the ego frame
    for f, val in enumerate((1.0, g_rx * ch + g_ry * sh, -g_rx * sh + g_ry * ch, g_rvx * ch + g_rvy * sh,
                             -g_rvx * sh + g_rvy * ch, np.cos(dh), np.sin(dh), dlane)):
        nb[:, :, f] = np.where(present, val, 0.0)
    raw /= _OBS_SCALE
    return raw.astype(np.float32)


def standardise(obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(obs - mean) / std`` as float32, ``[..., OBS_DIM]``: the fixed standardisation (statistics from the
    expert pairs, never updated from agent data) that every training environment applies."""
    return ((obs - mean) / std).astype(np.float32)


def spec_dict() -> dict:
    """The spec as plain data, written into Parquet metadata and deploy manifests."""
    return {
        "spec_version": SPEC_VERSION,
        "frame": "x along driving direction, y left, heading CCW [rad]",
        "k_neighbours": K_NEIGHBOURS,
        "neighbour_radius_m": NEIGHBOUR_RADIUS_M,
        "lead_range_m": LEAD_RANGE_M,
        "lead_half_width_m": LEAD_HALF_WIDTH_M,
        "observation": [
            {"name": f.name, "unit": f.unit, "scale": f.scale, "doc": f.doc} for f in OBS_FEATURES
        ],
        "action": {
            "names": list(ACTION_NAMES),
            "accel_range_mps2": list(ACCEL_RANGE_MPS2),
            "steer_range_rad": list(STEER_RANGE_RAD),
            "steer_map": "steer_rad = s0 * u + (steer_max - s0) * u^3",
            "steer_slope_rad": STEER_SLOPE_RAD,
            "policy_range": [-1.0, 1.0],
        },
        "meta_actions": {m.name: int(m) for m in MetaAction},
    }
