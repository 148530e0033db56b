"""Expert demonstrations for training: pairs file -> arrays, and the fixed obs normaliser."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drive_drail.errors import UserError
from drive_drail.pairs.storage import read_pairs, select_task, to_arrays

MIN_STD = 0.1
"""Floor for the per-feature std of the (already spec-scaled) observations, so a
feature that is constant in the demos (e.g. the lane count) cannot explode."""


class Demos(NamedTuple):
    obs: np.ndarray  # [N, OBS_DIM] float32, spec-scaled (not yet standardised)
    action_unit: np.ndarray  # [N, 2] float32 in [-1, 1]
    obs_mean: np.ndarray  # [OBS_DIM]
    obs_std: np.ndarray  # [OBS_DIM]
    action_hz: float
    source: str


def load_demos(path: str, task: str | None, policy_frequency_hz: float) -> Demos:
    """Load expert pairs; their action rate must match the scenario's policy frequency."""
    pairs, meta = read_pairs(path)
    action_hz = float(meta.get("action_hz", 0.0))
    if abs(action_hz - policy_frequency_hz) > 1e-6:
        raise UserError(
            f"{path}: pairs were converted at {action_hz:g} Hz but the scenario acts at {policy_frequency_hz:g} Hz; "
            f"re-run `drive-drail convert --action-hz {policy_frequency_hz:g}`"
        )
    pairs = select_task(pairs, task)
    if len(pairs) < 2:
        raise UserError(f"{path}: fewer than 2 expert pairs{' for task ' + task if task else ''}")
    arrays = to_arrays(pairs)
    mean = arrays.obs.mean(axis=0).astype(np.float32)
    std = np.maximum(arrays.obs.std(axis=0), MIN_STD).astype(np.float32)
    return Demos(arrays.obs, arrays.action_unit, mean, std, action_hz, str(path))
