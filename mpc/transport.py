"""The transport interface: tagged numpy arrays between named parties, with traffic counters.

Every party runtime talks through a ``Transport``; the in-process implementation
(threads) serves unit tests and the gRPC implementation serves real deployments.
Both must deliver each (sender, tag) message exactly once, in any order, and turn
a silent or failed peer into a ``PeerError`` that names the peer and the stage.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Transport", "TrafficStats", "TransportError", "PeerError", "JobAborted"]


class TransportError(RuntimeError):
    """Base class of communication failures."""


class PeerError(TransportError):
    """A peer did not answer in time, disconnected, or sent something malformed."""

    def __init__(self, peer: str, stage: str, reason: str):
        self.peer, self.stage, self.reason = peer, stage, reason
        super().__init__(f"party '{peer}' failed during {stage}: {reason}")


class JobAborted(TransportError):
    """The job was aborted (by another party's failure or by a cancel request)."""


@dataclass
class TrafficStats:
    """Bytes and messages one party sent and received, in total and per peer."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    sent_to: dict = field(default_factory=lambda: defaultdict(int))
    received_from: dict = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_send(self, peer: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_sent += nbytes
            self.messages_sent += 1
            self.sent_to[peer] += nbytes

    def count_recv(self, peer: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_received += nbytes
            self.messages_received += 1
            self.received_from[peer] += nbytes

    def as_dict(self) -> dict:
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "sent_to": dict(self.sent_to),
            "received_from": dict(self.received_from),
        }


class Transport(ABC):
    """Point-to-point messaging between the parties of one job.

    ``send`` must not block on the receiver (it may buffer or stream with flow
    control) and takes ownership of the array: the caller must not modify it
    afterwards, and received arrays are read-only. ``recv`` blocks until the message (sender, tag) has arrived, at most
    ``timeout`` seconds, then raises ``PeerError`` naming the sender and the tag.
    Arrays keep dtype and shape. Tags are unique within a job.
    """

    me: str
    stats: TrafficStats

    @abstractmethod
    def send(self, to: str, tag: str, array: np.ndarray) -> None:
        """Deliver ``array`` to party ``to`` under ``tag``."""

    @abstractmethod
    def recv(self, frm: str, tag: str, timeout: float | None = None) -> np.ndarray:
        """Wait for the array that party ``frm`` sent under ``tag``."""

    def ready(self, frm: str, tag: str) -> bool:
        """Whether the message (frm, tag) has arrived, so that ``recv`` returns it at once (optional:
        a transport that cannot tell answers False, and its caller waits for messages in order)."""
        return False

    def abort(self, reason: str) -> None:
        """Wake every waiting ``recv`` of this job with ``JobAborted`` (optional)."""

    def close(self) -> None:
        """Release resources (optional)."""
