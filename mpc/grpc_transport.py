"""The gRPC transport: a job's tagged numpy arrays travel as chunked Exchange streams over mutual TLS.

Each party opens, per job, one ``Peer.Exchange`` stream to every other party of
the job over a long-lived channel per peer (one channel per peer pair and daemon,
shared by all jobs); a message is cut into chunks of ``CHUNK_BYTES`` that are
encoded lazily as gRPC pulls them, so HTTP/2 flow control bounds what is in
flight, and the receiver fills a buffer preallocated from the announced shape.

Wire format (``proto/cipherome.proto``, message ``Chunk``): the stream starts
with a HELLO (job id, sender, study), then every message is chunks 0..total-1
(chunk 0 carries dtype, shape and nbytes), then DONE (or ABORT with a reason).
The HELLO's ``tag`` carries the job digest (job name, study, parameters; see
``daemon.job_digest``): the receiver refuses a stream of a job that differs from
its own, naming the sender. An ABORT's ``tag`` carries the job digests its
sender knows (JSON ``{party: digest}``) when they disagree, so that every party
of a job that was submitted with different parameters can name the odd party,
even one that never saw the odd party's own HELLO. The payload field ``data`` (field 15) is written last by our encoder, so the
receiver slices it out of the received bytes without copying; any standard
protobuf encoder produces bytes this decoder reads too. The data path builds no
protobuf message: a DATA chunk's header is serialised by ``data_header`` and every
chunk is read by ``decode_chunk``, byte for byte the format protobuf writes and reads
(the tests compare them), because protobuf's upb runtime calls ``malloc_trim(0)``
every 10,000 freed messages, handing the daemon's free heap back to the kernel
(``mpc.memory``); control chunks (HELLO, DONE, ABORT) still use ``pb.Chunk``. The
receiving side trusts the peer's TLS certificate, never the ``sender`` field.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass

import grpc
import numpy as np

from cipherome.proto import cipherome_pb2 as pb
from cipherome.proto import rpc

from .transport import JobAborted, PeerError, TrafficStats, Transport

__all__ = [
    "CHUNK_BYTES",
    "MAX_WIRE_BYTES",
    "EXCHANGE_METHOD",
    "channel_options",
    "server_options",
    "PeerLink",
    "ChannelPool",
    "GrpcTransport",
    "encode_chunk",
    "data_header",
    "decode_chunk",
    "Header",
    "message_chunks",
    "Assembler",
    "MalformedMessage",
    "exchange_handler",
    "peer_fingerprint",
    "Refused",
]

log = logging.getLogger("cipherome.grpc")

#: payload bytes per chunk: large enough that per-chunk Python work is negligible,
#: small enough that a chunk never approaches a gRPC message limit
CHUNK_BYTES = 2 << 20
#: the largest gRPC message a daemon accepts or sends (a chunk plus its header)
MAX_WIRE_BYTES = CHUNK_BYTES + (64 << 10)
#: dtypes allowed on the wire (numeric, little-endian or byte-sized)
ALLOWED_DTYPES = frozenset(
    np.dtype(t).str for t in ("bool", "i1", "u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8", "<c8", "<c16")
)
EXCHANGE_METHOD = rpc.rpc("Peer", "Exchange").path
HEALTH_METHOD = rpc.rpc("Control", "Health").path
#: seconds a peer has to answer a health check when a message is overdue
PROBE_SECONDS = 5.0
#: a sender that is up (health check or TLS handshake) and runs the job may stay silent this many round timeouts before the job fails
LIVE_PATIENCE = 10
#: trailing-metadata key of a refused stream: the job digests the refusing party knows (JSON)
DIGESTS_KEY = "cipherome-digests"
_DATA_KEY = bytes([(15 << 3) | 2])  # field 15, wire type 2 (length-delimited)
_PAD_KEY = bytes([(14 << 3) | 2])  # field 14: padding so that ``data`` is aligned
_ALIGN = 16


def channel_options(target_name: str) -> list[tuple[str, object]]:
    """Client channel options: TLS target name = the peer's party name, large messages, keepalive, fast reconnect."""
    return [
        ("grpc.ssl_target_name_override", target_name),
        ("grpc.default_authority", target_name),
        ("grpc.max_send_message_length", MAX_WIRE_BYTES),
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 3_000),
        ("grpc.enable_retries", 0),
        # one TCP connection per channel: never share subchannels between our channels
        ("grpc.use_local_subchannel_pool", 1),
    ]


def server_options() -> list[tuple[str, object]]:
    """Server options: refuse messages above ``MAX_WIRE_BYTES``, accept client keepalive pings, no port sharing."""
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_WIRE_BYTES),
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


# ----------------------------------------------------------------------------- codec
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _frame(head: bytes, payload) -> bytes:
    """A serialised ``Chunk``: its header fields ``head``, then padding and field 15 (``data``) = ``payload``."""
    n = len(payload)
    if not n:
        return head
    lead = len(head) + 1 + len(_varint(n))
    pad = (-(lead + 2)) % _ALIGN  # field 14: key (1 byte) + length (1 byte, pad < 128) + pad bytes
    return b"".join((head, _PAD_KEY, bytes((pad,)), bytes(pad), _DATA_KEY, _varint(n), payload))


def encode_chunk(header: pb.Chunk, payload=b"") -> bytes:
    """Serialised ``Chunk``: the header fields, then field 15 (``data``) = ``payload``, in one copy.

    A padding field (14) is added so that the payload starts at a multiple of
    ``_ALIGN`` bytes into the message: the receiver can then use it in place
    (CPython's bytes buffers are 16-byte aligned) instead of copying it.
    """
    return _frame(header.SerializeToString(), payload)


_U64 = (1 << 64) - 1


def _len_field(field: int, raw: bytes) -> bytes:
    return bytes(((field << 3) | 2,)) + _varint(len(raw)) + raw if raw else b""


def _int_field(field: int, v: int) -> bytes:
    return bytes((field << 3,)) + _varint(v) if v else b""


def data_header(tag: str, index: int, total: int, dtype: str = "", shape=(), nbytes: int = 0) -> bytes:
    """The header fields of a DATA chunk, serialised as protobuf serialises them (field order, proto3
    defaults omitted, ``shape`` packed), without a protobuf message (module doc: no upb arena per chunk)."""
    packed = b"".join(_varint(int(d) & _U64) for d in shape)
    return b"".join((_len_field(5, tag.encode()), _len_field(6, dtype.encode()), _len_field(7, packed),
                     _int_field(8, int(nbytes)), _int_field(9, int(index)), _int_field(10, int(total))))


@dataclass
class Header:
    """A ``Chunk``'s fields other than ``pad`` and ``data``, with protobuf's defaults (proto/cipherome.proto)."""

    kind: int = 0
    job_id: str = ""
    sender: str = ""
    study: str = ""
    tag: str = ""
    dtype: str = ""
    shape: tuple = ()
    nbytes: int = 0
    index: int = 0
    total: int = 0
    reason: str = ""


def _int32(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v >> 31 else v


def _int64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


#: Chunk's length-delimited string fields, and its varint fields with protobuf's conversion of the value read
#: (an enum is an int32; a uint32 keeps the low 32 bits; ``shape``, field 7, holds int64 values)
_STRINGS = {2: "job_id", 3: "sender", 4: "study", 5: "tag", 6: "dtype", 11: "reason"}
_VARINTS = {1: ("kind", _int32), 8: ("nbytes", lambda v: v & _U64), 9: ("index", lambda v: v & 0xFFFF_FFFF),
            10: ("total", lambda v: v & 0xFFFF_FFFF)}


@dataclass
class _Bad:
    """What the deserializer returns for undecodable bytes (so that the handler can answer clearly)."""

    reason: str


def decode_chunk(raw: bytes):
    """``(Header, memoryview of data)`` from wire bytes, or ``_Bad`` if undecodable.

    One walk over the top-level fields, as protobuf parses them: the ``data`` field is sliced, not
    copied; strings must be UTF-8; ``shape`` may come packed or not; a later value of a field
    replaces an earlier one; unknown fields are skipped. No protobuf message is built (module doc).
    """
    try:
        pos, n, span = 0, len(raw), None
        fields: dict = {}
        shape: list[int] = []
        while pos < n:
            key, pos = _read_varint(raw, pos)
            field, wt = key >> 3, key & 7
            if field == 0:
                raise ValueError("field number 0")
            if wt == 0:
                v, pos = _read_varint(raw, pos)
                if field in _VARINTS:
                    name, convert = _VARINTS[field]
                    fields[name] = convert(v)
                elif field == 7:
                    shape.append(_int64(v))
            elif wt == 2:
                ln, pos = _read_varint(raw, pos)
                end = pos + ln
                if end > n:
                    raise ValueError("truncated field")
                if field == 15:
                    span = (pos, end)
                elif field in _STRINGS:
                    fields[_STRINGS[field]] = raw[pos:end].decode("utf-8")
                elif field == 7:
                    p = pos
                    while p < end:
                        v, p = _read_varint(raw, p)
                        shape.append(_int64(v))
                    if p != end:
                        raise ValueError("truncated packed field")
                pos = end
            elif wt == 1:
                pos += 8
            elif wt == 5:
                pos += 4
            else:
                raise ValueError(f"unsupported wire type {wt}")
            if pos > n:
                raise ValueError("truncated field")
        hdr = Header(shape=tuple(shape), **fields)
        if span is None:
            return hdr, memoryview(b"")
        return hdr, memoryview(raw)[span[0]:span[1]]
    except Exception as exc:  # noqa: BLE001 - any decoding failure is "malformed"
        return _Bad(f"undecodable chunk ({type(exc).__name__}: {exc})")


def message_chunks(tag: str, array: np.ndarray, chunk_bytes: int = CHUNK_BYTES):
    """Yield the encoded chunks of one message (``array`` must be C-contiguous)."""
    flat = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    nbytes = len(flat)
    total = max(1, math.ceil(nbytes / chunk_bytes))
    yield _frame(data_header(tag, 0, total, array.dtype.str, array.shape, nbytes), flat[:chunk_bytes])
    for i in range(1, total):
        yield _frame(data_header(tag, i, total), flat[i * chunk_bytes:(i + 1) * chunk_bytes])


class MalformedMessage(ValueError):
    """A peer sent chunks that do not form a valid message."""


class Assembler:
    """Rebuilds one sender's messages from its chunks into preallocated, then read-only, arrays."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._tag = None
        self._buf = None

    def feed(self, hdr: pb.Chunk, data: memoryview):
        """Add a DATA chunk; returns ``(tag, array)`` when a message is complete, else ``None``."""
        if hdr.index == 0:
            if self._tag is not None:
                raise MalformedMessage(f"message {self._tag!r} interrupted by {hdr.tag!r}")
            if hdr.dtype not in ALLOWED_DTYPES:
                raise MalformedMessage(f"dtype {hdr.dtype!r} not allowed")
            dtype = np.dtype(hdr.dtype)
            shape = tuple(hdr.shape)
            if any(s < 0 for s in shape) or len(shape) > 32:
                raise MalformedMessage(f"invalid shape {shape}")
            if hdr.nbytes != math.prod(shape) * dtype.itemsize:
                raise MalformedMessage(f"nbytes {hdr.nbytes} does not match dtype {hdr.dtype} and shape {shape}")
            if hdr.nbytes > self.max_bytes:
                raise MalformedMessage(f"message of {hdr.nbytes} bytes exceeds the limit of {self.max_bytes}")
            if hdr.total < 1 or hdr.total > max(1, hdr.nbytes):
                raise MalformedMessage(f"invalid chunk count {hdr.total}")
            if not hdr.tag:
                raise MalformedMessage("empty tag")
            if hdr.total == 1 and len(data) == hdr.nbytes and hdr.nbytes:
                arr = np.frombuffer(data, dtype=dtype).reshape(shape)  # read-only view of the received bytes
                if arr.ctypes.data % max(dtype.alignment, 8) == 0:
                    return hdr.tag, arr
            self._tag, self._dtype, self._shape, self._total = hdr.tag, dtype, shape, hdr.total
            self._nbytes, self._next, self._pos = hdr.nbytes, 0, 0
            try:
                self._buf = np.empty(hdr.nbytes, dtype=np.uint8)
            except MemoryError:
                raise MalformedMessage(f"message of {hdr.nbytes} bytes: cannot allocate it here") from None
        elif self._tag is None or hdr.tag != self._tag or hdr.total != self._total:
            raise MalformedMessage(f"chunk {hdr.index} of {hdr.tag!r} without its first chunk")
        if hdr.index != self._next:
            raise MalformedMessage(f"chunk {hdr.index} of {hdr.tag!r} out of order (expected {self._next})")
        n = len(data)
        if self._pos + n > self._nbytes:
            raise MalformedMessage(f"message {hdr.tag!r} longer than its announced {self._nbytes} bytes")
        if n:
            self._buf[self._pos:self._pos + n] = np.frombuffer(data, dtype=np.uint8)
        self._pos += n
        self._next += 1
        if self._next < self._total:
            return None
        if self._pos != self._nbytes:
            raise MalformedMessage(f"message {hdr.tag!r} has {self._pos} of {self._nbytes} bytes")
        arr = self._buf.view(self._dtype).reshape(self._shape)
        arr.flags.writeable = False
        tag = self._tag
        self._tag = self._buf = None
        return tag, arr

    @property
    def partial(self) -> bool:
        return self._tag is not None


# ----------------------------------------------------------------------------- channels
@dataclass(frozen=True)
class PeerLink:
    """How to reach a peer: its party name (the TLS target name), address and certificate."""

    name: str
    address: str
    cert_pem: bytes


class ChannelPool:
    """Long-lived client channels of one daemon (or client), one per peer, shared by all jobs.

    A channel trusts exactly the peer's own certificate and presents ours.
    """

    def __init__(self, key_pem: bytes, cert_pem: bytes):
        self._key, self._cert = key_pem, cert_pem
        self._channels: dict[PeerLink, grpc.Channel] = {}
        self._lock = threading.Lock()

    def channel(self, link: PeerLink) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(link)
            if ch is None:
                creds = grpc.ssl_channel_credentials(root_certificates=link.cert_pem, private_key=self._key,
                                                     certificate_chain=self._cert)
                ch = grpc.secure_channel(link.address, creds, options=channel_options(link.name))
                self._channels[link] = ch
            return ch

    def health(self, link: PeerLink):
        """The ``Control.Health`` unary callable of a peer (the liveness probe)."""
        return rpc.client_callable(self.channel(link), "Control", "Health")

    def handshake(self, link: PeerLink) -> grpc.Future:
        """A fresh channel to ``link`` and the future of its readiness (TCP, TLS and HTTP/2 set up).

        gRPC's core completes a handshake without the peer's Python interpreter, so
        a peer busy in a long step that holds the interpreter lock (it cannot answer
        a health check) still gets ready; a stopped or unreachable peer does not.
        The caller closes the channel (``future.channel``).
        """
        creds = grpc.ssl_channel_credentials(root_certificates=link.cert_pem, private_key=self._key,
                                             certificate_chain=self._cert)
        ch = grpc.secure_channel(link.address, creds, options=channel_options(link.name))
        fut = grpc.channel_ready_future(ch)
        fut.channel = ch
        return fut

    def exchange(self, link: PeerLink):
        """The raw ``Exchange`` stream-stream callable (requests are pre-encoded bytes)."""
        return rpc.client_callable(self.channel(link), "Peer", "Exchange", request_serializer=None)

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


# ----------------------------------------------------------------------------- transport
_DONE = object()


class _Outgoing:
    """The Exchange stream of one job to one peer: a queue of messages encoded as gRPC pulls them."""

    def __init__(self, tr: "GrpcTransport", peer: str, link: PeerLink, pool: ChannelPool):
        self.tr, self.peer = tr, peer
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False
        self.cancelled = False
        self.accepted = threading.Event()
        self.ended = threading.Event()
        hello = pb.Chunk(kind=pb.Chunk.HELLO, job_id=tr.job_id, sender=tr.me, study=tr.study, tag=tr.job_digest)
        self.call = pool.exchange(link)(self._requests(encode_chunk(hello)), wait_for_ready=True)
        self.thread = threading.Thread(target=self._read, name=f"exch-{tr.job_id[:8]}-{peer}", daemon=True)
        self.thread.start()

    def _requests(self, hello: bytes):
        yield hello
        while True:
            item = self.q.get()
            if item is _DONE:
                yield encode_chunk(pb.Chunk(kind=pb.Chunk.DONE))
                return
            if isinstance(item, str):
                yield encode_chunk(pb.Chunk(kind=pb.Chunk.ABORT, reason=item[:2000], tag=self.tr.abort_tag()))
                return
            tag, arr = item
            yield from message_chunks(tag, arr, self.tr.chunk_bytes)

    def _read(self) -> None:
        try:
            for reply in self.call:
                if reply.kind == pb.ExchangeReply.ACCEPTED:
                    self.accepted.set()
        except grpc.RpcError as exc:
            self.tr._merge_digests(_trailer(exc, DIGESTS_KEY))
            if not self.cancelled:
                code = exc.code() if hasattr(exc, "code") else None
                details = exc.details() if hasattr(exc, "details") else str(exc)
                self.tr._peer_failed(self.peer, _describe(code, details))
        finally:
            self.ended.set()

    def put(self, item) -> None:
        if not self.closed:
            if item is _DONE or isinstance(item, str):
                self.closed = True
            self.q.put(item)

    def cancel(self) -> None:
        self.cancelled = True
        self.call.cancel()


def _trailer(exc: grpc.RpcError, key: str) -> str:
    """The value of ``key`` in the trailing metadata of a failed call, or ''."""
    try:
        return next((v for k, v in (exc.trailing_metadata() or ()) if k == key and isinstance(v, str)), "")
    except Exception:  # noqa: BLE001 - not every RpcError carries metadata
        return ""


def _describe(code, details: str | None) -> str:
    details = (details or "").strip()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"connection lost or refused ({details or 'unavailable'})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "deadline exceeded"
    name = code.name if code is not None else "error"
    return f"{details} [{name}]" if details else name


class GrpcTransport(Transport):
    """One party's transport for one job: outgoing streams to every peer, a mailbox fed by incoming streams.

    ``links`` maps every other party of the job to its ``PeerLink``. ``start()``
    opens the streams (so that a dead peer is noticed at once); ``recv`` waits
    at most ``timeout`` seconds per message and raises ``PeerError`` naming the
    peer as soon as any peer of the job is lost. When a message is overdue, every
    peer gets a health check first (``PROBE_SECONDS``): the error then names the
    party that does not answer (stalled or unreachable), not the one that waits
    for it. A party that is up (it answers the health check, or at least completes a
    TLS handshake while a long local step holds its interpreter) and still runs the
    job (its stream to us is open) is waited for again, up to ``patience`` seconds
    in all (default ``LIVE_PATIENCE * timeout``): the round timeout detects stalled and
    lost parties and does not have to exceed the longest local step of a job.
    ``close()`` ends the streams (DONE), ``abort(reason)`` ends them with
    ABORT and wakes every ``recv``. ``job_digest`` goes in every stream's HELLO;
    ``digests`` holds the job digest of every party heard of (its HELLO, or the
    digests carried by an ABORT), so a disagreement can be named by majority.
    """

    def __init__(self, me: str, job_id: str, study: str, links: dict[str, PeerLink], pool: ChannelPool, *,
                 timeout: float = 60.0, max_message_bytes: int = 16 << 30, chunk_bytes: int = CHUNK_BYTES,
                 job_digest: str = "", patience: float | None = None):
        self.me, self.job_id, self.study, self.job_digest = me, job_id, study, job_digest
        self.links = dict(links)
        self.pool = pool
        self.timeout, self.max_message_bytes, self.chunk_bytes = timeout, max_message_bytes, chunk_bytes
        self.patience = LIVE_PATIENCE * timeout if patience is None else patience
        self.stats = TrafficStats()
        self._cond = threading.Condition()
        self._box: dict[tuple[str, str], np.ndarray] = {}
        self._seen: set[tuple[str, str]] = set()
        self._joined: set[str] = set()  # peers whose stream to us is open (accepted, no DONE/ABORT/loss yet)
        self._out: dict[str, _Outgoing] = {}
        self._failure: tuple[str, str] | None = None  # (peer, reason)
        self._aborted: str | None = None
        self.cancelled = False  # the abort was a cancel (here or at a peer)
        self._finished = False
        self._digests: dict[str, str] = {me: job_digest}

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "GrpcTransport":
        for peer, link in self.links.items():
            self._out[peer] = _Outgoing(self, peer, link, self.pool)
        return self

    def close(self, wait: float | None = None) -> None:
        """End every outgoing stream normally and wait (at most ``wait`` s) until the peers confirm."""
        with self._cond:
            self._finished = True
            self._box.clear()
        for out in self._out.values():
            out.put(_DONE)
        self._drain(self.timeout if wait is None else wait)

    def abort(self, reason: str) -> None:
        """Fail this job here and tell every peer (ABORT on each stream)."""
        with self._cond:
            if self._aborted is None:
                self._aborted = reason
            self._finished = True
            self._box.clear()
            self._cond.notify_all()
        failed = self._failure[0] if self._failure is not None else None
        heard = self.digests
        for peer, out in self._out.items():
            out.put(f"{self.me}: {reason}")
            # a failed peer never heard of (no HELLO: down or unreachable) gets nothing; every other peer may
            # still be about to take the stream (its job submitted a moment later) and must get the HELLO and
            # the ABORT, not a cut stream
            if peer == failed and peer not in heard and not out.accepted.is_set():
                out.cancel()
        self._drain(2.0)

    def _drain(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        for out in self._out.values():
            if not out.ended.wait(max(0.0, deadline - time.monotonic())):
                out.cancel()

    # -- Transport -------------------------------------------------------------
    def send(self, to: str, tag: str, array: np.ndarray) -> None:
        out = self._out.get(to)
        if out is None:
            raise ValueError(f"unknown party {to!r} (job {self.job_id} has {', '.join(sorted(self.links))})")
        if self._aborted is not None:
            raise JobAborted(self._aborted)
        data = np.asarray(array)
        if data.dtype.str not in ALLOWED_DTYPES:
            raise TypeError(f"dtype {data.dtype} cannot be sent (numeric little-endian dtypes only)")
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        self.stats.count_send(to, data.nbytes)
        out.put((tag, data))

    def ready(self, frm: str, tag: str) -> bool:
        with self._cond:
            return (frm, tag) in self._box

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> np.ndarray:
        """The message (frm, tag). After ``timeout`` s without it, every peer is probed (``probe``: a
        health check and a TLS handshake): a peer that answers neither fails the job (named); else the
        sender is up and busy (a long local step, numba compiling on a loaded machine, a step holding
        the interpreter lock) and, if it has joined this job (its stream is open), the wait goes on, up
        to ``patience`` seconds in all, with a warning each round timeout."""
        timeout = self.timeout if timeout is None else timeout
        t0 = time.monotonic()
        deadline = t0 + timeout
        key = (frm, tag)
        while True:
            with self._cond:
                while key not in self._box:
                    if self._aborted is not None:
                        raise JobAborted(self._aborted)
                    if self._failure is not None:
                        peer, reason = self._failure
                        raise PeerError(peer, tag if peer == frm else f"{tag} (waiting for {frm})", reason)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    data = self._box.pop(key)
                    self.stats.count_recv(frm, data.nbytes)
                    return data
                running = frm in self._joined
            state = self.probe()
            waited = time.monotonic() - t0
            silent = [p for p, st in state.items() if st == "silent"]
            if silent:
                who = frm if frm in silent else silent[0]
                raise PeerError(who, tag if who == frm else f"{tag} (waiting for {frm})",
                                f"does not answer (stalled or unreachable): no message from {frm!r} within "
                                f"{waited:.0f} s and neither a health check nor a TLS handshake answered within "
                                f"{PROBE_SECONDS:g} s")
            how = "it answers health checks" if state[frm] == "answers" else \
                "busy: it completes TLS handshakes but answers no health check"
            if running and waited + timeout <= max(self.patience, timeout):
                log.warning("job %s: waiting for %s (%s): no message for %.0f s; %s, still waiting", self.job_id,
                            frm, tag, waited, how)
                deadline = time.monotonic() + timeout
                continue
            why = (f"is up ({how}); a local step longer than {max(self.patience, timeout):g} s needs a longer round "
                   "timeout") if running else f"is up ({how}) but has no open stream of this job"
            raise PeerError(frm, tag, f"no message within {waited:.0f} s although the party {why}")

    def probe(self) -> dict[str, str]:
        """Liveness of every peer of this job, probed in parallel within ``PROBE_SECONDS``.

        "answers": it answers a health check; "busy": it does not, but completes a
        TLS handshake (up, its interpreter held by a long step); "silent": neither
        (stopped, hung or unreachable).
        """
        def start(fn):
            try:
                return fn()
            except Exception:  # noqa: BLE001 - a probe that cannot start counts as no answer
                return None

        def answered(fut, deadline: float) -> bool:
            try:
                fut.result(timeout=max(0.0, deadline - time.monotonic()))
                return True
            except Exception:  # noqa: BLE001 - failed, refused or timed out
                return False

        calls = {peer: start(lambda link=link: self.pool.health(link).future(pb.HealthRequest(),
                                                                              timeout=PROBE_SECONDS))
                 for peer, link in self.links.items()}
        shakes = {peer: start(lambda link=link: self.pool.handshake(link)) for peer, link in self.links.items()}
        deadline = time.monotonic() + PROBE_SECONDS
        state = {}
        for peer in self.links:
            if calls[peer] is not None and answered(calls[peer], deadline):
                state[peer] = "answers"
            elif shakes[peer] is not None and answered(shakes[peer], deadline):
                state[peer] = "busy"
            else:
                state[peer] = "silent"
        for shake in shakes.values():
            if shake is not None:
                shake.cancel()
                shake.channel.close()
        return state

    # -- called by the incoming side -----------------------------------------------
    def peer_joined(self, peer: str) -> None:
        """``peer`` opened its stream for this job (it runs the job, with the same digest); its DONE, ABORT or
        loss removes it."""
        with self._cond:
            self._joined.add(peer)

    def deliver(self, frm: str, tag: str, array: np.ndarray) -> None:
        key = (frm, tag)
        with self._cond:
            if key in self._seen:
                raise MalformedMessage(f"duplicate message {tag!r}")
            self._seen.add(key)
            if not self._finished:
                self._box[key] = array
                self._cond.notify_all()

    def _peer_failed(self, peer: str, reason: str) -> None:
        with self._cond:
            self._joined.discard(peer)
            if self._finished or self._failure is not None:
                return
            self._failure = (peer, reason)
            self._cond.notify_all()
        log.info("job %s: party %s failed: %s", self.job_id, peer, reason)

    def note_digest(self, peer: str, digest: str) -> bool:
        """Record the job digest in ``peer``'s HELLO; True if it equals this party's."""
        with self._cond:
            self._digests[peer] = digest
            self._cond.notify_all()
        return digest == self.job_digest

    @property
    def digests(self) -> dict[str, str]:
        """The job digest of every party of this job heard of so far (this party's included)."""
        with self._cond:
            return dict(self._digests)

    def wait_digests(self, timeout: float) -> dict[str, str]:
        """Wait (at most ``timeout`` s) until every party's job digest is known; return those known."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._digests) <= len(self.links) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return dict(self._digests)

    def abort_tag(self) -> str:
        """The ``tag`` of an ABORT: the known digests as JSON when they disagree, else empty."""
        known = self.digests
        return json.dumps(known, sort_keys=True, separators=(",", ":")) if len(set(known.values())) > 1 else ""

    def _merge_digests(self, tag: str) -> None:
        """Add the digests an ABORT carried for parties not heard of directly (a HELLO is never overridden)."""
        try:
            got = json.loads(tag) if tag else {}
        except ValueError:
            return
        if not isinstance(got, dict):
            return
        with self._cond:
            for party, digest in got.items():
                if (party in self.links or party == self.me) and isinstance(digest, str) and len(digest) <= 128:
                    self._digests.setdefault(party, digest)
            self._cond.notify_all()

    def peer_done(self, peer: str) -> None:
        """``peer`` ended its stream to us normally (DONE): it finished the job."""
        with self._cond:
            self._joined.discard(peer)

    def peer_aborted(self, peer: str, reason: str, digests: str = "") -> None:
        self._merge_digests(digests)
        with self._cond:
            self._joined.discard(peer)
            if self._finished or self._aborted is not None:
                return
            self._aborted = f"party '{peer}' aborted the job ({reason})"
            self.cancelled = "cancelled:" in reason
            self._cond.notify_all()

    def peer_mismatch(self, peer: str, reason: str) -> None:
        """``peer`` runs this job id with another digest: fail the job here at once."""
        self._peer_failed(peer, reason)

    def peer_malformed(self, peer: str, reason: str) -> None:
        self._peer_failed(peer, f"malformed message: {reason}")

    def peer_lost(self, peer: str) -> None:
        self._peer_failed(peer, "connection lost (stream ended without DONE)")

    @property
    def failure(self) -> tuple[str, str] | None:
        return self._failure


# ----------------------------------------------------------------------------- server side
class Refused(Exception):
    """A stream or call refused by the daemon: a gRPC status code and a message for the caller.

    ``digests`` (an ABORT-style tag, see ``GrpcTransport.abort_tag``) goes back in the
    trailing metadata ``DIGESTS_KEY`` when a stream is refused for a job digest mismatch.
    """

    def __init__(self, code: grpc.StatusCode, message: str, digests: str = ""):
        super().__init__(message)
        self.code, self.message, self.digests = code, message, digests


_fp_cache: dict[bytes, str] = {}


def peer_fingerprint(context: grpc.ServicerContext) -> str | None:
    """SHA-256 fingerprint of the client certificate of this call (mutual TLS), or None."""
    from .tls import fingerprint_pem

    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    pem = pems[0]
    fp = _fp_cache.get(pem)
    if fp is None:
        fp = fingerprint_pem(pem)
        if len(_fp_cache) > 1024:
            _fp_cache.clear()
        _fp_cache[pem] = fp
    return fp


def exchange_handler(resolve, max_message_bytes: int):
    """The ``Peer.Exchange`` server behaviour.

    ``resolve(hello, fingerprint) -> GrpcTransport`` authenticates the caller for
    the job named in the HELLO (waiting briefly for the job to be submitted
    here) or raises ``Refused``. Malformed chunks fail the job's stream from that
    peer with INVALID_ARGUMENT and mark the peer failed in the job.
    """

    def handle(request_iterator, context):
        fp = peer_fingerprint(context)
        try:
            first = next(request_iterator)
        except (StopIteration, grpc.RpcError):
            return
        if isinstance(first, _Bad) or first[0].kind != pb.Chunk.HELLO:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an Exchange stream must start with a HELLO chunk")
        hello = first[0]
        try:
            tr = resolve(hello, fp)
        except Refused as exc:
            if exc.digests:
                context.set_trailing_metadata(((DIGESTS_KEY, exc.digests),))
            context.abort(exc.code, exc.message)
        sender = hello.sender
        tr.peer_joined(sender)
        yield pb.ExchangeReply(kind=pb.ExchangeReply.ACCEPTED)
        asm = Assembler(min(max_message_bytes, tr.max_message_bytes))
        messages = nbytes = 0
        ended = False
        error = None
        try:
            for item in request_iterator:
                if isinstance(item, _Bad):
                    error = item.reason
                    break
                hdr, data = item
                if hdr.kind == pb.Chunk.DATA:
                    try:
                        got = asm.feed(hdr, data)
                        if got is not None:
                            tr.deliver(sender, *got)
                            messages += 1
                            nbytes += got[1].nbytes
                    except MalformedMessage as exc:
                        error = str(exc)
                        break
                elif hdr.kind == pb.Chunk.DONE:
                    if asm.partial:
                        error = "stream ended inside a message"
                        break
                    tr.peer_done(sender)
                    ended = True
                    break
                elif hdr.kind == pb.Chunk.ABORT:
                    tr.peer_aborted(sender, hdr.reason or "no reason given", hdr.tag)
                    ended = True
                    break
                else:
                    error = f"unexpected chunk kind {hdr.kind}"
                    break
        except grpc.RpcError:
            pass
        if error is not None:
            log.warning("job %s: malformed stream from %s: %s", tr.job_id, sender, error)
            tr.peer_malformed(sender, error)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"party {tr.me!r} refused a malformed message: {error}")
        if not ended:
            tr.peer_lost(sender)
            return
        yield pb.ExchangeReply(kind=pb.ExchangeReply.CLOSED, messages=messages, bytes=nbytes)

    return rpc.method_handler("Peer", "Exchange", handle, request_deserializer=decode_chunk)
