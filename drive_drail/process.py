"""What this process may use: its cores, and memory settings for commands that build and drop large arrays.

glibc's malloc serves each large block (over its mmap threshold, or from a thread's own arena) with
fresh pages and returns them to the OS when freed, so an array program that makes and drops the same
temporaries over and over page-faults on every one. On a virtual machine a fault costs microseconds:
converting a 1M-row highD log spent about as long in the kernel as in Python
(benchmarks/results/convert_highd.json). :func:`reuse_freed_memory` keeps freed blocks for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
"""``mallopt`` parameters (glibc's malloc.h)."""

MMAP_THRESHOLD_BYTES = 1 << 30
"""Blocks below this come from the heap and are reused after a free, not mapped afresh each time."""


def usable_cores() -> int:
    """All cores this process may use (its CPU affinity; every core where the OS has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse: large blocks from the heap, one arena shared by
    all threads, and no trimming of the heap's free top. The process then holds its peak memory until it
    exits, so a command calls this, a library function does not. Returns False where the C library is not
    glibc (nothing changes there)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), mallopt(M_TRIM_THRESHOLD, 2**31 - 1), mallopt(M_ARENA_MAX, 1)]
    return all(done)
