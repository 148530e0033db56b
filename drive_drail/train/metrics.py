"""Training metrics as a CSV a user can open: one row per iteration, one column per metric.

Metric names carry fixed prefixes (``losses/``, ``disc/``, ``charts/``, ``time/``, ``bc/``)
against one global step (environment steps).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from drive_drail.atomic import write_text


class MetricsLog:
    """Rows are appended as lines while the columns stay the same (a long run does not rewrite
    its whole history every iteration); a new column rewrites the file atomically. A line cut
    short by a kill is dropped on load."""

    def __init__(self, path: str | Path, fresh: bool = False):
        """Continue the log at ``path`` (a resumed run), or start it anew when ``fresh``."""
        self.path = Path(path)
        self.rows: list[dict] = []
        self.columns: list[str] = []
        if self.path.exists() and fresh:
            self.path.unlink()
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
        if all(k in self.columns for k in row) and self.path.exists():
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        else:
            self.columns += [k for k in row if k not in self.columns]
            self._rewrite()

    def truncate_after(self, global_step: int) -> None:
        """Drop rows logged after ``global_step`` (work a killed run did past its checkpoint)."""
        self.rows = [r for r in self.rows if int(float(r["global_step"])) <= global_step]
        self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buf.getvalue())
