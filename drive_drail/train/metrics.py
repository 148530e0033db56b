"""Training metrics as a CSV a user can open: one row per iteration, one column per metric.

Metric names carry fixed prefixes (``losses/``, ``disc/``, ``charts/``, ``bc/``) against
one global step (environment steps).
"""

from __future__ import annotations

import csv
from pathlib import Path

from drive_drail.atomic import write_text


class MetricsLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.exists():
            with self.path.open() as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]

    def write(self, global_step: int, values: dict[str, float]) -> None:
        """Append a row and rewrite the file atomically (columns may grow over a run)."""
        self.rows.append({"global_step": global_step, **values})
        self._flush()

    def truncate_after(self, global_step: int) -> None:
        """Drop rows logged after ``global_step`` (work a killed run did past its checkpoint)."""
        self.rows = [r for r in self.rows if int(float(r["global_step"])) <= global_step]
        self._flush()

    def _flush(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns += [k for k in row if k not in columns]
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buf.getvalue())
