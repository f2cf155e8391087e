"""An in-process network: every party is a thread and messages are read-only arrays in mailboxes.

It implements the ``Transport`` interface exactly (ownership passes on send,
per-peer byte counters, timeouts naming the silent peer, abort on failure) so that protocols
tested here run unchanged over gRPC.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .transport import JobAborted, PeerError, TrafficStats, Transport

__all__ = ["InProcNetwork", "InProcTransport"]


class InProcNetwork:
    """Mailboxes for a fixed set of party names; ``transport(name)`` gives a party's end."""

    def __init__(self, names: list[str], timeout: float = 120.0):
        self.names = list(names)
        self.timeout = timeout
        self._boxes: dict[str, dict[tuple[str, str], np.ndarray]] = {n: {} for n in names}
        self._conds = {n: threading.Condition() for n in names}
        self._aborted: str | None = None
        self._ends = {n: InProcTransport(self, n) for n in names}

    def transport(self, name: str) -> "InProcTransport":
        return self._ends[name]

    def abort(self, reason: str) -> None:
        """Fail every pending and future receive (used when one party's thread dies)."""
        self._aborted = reason
        for cond in self._conds.values():
            with cond:
                cond.notify_all()


class InProcTransport(Transport):
    """One party's end of an ``InProcNetwork``."""

    def __init__(self, net: InProcNetwork, me: str):
        self.net, self.me = net, me
        self.stats = TrafficStats()

    def send(self, to: str, tag: str, array: np.ndarray) -> None:
        if to not in self.net._boxes:
            raise ValueError(f"unknown party '{to}'")
        # zero-copy hand-over: the sender gave up the array (Transport contract);
        # freezing it makes any later in-place write by either side an error.
        data = np.asarray(array)
        if data.flags.writeable and data.base is None:
            data.flags.writeable = False
        elif data.flags.writeable:
            data = np.array(data, copy=True)
            data.flags.writeable = False
        self.stats.count_send(to, data.nbytes)
        cond = self.net._conds[to]
        with cond:
            key = (self.me, tag)
            if key in self.net._boxes[to]:
                raise RuntimeError(f"duplicate message {tag!r} from {self.me} to {to}")
            self.net._boxes[to][key] = data
            cond.notify_all()

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> np.ndarray:
        timeout = self.net.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        cond = self.net._conds[self.me]
        box = self.net._boxes[self.me]
        key = (frm, tag)
        with cond:
            while key not in box:
                if self.net._aborted is not None:
                    raise JobAborted(self.net._aborted)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(frm, tag, f"no message within {timeout:g} s")
                cond.wait(left)
            data = box.pop(key)
        self.stats.count_recv(frm, data.nbytes)
        return data

    def ready(self, frm: str, tag: str) -> bool:
        with self.net._conds[self.me]:
            return (frm, tag) in self.net._boxes[self.me]

    def abort(self, reason: str) -> None:
        self.net.abort(reason)
