"""Run a command with its stderr on a pseudo-terminal, as a user at a shell sees it (progress bars draw
only on a terminal)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios


def stderr_on_a_terminal(argv: list[str], timeout_s: float = 120.0) -> tuple[int, str]:
    """``(exit status, everything written to stderr)`` of ``argv`` run with stderr on a 120-column pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 0-column terminal draws no bar
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return proc.wait(timeout=timeout_s), seen.decode(errors="replace")
