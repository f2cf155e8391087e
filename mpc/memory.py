"""Allocator tuning for large short-lived numpy arrays (glibc only, applied once at import).

Protocols allocate many temporaries of tens of MB; glibc hands such blocks back
to the kernel on every free and faults them in again on the next allocation,
which measured here costs about as much as the arithmetic itself. Keeping freed
memory in the process (and using one arena for all party threads) removes that.

One arena, not two: a job runs in a server thread, and glibc serves a thread's
allocation larger than a secondary arena's 64 MB heap by a fresh mmap whatever the
threshold, returned to the kernel on free. On this VM the kernel hands freed pages back
to the host within seconds, so each daemon job paid again for its large arrays: a
thread's 700 + 300 MB allocated, touched and freed, then again 5 s later took
0.72-1.0 s of system time each time with two arenas, 0.004 s with one.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_done = False


def tune_malloc() -> bool:
    """Apply the tuning once; returns whether it was applied. Off with CIPHEROME_NO_MALLOC_TUNING=1."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("CIPHEROME_NO_MALLOC_TUNING"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, 1 << 30),  # large arrays from the heap, not fresh mmaps
            (_M_TRIM_THRESHOLD, (1 << 31) - 1),  # keep freed memory for reuse
            (_M_TOP_PAD, 1 << 28),
            (_M_ARENA_MAX, 1),  # every thread in the main arena (module docstring)
        )
    )
    _done = ok
    return ok
