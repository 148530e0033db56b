"""Expert demonstrations for training: pairs file -> arrays, and the fixed obs normaliser."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from drive_drail.errors import DriveDrailWarning, UserError
from drive_drail.pairs.storage import read_pairs, select_task, to_arrays

class Demos(NamedTuple):
    obs: np.ndarray  # [N, OBS_DIM] float32, spec-scaled (not yet standardised)
    action_unit: np.ndarray  # [N, 2] float32 in [-1, 1]
    obs_mean: np.ndarray  # [OBS_DIM]
    obs_std: np.ndarray  # [OBS_DIM]
    action_hz: float
    source: str


def load_demos(path: str, task: str | None, policy_frequency_hz: float, min_std: float, scenario_task: str | None = None) -> Demos:
    """Load expert pairs; their action rate must match the scenario's policy frequency.

    The normaliser is the demos' per-feature mean and std, the std floored at ``min_std`` (TrainConfig's
    ``obs_std_floor``) so that a feature constant in the demos (e.g. the lane count) cannot explode.
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
    mean = arrays.obs.mean(axis=0).astype(np.float32)
    std = np.maximum(arrays.obs.std(axis=0), min_std).astype(np.float32)
    return Demos(arrays.obs, arrays.action_unit, mean, std, action_hz, str(path))
