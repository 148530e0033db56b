"""Expert demonstrations for training: pairs file -> arrays, and the fixed obs normaliser."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from drive_drail import spec
from drive_drail.errors import DriveDrailWarning, UserError
from drive_drail.models.encoders import EGO_DIM, PRESENT, SLOT_DIM
from drive_drail.pairs.storage import read_pairs, select_task, to_arrays

LANE_FEATURES = ("ego_v_lat", "ego_heading_to_lane", "ego_lane_offset", "ego_lane_index")
"""The ego's lane-keeping features, whose std floor is ``TrainConfig.lane_std_floor``: in the demos they
spread far less than the shared floor (offsets of tenths of a metre are 0.05-0.1 in spec units), so the
shared floor shrinks the very signal that keeps the car off a solid edge line."""
_LANE = [spec.OBS_NAMES.index(name) for name in LANE_FEATURES]


class Demos(NamedTuple):
    obs: np.ndarray  # [N, OBS_DIM] float32, spec-scaled (not yet standardised)
    action_unit: np.ndarray  # [N, 2] float32 in [-1, 1]
    obs_mean: np.ndarray  # [OBS_DIM]
    obs_std: np.ndarray  # [OBS_DIM]
    action_hz: float
    source: str


def load_demos(path: str, task: str | None, policy_frequency_hz: float, min_std: float, scenario_task: str | None = None,
               slot_shared: bool = False, lane_min_std: float | None = None) -> Demos:
    """Load expert pairs; their action rate must match the scenario's policy frequency.

    The normaliser is the demos' per-feature mean and std, the std floored at ``min_std`` (TrainConfig's
    ``obs_std_floor``) so that a feature constant in the demos (e.g. the lane count) cannot explode;
    :data:`LANE_FEATURES` are floored at ``lane_min_std`` instead where it is given.
    ``slot_shared``: the normaliser of the set encoder (:func:`slot_shared_normaliser`).
    ``scenario_task``: warn (:class:`DriveDrailWarning`) when no pair carries that manoeuvre label.
    """
    pairs, meta = read_pairs(path)
    action_hz = float(meta.get("action_hz", 0.0))
    if abs(action_hz - policy_frequency_hz) > 1e-6:
        raise UserError(
            f"{path}: pairs were converted at {action_hz:g} Hz but the scenario acts at {policy_frequency_hz:g} Hz; "
            f"re-run `drive-drail convert --action-hz {policy_frequency_hz:g}`"
        )
    label = f"is_{scenario_task}"
    if scenario_task is not None and label in pairs.columns and not pairs[label].any():
        found = ", ".join(sorted({str(m) for m in pairs["maneuver"].unique()})) if "maneuver" in pairs.columns else "none"
        warnings.warn(f"{path}: no pair is labelled '{scenario_task}', the scenario's manoeuvre (labels found: {found}); "
                      "these demos may not show the task", DriveDrailWarning, stacklevel=2)
    pairs = select_task(pairs, task)
    if len(pairs) < 2:
        raise UserError(f"{path}: fewer than 2 expert pairs{' for task ' + task if task else ''}")
    arrays = to_arrays(pairs)
    if slot_shared:
        mean, std = slot_shared_normaliser(arrays.obs, min_std)
    else:
        mean, std = (m.astype(np.float32) for m in _mean_std(arrays.obs, min_std))
    if lane_min_std is not None:
        std[_LANE] = np.maximum(arrays.obs[:, _LANE].std(axis=0), lane_min_std)
    return Demos(arrays.obs, arrays.action_unit, mean, std, action_hz, str(path))


def slot_shared_normaliser(obs: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[OBS_DIM]`` for the set encoder (``models/encoders.py``) from ``obs [N, OBS_DIM]``.

    Ego features: per feature, as for the flat policy. Neighbour features: one mean and std per
    feature over every occupied slot of every pair, the same for all K slots, since one shared
    network reads them all (a slot rarely filled in the demos would otherwise get its own,
    unrepresentative statistics). ``present`` keeps mean 0 and std 1: the encoder reads it as a mask.
    Stds are floored at ``min_std``.
    """
    mean = np.zeros(spec.OBS_DIM, np.float64)
    std = np.ones(spec.OBS_DIM, np.float64)
    mean[:EGO_DIM], std[:EGO_DIM] = _mean_std(obs[:, :EGO_DIM], min_std)
    slots = obs[:, EGO_DIM:].reshape(-1, SLOT_DIM)
    occupied = slots[slots[:, PRESENT] > 0.5]
    if len(occupied):
        slot_mean, slot_std = _mean_std(occupied, min_std)
        slot_mean[PRESENT], slot_std[PRESENT] = 0.0, 1.0
        mean[EGO_DIM:] = np.tile(slot_mean, spec.K_NEIGHBOURS)
        std[EGO_DIM:] = np.tile(slot_std, spec.K_NEIGHBOURS)
    return mean.astype(np.float32), std.astype(np.float32)


def _mean_std(x: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std of ``x [N, D]`` in its own dtype, the std floored at ``min_std``."""
    return x.mean(axis=0), np.maximum(x.std(axis=0), min_std)
