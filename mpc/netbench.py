"""Transport benchmark jobs: raw share throughput of one large exchange and small-message round latency.

``bench.exchange`` sends one array of ``size`` bytes from the lead to the second
party (who answers with a one-byte acknowledgement), ``bench.rtt`` times ``reps``
ping-pongs of an 8-byte message between the same two parties; both return the
same row format as the protocol benchmarks (seconds, bytes_sent, rounds, ok).
"""
from __future__ import annotations

import time

import numpy as np

from .jobs import job

__all__ = ["exchange", "rtt", "NET_OPS"]

#: transport benchmark op -> default size (bytes for "exchange", round trips for "rtt")
NET_OPS = {"exchange": 256 << 20, "rtt": 200}


@job("bench.exchange")
def exchange(ctx, params, site=None) -> dict:
    """One message of ``size`` bytes (uint64 shares) from parties[0] to parties[1]; seconds until it is acknowledged."""
    size = int(params.get("size", 256 << 20))
    a, b = ctx.parties[0], ctx.parties[1]
    st = ctx.transport.stats
    b0 = st.bytes_sent
    ok = None
    tag = "bench.exchange"
    if ctx.me == a:
        data = np.random.default_rng(1).integers(0, 2**63, size // 8, dtype=np.uint64)
        check = int(data[:: max(1, data.size // 1000)].sum())
        ctx.transport.send(b, "warm", np.zeros(1, np.uint64))
        ctx.transport.recv(b, "warm", ctx.timeout)
        t0 = time.perf_counter()
        ctx.transport.send(b, tag, data)
        ack = ctx.transport.recv(b, tag + "/ack", ctx.timeout)
        dt = time.perf_counter() - t0
        ok = int(ack[0]) == check % (2**63)
    elif ctx.me == b:
        ctx.transport.recv(a, "warm", ctx.timeout)
        ctx.transport.send(a, "warm", np.zeros(1, np.uint64))
        t0 = time.perf_counter()
        got = ctx.transport.recv(a, tag, ctx.timeout)
        s = int(got[:: max(1, got.size // 1000)].sum()) % (2**63)
        ctx.transport.send(a, tag + "/ack", np.array([s], np.uint64))
        dt = time.perf_counter() - t0
    else:
        dt = 0.0
    ctx.rounds += 2
    return {"seconds": dt, "bytes_sent": st.bytes_sent - b0, "rounds": 2, "ok": ok,
            "mb_per_s": size / dt / 1e6 if dt else 0.0}


@job("bench.rtt")
def rtt(ctx, params, site=None) -> dict:
    """``size`` ping-pongs of one 8-byte message between parties[0] and parties[1]; seconds per round trip."""
    reps = max(1, int(params.get("size", 200)))
    a, b = ctx.parties[0], ctx.parties[1]
    st = ctx.transport.stats
    b0 = st.bytes_sent
    one = np.zeros(1, np.uint64)
    t0 = time.perf_counter()
    if ctx.me in (a, b):
        other = b if ctx.me == a else a
        for i in range(reps + 1):
            if i == 1:
                t0, b0 = time.perf_counter(), st.bytes_sent
            if ctx.me == a:
                ctx.transport.send(other, f"ping/{i}", one.copy())
                ctx.transport.recv(other, f"pong/{i}", ctx.timeout)
            else:
                ctx.transport.recv(other, f"ping/{i}", ctx.timeout)
                ctx.transport.send(other, f"pong/{i}", one.copy())
    dt = (time.perf_counter() - t0) / reps
    ctx.rounds += 2 * reps
    return {"seconds": dt, "bytes_sent": (st.bytes_sent - b0) / reps, "rounds": 2, "ok": True}
