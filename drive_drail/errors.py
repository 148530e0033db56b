"""User-facing errors: the CLI prints them as one line and exits with code 2, no traceback."""


class UserError(Exception):
    """Bad input or arguments from the user (a file, a key, a flag)."""
