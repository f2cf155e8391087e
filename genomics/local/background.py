"""Site-local computation that runs beside the MPC rounds instead of before them.

A protocol round is a wait for the peers' messages: across a wide-area link, tens
of milliseconds per round in which a site's CPU is idle. Plaintext work that a
later stage will need and that depends only on what is already public can run in
a background thread during an earlier stage's rounds (the GWAS computes its
association sums while variant QC runs): the wait then hides it. It touches no
``Context`` (no traffic, no randomness draws), so the parties' protocol streams
stay in lock-step whatever the thread's timing.

``Background(fn)`` starts ``fn(stop)`` at once; ``result()`` joins it and returns
its value or re-raises its exception; ``cancel()`` sets ``stop`` (a
``threading.Event`` that ``fn`` checks between blocks) so that a failed job does not
leave the thread working for nothing.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["Background"]


class Background:
    """``fn(stop)`` in a daemon thread; ``result()`` joins (re-raising its error), ``cancel()`` asks it to stop."""

    def __init__(self, fn: Callable[[threading.Event], Any], name: str = "cipherome-local"):
        self.stop = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _main(self, fn) -> None:
        try:
            self._value = fn(self.stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> None:
        self.stop.set()
