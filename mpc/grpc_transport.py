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
its own, naming the sender. The payload field ``data`` (field 15) is written last by our encoder, so the
receiver slices it out of the received bytes without copying; any standard
protobuf encoder produces bytes this decoder reads too. The receiving side
trusts the peer's TLS certificate, never the ``sender`` field.
"""
from __future__ import annotations

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
    "decode_chunk",
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
#: a sender that answers health checks may stay silent this many round timeouts before the job fails
LIVE_PATIENCE = 10
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


def encode_chunk(header: pb.Chunk, payload=b"") -> bytes:
    """Serialised ``Chunk``: the header fields, then field 15 (``data``) = ``payload``, in one copy.

    A padding field (14) is added so that the payload starts at a multiple of
    ``_ALIGN`` bytes into the message: the receiver can then use it in place
    (CPython's bytes buffers are 16-byte aligned) instead of copying it.
    """
    n = len(payload)
    if not n:
        return header.SerializeToString()
    head = header.SerializeToString()
    lead = len(head) + 1 + len(_varint(n))
    pad = (-(lead + 2)) % _ALIGN  # field 14: key (1 byte) + length (1 byte, pad < 128) + pad bytes
    return b"".join((head, _PAD_KEY, bytes((pad,)), bytes(pad), _DATA_KEY, _varint(n), payload))


@dataclass
class _Bad:
    """What the deserializer returns for undecodable bytes (so that the handler can answer clearly)."""

    reason: str


def decode_chunk(raw: bytes):
    """``(Chunk header without data, memoryview of data)`` from wire bytes, or ``_Bad`` if undecodable.

    Walks the top-level fields; the ``data`` field is sliced, not copied, and the
    header is parsed from the remaining (small) bytes.
    """
    try:
        pos, n, span = 0, len(raw), None
        while pos < n:
            key_at = pos
            key, pos = _read_varint(raw, pos)
            field, wt = key >> 3, key & 7
            if field == 0:
                raise ValueError("field number 0")
            if wt == 0:
                _, pos = _read_varint(raw, pos)
            elif wt == 2:
                ln, pos = _read_varint(raw, pos)
                if field == 15:
                    span = (key_at, pos, pos + ln)
                pos += ln
            elif wt == 1:
                pos += 8
            elif wt == 5:
                pos += 4
            else:
                raise ValueError(f"unsupported wire type {wt}")
            if pos > n:
                raise ValueError("truncated field")
        if span is None:
            return pb.Chunk.FromString(raw), memoryview(b"")
        k, s, e = span
        head = raw[:k] + raw[e:] if e < n else raw[:k]
        return pb.Chunk.FromString(head), memoryview(raw)[s:e]
    except Exception as exc:  # noqa: BLE001 - any decoding failure is "malformed"
        return _Bad(f"undecodable chunk ({type(exc).__name__}: {exc})")


def message_chunks(tag: str, array: np.ndarray, chunk_bytes: int = CHUNK_BYTES):
    """Yield the encoded chunks of one message (``array`` must be C-contiguous)."""
    flat = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    nbytes = len(flat)
    total = max(1, math.ceil(nbytes / chunk_bytes))
    first = pb.Chunk(kind=pb.Chunk.DATA, tag=tag, dtype=array.dtype.str, shape=list(array.shape),
                     nbytes=nbytes, index=0, total=total)
    yield encode_chunk(first, flat[:chunk_bytes])
    for i in range(1, total):
        hdr = pb.Chunk(kind=pb.Chunk.DATA, tag=tag, index=i, total=total)
        yield encode_chunk(hdr, flat[i * chunk_bytes:(i + 1) * chunk_bytes])


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
                yield encode_chunk(pb.Chunk(kind=pb.Chunk.ABORT, reason=item[:2000]))
                return
            tag, arr = item
            yield from message_chunks(tag, arr, self.tr.chunk_bytes)

    def _read(self) -> None:
        try:
            for reply in self.call:
                if reply.kind == pb.ExchangeReply.ACCEPTED:
                    self.accepted.set()
        except grpc.RpcError as exc:
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
    for it. ``close()`` ends the streams (DONE), ``abort(reason)`` ends them with
    ABORT and wakes every ``recv``. ``job_digest`` goes in every stream's HELLO.
    """

    def __init__(self, me: str, job_id: str, study: str, links: dict[str, PeerLink], pool: ChannelPool, *,
                 timeout: float = 60.0, max_message_bytes: int = 16 << 30, chunk_bytes: int = CHUNK_BYTES,
                 job_digest: str = ""):
        self.me, self.job_id, self.study, self.job_digest = me, job_id, study, job_digest
        self.links = dict(links)
        self.pool = pool
        self.timeout, self.max_message_bytes, self.chunk_bytes = timeout, max_message_bytes, chunk_bytes
        self.stats = TrafficStats()
        self._cond = threading.Condition()
        self._box: dict[tuple[str, str], np.ndarray] = {}
        self._seen: set[tuple[str, str]] = set()
        self._joined: set[str] = set()  # peers whose stream for this job was accepted: they run the job
        self._out: dict[str, _Outgoing] = {}
        self._failure: tuple[str, str] | None = None  # (peer, reason)
        self._aborted: str | None = None
        self.cancelled = False  # the abort was a cancel (here or at a peer)
        self._finished = False

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
        for out in self._out.values():
            out.put(f"{self.me}: {reason}")
            if not out.accepted.is_set():  # the peer never took the stream: nothing to flush
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

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> np.ndarray:
        """The message (frm, tag). After ``timeout`` s without it, every peer gets a health check: a
        peer that does not answer fails the job (named); if all answer, the sender is alive and
        busy (a long local step, numba compiling on a loaded machine) and, if it has joined this job
        (its stream was accepted), the wait goes on, up to ``LIVE_PATIENCE`` timeouts in all, with a
        warning each time."""
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        key = (frm, tag)
        while True:
            deadline = time.monotonic() + timeout
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
            silent = self.unresponsive()
            if silent:
                who = frm if frm in silent else silent[0]
                raise PeerError(who, tag if who == frm else f"{tag} (waiting for {frm})",
                                f"does not answer (stalled or unreachable): no message from {frm!r} within {timeout:g} s "
                                f"and no answer to a health check within {PROBE_SECONDS:g} s")
            waited = time.monotonic() - start
            if frm not in self._joined:
                raise PeerError(frm, tag, f"no message within {timeout:g} s (the party answers health checks "
                                          "but has not joined the job)")
            if waited >= LIVE_PATIENCE * timeout:
                raise PeerError(frm, tag, f"no message within {waited:.0f} s although the party answers health "
                                          "checks (busy or stuck)")
            log.warning("waiting for %s (%s): no message for %.0f s; it answers health checks, still waiting",
                        frm, tag, waited)

    def unresponsive(self) -> list[str]:
        """The peers of this job that do not answer a health check within ``PROBE_SECONDS`` (probed in parallel)."""
        calls = {}
        for peer, link in self.links.items():
            try:
                calls[peer] = self.pool.health(link).future(pb.HealthRequest(), timeout=PROBE_SECONDS)
            except Exception:  # noqa: BLE001 - a probe that cannot start counts as no answer
                calls[peer] = None
        silent = []
        for peer, fut in calls.items():
            try:
                if fut is None:
                    raise RuntimeError("probe not sent")
                fut.result()
            except Exception:  # noqa: BLE001
                silent.append(peer)
        return silent

    # -- called by the incoming side -----------------------------------------------
    def peer_joined(self, peer: str) -> None:
        """``peer`` opened its stream for this job (it runs the job, with the same digest)."""
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
            if self._finished or self._failure is not None:
                return
            self._failure = (peer, reason)
            self._cond.notify_all()
        log.info("job %s: party %s failed: %s", self.job_id, peer, reason)

    def peer_aborted(self, peer: str, reason: str) -> None:
        with self._cond:
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
    """A stream or call refused by the daemon: a gRPC status code and a message for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


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
                    ended = True
                    break
                elif hdr.kind == pb.Chunk.ABORT:
                    tr.peer_aborted(sender, hdr.reason or "no reason given")
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
