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

Any call of ``malloc_trim(0)`` in the process undoes the tuning: it hands every free page
of the heap back to the kernel. protobuf's upb runtime makes that call once per 10,000
messages it frees, so the transport's data path builds no protobuf message
(``mpc.grpc_transport.decode_chunk``); before, a site daemon gave back about 550 MB
every other job of the 10,000 x 100,000 benchmark and faulted it in again in the next.

``Prefault``: memory a later step will need, faulted in ahead by a background thread while
the job waits on rounds, then freed back to the heap, where that step's arrays find it.
A page touched for the first time costs the kernel a zeroed page (measured on this VM: the
1 GB above in 0.72-1.0 s of system time; 600 MB touched by ``Prefault`` in 1.3 s); the pooled PCA's two call matrices of a 10,000 x 100,000
study are 640 MB per site: faulted in when the PCA builds them, 0.8-1.1 s of system time
per site while the three sites compete for two cores, or ahead, while variant QC waits
on its rounds (``genomics.gwas.pca.prefault_operator``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

import numpy as np

__all__ = ["tune_malloc", "Prefault"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD = 1 << 30
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
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),  # large arrays from the heap, not fresh mmaps
            (_M_TRIM_THRESHOLD, (1 << 31) - 1),  # keep freed memory for reuse
            (_M_TOP_PAD, 1 << 28),
            (_M_ARENA_MAX, 1),  # every thread in the main arena (module docstring)
        )
    )
    _done = ok
    return ok


class Prefault:
    """Fault in blocks of ``sizes`` bytes in a background thread; ``release()`` waits for it and frees them.

    Only blocks below the mmap threshold are worth it (with ``tune_malloc``: 1 GiB; a larger block is
    a fresh mapping, returned to the kernel on free): larger ones are skipped, as are all of them when
    the tuning is off. The pages stay with the process after ``release`` (no trimming), so arrays
    allocated next reuse them instead of faulting in new ones. Writes go through ``memset``, which
    runs without the interpreter lock.
    """

    def __init__(self, sizes: list[int]):
        self._blocks: list[np.ndarray] = []
        todo = [int(n) for n in sizes if 0 < int(n) < _MMAP_THRESHOLD] if _done else []
        self._thread = threading.Thread(target=self._touch, args=(todo,), name="cipherome-prefault", daemon=True)
        self._thread.start()

    def _touch(self, sizes: list[int]) -> None:
        for n in sizes:
            try:
                block = np.empty(n, dtype=np.uint8)
            except MemoryError:
                return
            ctypes.memset(block.ctypes.data, 0, n)
            self._blocks.append(block)

    def release(self) -> None:
        """Wait for the touching to end, then free the blocks (to the heap, not to the kernel)."""
        self._thread.join()
        self._blocks.clear()
