"""When the site-local numba kernels run multithreaded: only where numba's threading layer allows it.

numba's "workqueue" threading layer aborts the whole process when two Python threads
launch ``parallel=True`` kernels at the same time (simulated sites run as threads of
one process in tests), while the OpenMP and TBB layers allow concurrent launches.

Choice made here: every genomics kernel is compiled twice from one Python function,
once ``parallel=True`` and once single-threaded with ``nogil=True``. :func:`pick`
returns the parallel build when the active layer is "omp" or "tbb" (thread-safe),
or when the caller is the main thread (launches are then serialised by a module lock
so that two of our kernels never overlap); any other thread gets the single-threaded
nogil build, which still runs concurrently with other sites because it releases the
GIL.  Other packages in this process that launch parallel kernels under "workqueue"
should follow the same main-thread-only rule.

GNU OpenMP's idle workers spin after every parallel region (``OMP_WAIT_POLICY`` unset:
up to 300,000 spins each) while the other parties' processes, the dealer and the
relay wait for a core. Importing this module sets ``OMP_WAIT_POLICY=PASSIVE`` unless
the environment already chose (libgomp reads it once, when numba first starts its
"omp" layer, after this import): the workers sleep as soon as a kernel ends. Measured
on the 10,000 x 100,000 benchmark study (3 daemons and the dealer on 2 cores,
loopback, ``bench.gwas_wan``'s job; 3 runs each): 12.8-13.3 s wall and 24.3-25.2
core-seconds with spinning workers, 11.2-12.7 s and 21.3-24.1 passive.

Small inputs take the single-threaded build on every thread: a call whose largest
array argument is under :data:`SMALL_BYTES` (4 MiB) does microseconds to a few
milliseconds of work, where starting the pool gains little, and a study made only
of such calls (the demo's 1,500 x 3,000, most tests) never compiles the parallel
builds. numba compiles a ``parallel=True`` kernel 2.6-4x slower than its serial
twin (measured on a Zen 1 host, cold cache, one process: the weighted byte-table
sums 8.2 s against 3.2 s, the counts 3.0 s against 1.0 s, the missing-call sums
3.3 s against 0.8 s), and every daemon compiles its own on a fresh install.

A process forked from one that already ran a parallel kernel (``multiprocessing`` with
the "fork" start method) only gets the single-threaded builds: GNU OpenMP, numba's
"omp" layer on Linux, is not fork-safe and aborts such a child.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

import types

import numba
import numpy as np

from cipherome.mpc.jit import njit

__all__ = ["threading_layer", "pick", "parallel_section", "twin_kernel", "SMALL_BYTES"]

#: calls whose largest array argument has fewer bytes take the single-threaded build (module doc)
SMALL_BYTES = 1 << 22

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numba loads libgomp (module doc)

_LOCK = threading.RLock()
_THREADSAFE_LAYERS = frozenset({"omp", "tbb"})
_FORKED = False


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def threading_layer() -> str:
    """Name of numba's threading layer ("omp", "tbb", "workqueue"), or "unknown".

    Initialises the layer (without running a kernel) if no parallel kernel ran yet.
    """
    try:
        return numba.threading_layer()
    except ValueError:
        pass
    try:  # public: reading the pool size starts the threading layer, as a first parallel launch would
        numba.get_num_threads()
        return numba.threading_layer()
    except Exception:  # pragma: no cover - depends on the numba build
        return "unknown"


@contextlib.contextmanager
def parallel_section() -> Iterator[bool]:
    """Context yielding True if parallel kernels may run now (holding the lock if needed)."""
    if _FORKED:
        yield False
    elif threading_layer() in _THREADSAFE_LAYERS:
        yield True
    elif threading.current_thread() is threading.main_thread():
        with _LOCK:
            yield True
    else:
        yield False


def pick(parallel_fn: Callable, serial_fn: Callable) -> Callable:
    """Wrap the two builds of one kernel so that each call runs the safe one, serial on small inputs (module doc)."""

    def run(*args):
        if max((a.nbytes for a in args if isinstance(a, np.ndarray)), default=0) < SMALL_BYTES:
            return serial_fn(*args)
        with parallel_section() as ok:
            return (parallel_fn if ok else serial_fn)(*args)

    run.__name__ = getattr(serial_fn, "__name__", "kernel")
    run.__doc__ = getattr(serial_fn, "__doc__", None)
    return run


def twin_kernel(fn: Callable) -> Callable:
    """Compile ``fn`` twice (parallel, and single-threaded nogil), both cached; return :func:`pick` of them.

    The single-threaded build is compiled from a copy of ``fn`` with its own qualified
    name, because numba's on-disk cache keys entries by function name and signature,
    not by compile flags: sharing one name would let one build load the other's code.
    """
    serial_py = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
    )
    serial_py.__qualname__ = fn.__qualname__ + "_serial"
    serial_py.__doc__ = fn.__doc__
    parallel = njit(cache=True, nogil=True, parallel=True)(fn)
    serial = njit(cache=True, nogil=True)(serial_py)
    return pick(parallel, serial)
