"""``njit`` for cipherome's kernels: numba's on-disk cache, compiled by one process of a machine at a time.

numba compiles a ``cache=True`` kernel the first time a process calls it with new
argument types, unless its cache folder already holds the machine code. Parties
that share a machine (the demo's three sites and dealer, ``LocalCluster`` in tests
and benchmarks) start the same job together, so on a fresh install every one of
them compiled the same kernels at the same moment: on a 2-core Zen 1 host the
demo's first job took 34 s instead of 9 s, four processes each compiling the kernels
that one process alone compiles in about 20 s.

Here a cache miss takes an exclusive lock on a file beside the kernel's cache index
(``fcntl.flock``), looks in the cache again, and compiles only if the entry is still
missing; the lock is released once the compiled code is saved, or when the compile
fails. A process that waited loads the other's result instead of compiling.

Rules kept:
- numba holds its process-wide compiler lock around the load, compile and save, so
  one thread at a time runs this code in a process; a kernel whose compile needs
  another compile of the same function (``literally`` re-dispatch) re-enters its
  lock by count.
- A wait gives up after :data:`WAIT_S` seconds and compiles anyway (a peer stopped
  in a debugger must not stall every other process); the lock dies with its process.
- Where the cache folder is not writable, or numba's internals differ from what this
  module expects, it falls back to numba's own cache, unchanged.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time

import numba
from numba.core import caching, event

__all__ = ["njit", "share_compiles", "WAIT_S"]

log = logging.getLogger("cipherome.jit")

#: seconds a process waits for another's compile of the same kernel before compiling it itself
WAIT_S = 300.0
_POLL_S = 0.02


class _SharedCompileCache(caching.FunctionCache):
    """numba's per-function disk cache, with a machine-wide lock around each miss (module doc)."""

    _held: dict[str, list] = {}  # lock path -> [fd, depth], shared by all kernels of the process

    def _lock_path(self) -> str | None:
        try:
            self._impl.locator.ensure_cache_path()
            return os.path.join(self._cache_path, self._impl.filename_base + ".lock")
        except (OSError, AttributeError):
            return None

    def load_overload(self, sig, target_context):
        got = super().load_overload(sig, target_context)
        if got is not None or not getattr(self, "_enabled", True):
            return got
        path = self._lock_path()
        if path is None or not self._acquire(path):
            return None
        got = super().load_overload(sig, target_context)  # compiled by another process while we waited
        if got is not None:
            self.release()
        return got

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        finally:
            self.release()

    def _acquire(self, path: str) -> bool:
        held = self._held.get(path)
        if held is not None:
            held[1] += 1
            return True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.warning("waited %.0f s for another process to compile %s; compiling it here",
                                WAIT_S, self._impl.filename_base)
                    os.close(fd)
                    return False
                time.sleep(_POLL_S)
            except OSError:
                os.close(fd)
                return False
        self._held[path] = [fd, 1]
        return True

    def release(self) -> None:
        """Undo one :meth:`_acquire` of this kernel's lock (no-op if this process does not hold it)."""
        path = self._lock_path()
        held = self._held.get(path) if path else None
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del self._held[path]
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])


class _ReleaseOnFailure(event.Listener):
    """A compile that raised never reaches ``save_overload``: release its lock when the compile event ends."""

    def on_start(self, ev) -> None:
        pass

    def on_end(self, ev) -> None:
        # the exception tuple of the compile's ``with`` block; numba 0.68's ``Event.is_failed`` reads it inverted
        exc = getattr(ev, "_exc_details", None)
        if exc and exc[0] is not None and isinstance(ev.data, dict):
            cache = getattr(ev.data.get("dispatcher"), "_cache", None)
            if isinstance(cache, _SharedCompileCache):
                cache.release()


_listener = None


def share_compiles(dispatcher):
    """Give a ``cache=True`` dispatcher the machine-wide compile lock (module doc); returns it."""
    global _listener
    if not isinstance(getattr(dispatcher, "_cache", None), caching.FunctionCache):
        return dispatcher  # not cached, or numba's internals moved: numba's own behaviour
    try:
        dispatcher._cache = _SharedCompileCache(dispatcher.py_func)
    except Exception:  # noqa: BLE001 - keep numba's cache
        return dispatcher
    if _listener is None:
        _listener = _ReleaseOnFailure()
        event.register("numba:compile", _listener)
    return dispatcher


def njit(fn=None, **options):
    """``numba.njit`` (used as ``@njit(...)`` or ``njit(...)(fn)``); with ``cache=True`` the compile is shared."""
    if fn is None:
        return lambda f: njit(f, **options)
    disp = numba.njit(**options)(fn)
    return share_compiles(disp) if options.get("cache") else disp
