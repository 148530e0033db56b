"""Training metrics a user can open: a CSV (one row per iteration, one column per metric),
TensorBoard event files (``tensorboard --logdir RUN/tb``) with the same names, and optionally a
Weights & Biases run (:class:`WandbTracker`).

Metric names carry fixed prefixes (``losses/``, ``disc/``, ``charts/``, ``time/``, ``bc/``; CleanRL's
``charts/`` and ``losses/``) against one global step (environment steps).
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import uuid
from pathlib import Path

from drive_drail.atomic import write_csv, write_text


class MetricsLog:
    """Rows are appended as lines while the columns stay the same (a long run does not rewrite
    its whole history every iteration); a new column rewrites the file atomically. A line cut
    short by a kill is dropped on load."""

    def __init__(self, path: str | Path, fresh: bool = False, tensorboard_dir: str | Path | None = None,
                 tracker: "WandbTracker | None" = None):
        """Continue the log at ``path`` (a resumed run), or start it anew when ``fresh``; also write
        TensorBoard events to ``tensorboard_dir`` and every row to ``tracker`` when given."""
        self.path = Path(path)
        self.tracker = tracker
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir is not None else None
        self._tb = None
        self.rows: list[dict] = []
        self.columns: list[str] = []
        if self.path.exists() and fresh:
            self.path.unlink()
        if fresh and self.tensorboard_dir is not None and self.tensorboard_dir.is_dir():
            shutil.rmtree(self.tensorboard_dir)  # a new run does not inherit an old run's curves
        if self.path.exists():
            text = self.path.read_text()
            cut = bool(text) and not text.endswith("\n")  # the last row was being written when the run died
            if cut:
                text = text[: text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(text))
            self.rows = [dict(r) for r in reader]
            self.columns = list(reader.fieldnames or [])
            if cut:  # before anything is appended after the cut line
                self._rewrite()

    def write(self, global_step: int, values: dict[str, float]) -> None:
        """Append a row (columns may grow over a run)."""
        row = {"global_step": global_step, **values}
        self.rows.append(row)
        if self.tensorboard_dir is not None:
            self._add_scalars(global_step, values)
        if self.tracker is not None:
            self.tracker.log(global_step, values)
        if all(k in self.columns for k in row) and self.path.exists():
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        else:
            self.columns += [k for k in row if k not in self.columns]
            self._rewrite()

    def truncate_after(self, global_step: int) -> None:
        """Drop rows logged after ``global_step`` (work a killed run did past its checkpoint); TensorBoard
        hides its events past that step too (``purge_step``)."""
        self.rows = [r for r in self.rows if int(float(r["global_step"])) <= global_step]
        self._rewrite()
        if self.tensorboard_dir is not None:
            self._open_tensorboard(purge_step=global_step + 1)

    def close(self) -> None:
        self._close_tensorboard()
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def _open_tensorboard(self, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self._close_tensorboard()
        self._tb = SummaryWriter(str(self.tensorboard_dir), purge_step=purge_step)
        return self._tb

    def _close_tensorboard(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _add_scalars(self, global_step: int, values: dict[str, float]) -> None:
        tb = self._tb or self._open_tensorboard()
        for name, value in values.items():
            if isinstance(value, (int, float)) and value == value:
                tb.add_scalar(name, float(value), global_step)
        tb.flush()

    def _rewrite(self) -> None:
        write_csv(self.path, self.rows, self.columns)


class WandbTracker:
    """The metrics of a training run as a Weights & Biases run (``TrainConfig.tracker = "wandb"``).

    Offline unless ``WANDB_MODE`` says otherwise: the run is written under ``RUN/wandb/`` and
    ``wandb sync RUN/wandb/offline-run-*`` uploads it later (no network is needed to train).
    The project is ``WANDB_PROJECT`` (default ``drive-drail``), the run's name its folder's; a resumed
    run continues the same W&B run (its id is kept in ``RUN/wandb_id.txt``).
    """

    def __init__(self, run_dir: str | Path, config: dict, resume: bool):
        import wandb  # the [wandb] extra

        run_dir = Path(run_dir)
        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if resume and id_file.exists() else uuid.uuid4().hex[:12]
        write_text(id_file, run_id + "\n")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "drive-drail"), name=run_dir.name, id=run_id,
                              resume="allow", dir=str(run_dir), config=config, mode=os.environ.get("WANDB_MODE", "offline"),
                              settings=wandb.Settings(console="off", silent=True, disable_git=True))

    def log(self, global_step: int, values: dict[str, float]) -> None:
        self.run.log({k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}, step=global_step)

    def close(self) -> None:
        self.run.finish()
