"""An emulated wide-area link: a TCP relay on loopback that delays every byte and paces it to a bandwidth.

The kernel here has no ``netem``, so the link is emulated in user space at the
TCP level: a ``WanRelay`` listens on a loopback port in front of a daemon and
forwards each accepted connection to the daemon's real port. Every chunk read
from one side is scheduled for delivery at ``departure + latency``, where the
departure time paces the connection's direction to ``bandwidth`` bytes per
second (a chunk leaves when the previous one has been "serialised" onto the
link); the relay buffers at most the link's bandwidth-delay product plus a
router queue before it stops reading, so the sender's TCP sees back-pressure.
Chunks already due when one is written go out in the same write (and reads take up
to ``READ_BYTES``), which keeps the relay's own CPU time low: it shares the cores with
the daemons it connects.
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
from dataclasses import dataclass

__all__ = ["WanSpec", "WanRelay", "parse_wan"]

_UNITS_T = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_UNITS_B = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "kbps": 1e3 / 8, "mbps": 1e6 / 8, "gbps": 1e9 / 8}
#: bytes the relay reads per chunk (a chunk is delivered whole: store and forward)
READ_BYTES = 256 << 10
#: router queue beyond the bandwidth-delay product before the relay stops reading
QUEUE_BYTES = 4 << 20
#: ``pump_out``'s marker for "nothing taken from the queue yet" (None is the end of the stream)
_NOTHING = object()
#: the relay's socket read buffer (asyncio's default 64 KB would cut reads below READ_BYTES)
_STREAM_LIMIT = 1 << 20


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


class _Direction:
    """One direction of one relayed connection: read, pace, delay, write."""

    def __init__(self, spec: WanSpec, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.spec, self.reader, self.writer = spec, reader, writer
        self.queue: asyncio.Queue = asyncio.Queue()
        self.free_at = 0.0  # when the link finishes serialising what was read so far
        bdp = spec.bandwidth * spec.one_way if spec.bandwidth != float("inf") else 64 << 20
        self.limit = int(min(bdp, 1 << 30)) + QUEUE_BYTES
        self.held = 0
        self.room = asyncio.Event()
        self.room.set()

    async def pump_in(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.reader.read(READ_BYTES)
                if not data:
                    break
                now = loop.time()
                self.free_at = max(now, self.free_at) + len(data) / self.spec.bandwidth
                self.queue.put_nowait((self.free_at + self.spec.one_way, data))
                self.held += len(data)
                if self.held > self.limit:
                    self.room.clear()
                    await self.room.wait()
        except (ConnectionError, OSError):
            pass
        finally:
            self.queue.put_nowait(None)

    async def pump_out(self) -> None:
        loop = asyncio.get_running_loop()
        item = _NOTHING  # what was taken from the queue but not written yet (a chunk not due, or the end)
        try:
            while True:
                if item is _NOTHING:
                    item = await self.queue.get()
                if item is None:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    break
                wait = item[0] - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                chunks, item = [item[1]], _NOTHING
                while not self.queue.empty():  # every chunk already due goes out in the same write
                    item = self.queue.get_nowait()
                    if item is None or item[0] > loop.time():
                        break
                    chunks.append(item[1])
                    item = _NOTHING
                self.writer.writelines(chunks)
                await self.writer.drain()
                self.held -= sum(len(c) for c in chunks)
                if self.held <= self.limit:
                    self.room.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.room.set()


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
            server = await asyncio.start_server(lambda r, w: self._accept(r, w, host, target_port), "127.0.0.1", 0,
                                                limit=_STREAM_LIMIT)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    async def _accept(self, creader, cwriter, host: str, port: int) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            sreader, swriter = await asyncio.open_connection(host, port, limit=_STREAM_LIMIT)
        except OSError:
            cwriter.close()
            self._conns.discard(task)
            return
        up, down = _Direction(self.spec, creader, swriter), _Direction(self.spec, sreader, cwriter)
        try:
            await asyncio.gather(up.pump_in(), up.pump_out(), down.pump_in(), down.pump_out())
        finally:
            for w in (cwriter, swriter):
                w.close()
            self._conns.discard(task)

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
