"""User-facing errors: the CLI prints them as one line and exits with code 2, no traceback.

Kept free of heavy imports: ``import drive_drail`` (which registers the gymnasium ids) loads this.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input or arguments from the user (a file, a key, a flag)."""


class LogError(UserError, ValueError):
    """A user-facing problem with an input file: printed as one line, exit code 2."""

    def __init__(self, path: str | Path, message: str, column: str | None = None, row: int | None = None):
        self.path, self.column, self.row, self.detail = str(path), column, row, message
        where = [self.path]
        if column is not None:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}")


class ArgumentError(UserError, ValueError):
    """A bad argument value (a flag, or a keyword of the Python API, where it is also a ValueError)."""


class DriveDrailWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one line)."""
