"""The driving tasks, once for every simulator: when an episode ends, and when it is a success.

One module per task (:mod:`~drive_drail.tasks.lane_change`, :mod:`~drive_drail.tasks.merge`,
:mod:`~drive_drail.tasks.stop`), each working on ``[B]`` arrays of :class:`Measurements`
(B = 1 for the live adapters of highway-env and MetaDrive, B scenes for the batched simulator).
The simulators only measure: collision, off-road, route completion, the merge and stop
quantities. The thresholds come from the scenario file (:class:`drive_drail.scenario.SuccessCriteria`).
Every task requires no collision and no off-road.
"""

from __future__ import annotations

from types import ModuleType

from drive_drail.tasks import lane_change, merge, stop
from drive_drail.tasks.base import Measurements

TASKS: dict[str, ModuleType] = {"lane_change": lane_change, "merge": merge, "stop": stop}
"""task name -> module with ``success(criteria, m)`` and ``terminated(simulator, m)``."""


def task(name: str) -> ModuleType:
    """The module of task ``name`` (the scenario loader has already checked the name)."""
    return TASKS[name]


__all__ = ["Measurements", "TASKS", "task", "lane_change", "merge", "stop"]
