"""An emulated wide-area link: a TCP relay on loopback that delays every byte and paces it to a bandwidth.

The kernel here has no ``netem``, so the link is emulated in user space at the
TCP level: a ``WanRelay`` listens on a loopback port in front of a daemon and
forwards each accepted connection to the daemon's real port. Every chunk read
from one side is scheduled for delivery at ``departure + latency``, where the
departure time paces the connection's direction to ``bandwidth`` bytes per
second (a chunk leaves when the previous one has been "serialised" onto the
link); the relay buffers at most the link's bandwidth-delay product plus a
router queue before it stops reading, so the sender's TCP sees back-pressure.
The relay is asyncio protocol callbacks, not stream coroutines: a read (up to asyncio's
256 KiB) is one ``data_received`` holding the received bytes as they are, and every
chunk that is due is handed to the socket by one timer callback. That keeps the
relay's own CPU time low (it shares the cores with the daemons it connects): 256 MB
sent in 2 MB writes through a 20 ms / 1 Gbit/s relay took 1.6-1.7 s of its CPU per GB,
against 2.8 s with asyncio streams (the StreamReader copied every read twice).
Everything above TCP (TLS, HTTP/2 windows, gRPC flow control, keepalive pings)
travels through the relay and therefore sees the real delay.

A ``WanSpec`` is written ``"50ms,1gbit"``: the round-trip time and the bandwidth
of each direction of each pairwise link. Every daemon's study address points at
its own relay, so a connection from party a to party b crosses exactly one relay
(b's), which delays each direction by half the round-trip time. The floor of a
run (``WanSpec.floor``) is the issue's ``rounds x RTT + bytes / bandwidth``; a
lock-step opening (every party sends, then receives) costs one one-way delay,
so ``rounds x RTT / 2 + bytes / bandwidth`` is the strict lower bound.
"""
from __future__ import annotations

import asyncio
import re
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["WanSpec", "WanRelay", "parse_wan"]

_UNITS_T = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_UNITS_B = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "kbps": 1e3 / 8, "mbps": 1e6 / 8, "gbps": 1e9 / 8}
#: router queue beyond the bandwidth-delay product before the relay stops reading
QUEUE_BYTES = 4 << 20


@dataclass(frozen=True)
class WanSpec:
    """rtt: round-trip time in seconds; bandwidth: bytes per second per direction (inf: unlimited)."""

    rtt: float
    bandwidth: float = float("inf")

    @property
    def one_way(self) -> float:
        return self.rtt / 2

    def floor(self, rounds: int, nbytes: float) -> float:
        """The issue's floor of a run: rounds x RTT + bytes / bandwidth (seconds)."""
        return rounds * self.rtt + nbytes / self.bandwidth

    def strict_floor(self, rounds: int, nbytes: float) -> float:
        """A lower bound for lock-step rounds: rounds x one-way delay + bytes / bandwidth."""
        return rounds * self.one_way + nbytes / self.bandwidth

    def __str__(self) -> str:
        bw = "unlimited" if self.bandwidth == float("inf") else f"{self.bandwidth * 8 / 1e6:g} Mbit/s"
        return f"{self.rtt * 1e3:g} ms RTT, {bw}"


def parse_wan(text: str | WanSpec | None) -> WanSpec | None:
    """``"50ms,1gbit"`` (RTT, bandwidth; bandwidth optional) -> ``WanSpec``; None or "" -> None."""
    if text is None or isinstance(text, WanSpec):
        return text
    text = str(text).strip().lower().replace(" ", "")
    if not text or text in ("none", "loopback"):
        return None
    parts = text.split(",")
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", parts[0])
    if not m or len(parts) > 2:
        raise ValueError(f"WAN link {text!r}: expected RTT[,BANDWIDTH], e.g. 50ms,1gbit or 20ms,100mbit")
    rtt = float(m.group(1)) * _UNITS_T[m.group(2)]
    bw = float("inf")
    if len(parts) == 2:
        b = re.fullmatch(r"([0-9.]+)(kbit|mbit|gbit|kbps|mbps|gbps)", parts[1])
        if not b or float(b.group(1)) <= 0:
            raise ValueError(f"WAN bandwidth {parts[1]!r}: expected e.g. 1gbit or 100mbit")
        bw = float(b.group(1)) * _UNITS_B[b.group(2)]
    return WanSpec(rtt, bw)


class _Side(asyncio.Protocol):
    """One socket of a relayed connection. What it reads enters its ``out`` direction (towards the other side)."""

    def __init__(self, on_made=None):
        self.transport: asyncio.Transport | None = None
        self.out: _Direction | None = None  # what this side reads goes there
        self.into: _Direction | None = None  # what this side writes comes from there
        self.on_made = on_made

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.pause_reading()  # until both directions are wired (``WanRelay._connect``)
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        self.out.push(data)

    def eof_received(self) -> bool:
        self.out.push(None)
        return True  # keep the socket open for the other direction (half-close)

    def connection_lost(self, exc) -> None:
        if self.out is not None:
            self.out.push(None)
        if self.into is not None:
            self.into.end()

    def pause_writing(self) -> None:
        self.into.dst_ready = False

    def resume_writing(self) -> None:
        self.into.dst_ready = True
        self.into.flush()


class _Direction:
    """One direction of one relayed connection: paced and delayed chunks from ``src`` to ``dst``.

    A chunk read at time t leaves the emulated link at d = max(t, d_prev) + len / bandwidth and is
    delivered at d + one-way delay (store and forward). At most ``limit`` bytes (the bandwidth-delay
    product plus a router queue) are held before reading from ``src`` pauses, so the sender's TCP
    sees back-pressure; a destination that stops reading stops the flushes the same way.
    Callbacks, not coroutines: one read costs one ``data_received`` and one timer, which keeps the
    relay's own CPU time low (it shares the cores with the daemons it connects).
    """

    def __init__(self, spec: WanSpec, loop: asyncio.AbstractEventLoop, src: _Side, dst: _Side):
        self.spec, self.loop, self.src, self.dst = spec, loop, src, dst
        self.chunks: deque = deque()  # (due time, bytes or None for the end of the stream)
        self.free_at = 0.0  # when the link finishes serialising what was read so far
        bdp = spec.bandwidth * spec.one_way if spec.bandwidth != float("inf") else 64 << 20
        self.limit = int(min(bdp, 1 << 30)) + QUEUE_BYTES
        self.held = 0
        self.paused = False
        self.dst_ready = True
        self.timer: asyncio.TimerHandle | None = None
        self.ended = loop.create_future()  # done once the end of the stream is forwarded or the destination left

    def push(self, data: bytes | None) -> None:
        if self.ended.done():
            return
        now = self.loop.time()
        if data is None:
            if self.chunks and self.chunks[-1][1] is None:
                return
            self.chunks.append((max(now, self.free_at) + self.spec.one_way, None))
        else:
            self.free_at = max(now, self.free_at) + len(data) / self.spec.bandwidth
            self.chunks.append((self.free_at + self.spec.one_way, data))
            self.held += len(data)
            if self.held > self.limit and not self.paused:
                self.paused = True
                self.src.transport.pause_reading()
        if self.timer is None:
            self._arm()

    def _arm(self) -> None:
        if self.chunks and self.dst_ready and self.timer is None:
            self.timer = self.loop.call_at(self.chunks[0][0], self._due)

    def _due(self) -> None:
        self.timer = None
        self.flush()

    def flush(self) -> None:
        """Hand every chunk that is due to the destination socket (while it accepts data)."""
        if self.ended.done() or self.timer is not None:
            return
        now = self.loop.time()
        tr = self.dst.transport
        while self.chunks and self.dst_ready and self.chunks[0][0] <= now:
            _, data = self.chunks.popleft()
            if data is None:
                try:
                    if tr.can_write_eof():
                        tr.write_eof()
                except OSError:  # the destination is gone already (its connection_lost is on its way)
                    pass
                self.end()
                return
            tr.write(data)
            self.held -= len(data)
        if self.paused and self.held <= self.limit:
            self.paused = False
            self.src.transport.resume_reading()
        self._arm()

    def end(self) -> None:
        """Drop what is held and stop: the end of the stream was forwarded, or the destination left."""
        self.chunks.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.ended.done():
            self.ended.set_result(None)


class WanRelay:
    """Relays on 127.0.0.1 emulating ``spec`` in front of local ports, served by one background thread.

    ``add(target_port) -> relay_port``; ``close()`` stops every relay and connection.
    """

    def __init__(self, spec: WanSpec | str):
        self.spec = parse_wan(spec)
        if self.spec is None:
            raise ValueError("a WAN relay needs a link, e.g. 50ms,1gbit")
        self.loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, name="wan-relay", daemon=True)
        self._thread.start()

    def add(self, target_port: int, host: str = "127.0.0.1") -> int:
        """Start a relay in front of ``host:target_port``; returns the relay's port on 127.0.0.1."""
        async def start():
            server = await self.loop.create_server(lambda: self._accept(host, target_port), "127.0.0.1", 0)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def _accept(self, host: str, port: int) -> _Side:
        """The client's side of a new connection, and a task connecting the daemon's side."""
        def made(client: _Side) -> None:
            task = self.loop.create_task(self._connect(client, host, port))
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)

        return _Side(on_made=made)

    async def _connect(self, client: _Side, host: str, port: int) -> None:
        try:
            _, server = await self.loop.create_connection(_Side, host, port)
        except OSError:
            client.transport.close()
            return
        if client.transport.is_closing():  # the client left while the daemon's side was connecting
            server.transport.close()
            return
        up = client.out = server.into = _Direction(self.spec, self.loop, client, server)
        down = server.out = client.into = _Direction(self.spec, self.loop, server, client)
        client.transport.resume_reading()
        server.transport.resume_reading()
        try:  # until both directions have ended (each side's end of stream forwarded, or a side left)
            await asyncio.gather(up.ended, down.ended)
        finally:
            for side in (client, server):
                side.transport.close()

    def close(self) -> None:
        """Stop accepting, drop every relayed connection and end the thread."""
        if not self.loop.is_running():
            return

        async def stop():
            for s in self._servers:
                s.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
