"""Benchmark jobs, in one place: the protocol operations and the transport measurements.

Registered by name (``bench.<op>``) so that ``cipherome bench`` and party daemons run
them like workloads (``mpc.jobs`` imports this module on first lookup). Each protocol
job makes its own random inputs (owned by the first two parties), runs the protocol
once to warm up (compilation, allocator) and then times ``reps`` runs, and returns
seconds, bytes sent by this party and rounds per run, plus ``ok``: after the timed
runs the last result is opened (label ``bench.check``, outside the timing) and
compared with the plaintext computation where the op registers a check (mul,
matmul, open, lt); ``ok`` is None (not checked) otherwise, never the truth value of
the result object. The other non-linear ops (invsqrt, sigmoid, qr) are checked by
tests and bench/test_bench_nonlinear.py.
``bench.exchange`` sends one array of ``size`` bytes from the lead to the second
party (who answers with a one-byte acknowledgement); ``bench.rtt`` times ``reps``
ping-pongs of an 8-byte message between the same two parties.
"""
from __future__ import annotations

import time

import numpy as np

from cipherome.mpc.jobs import job
from cipherome.protocols import arith, compare, functions, linalg, roots

__all__ = ["BENCH_OPS", "NET_OPS", "QR_COLUMNS", "bench_op", "measure", "close_to", "random_inputs", "exchange",
           "rtt"]

#: op name -> (default size, function(ctx, size, rng) -> callable that runs the op once)
BENCH_OPS: dict[str, tuple[int, object]] = {}


def bench_op(name: str, default_size: int):
    """Register a protocol benchmark and its job ``bench.<name>``.

    ``prepare(ctx, size)`` returns ``run`` (a callable running the op once) or
    ``(run, check)`` where ``check(result) -> bool`` opens the result and compares
    it with the plaintext computation.
    """

    def deco(prepare):
        BENCH_OPS[name] = (default_size, prepare)

        @job(f"bench.{name}")
        def _run(ctx, params, site=None):
            return measure(ctx, prepare, int(params.get("size", default_size)), int(params.get("reps", 1)))

        return prepare

    return deco


def measure(ctx, prepare, size: int, reps: int) -> dict:
    """Warm up once, then time ``reps`` runs; per-run seconds, bytes sent and rounds, and the check."""
    prepared = prepare(ctx, size)
    run, check = prepared if isinstance(prepared, tuple) else (prepared, None)
    run()
    st = ctx.transport.stats
    b0, r0, t0 = st.bytes_sent, ctx.rounds, time.perf_counter()
    for _ in range(reps):
        out = run()
    dt = time.perf_counter() - t0
    sent, rounds = (st.bytes_sent - b0) / reps, (ctx.rounds - r0) / reps
    return {
        "seconds": dt / reps,
        "bytes_sent": sent,
        "rounds": rounds,
        "ok": bool(check(out)) if check is not None else None,
    }


def close_to(ctx, result, expected: np.ndarray, atol: float) -> bool:
    """Open ``result`` (label ``bench.check``) and compare it with ``expected`` within ``atol``."""
    got = ctx.open(result, "bench.check")
    return got.shape == np.shape(expected) and bool(np.allclose(got, expected, rtol=0, atol=atol))


def random_inputs(ctx, shape, seed: int = 7, scale: float = 1.0):
    """Two secret random arrays of a public shape, owned by the first two parties."""
    owner_x, owner_y = ctx.parties[0], ctx.parties[1]
    rng = np.random.default_rng(seed)
    xv = rng.uniform(-scale, scale, shape)
    yv = rng.uniform(-scale, scale, shape)
    x = ctx.input(owner_x, xv if ctx.me == owner_x else None, shape=shape, frac=ctx.frac)
    y = ctx.input(owner_y, yv if ctx.me == owner_y else None, shape=shape, frac=ctx.frac)
    return x, y, xv, yv


@bench_op("mul", 10**6)
def _mul(ctx, size):
    x, y, xv, yv = random_inputs(ctx, (size,))
    return (lambda: arith.mul(x, y)), (lambda z: close_to(ctx, z, xv * yv, 1e-4))


@bench_op("matmul", 1000)
def _matmul(ctx, size):
    x, y, xv, yv = random_inputs(ctx, (size, size))
    return (lambda: arith.matmul(x, y)), (lambda z: close_to(ctx, z, xv @ yv, 1e-4 * size))


@bench_op("open", 10**6)
def _open(ctx, size):
    x, _, xv, _ = random_inputs(ctx, (size,))

    return (lambda: ctx.open(x, "bench.open")), (lambda got: np.allclose(got, xv, rtol=0, atol=2.0 ** -ctx.frac))


# -- non-linear protocols ---------------------------------------------------------------------
#: columns of the ``qr`` benchmark matrix (its size is the number of rows)
QR_COLUMNS = 20


def _positive(ctx, shape, lo: float, hi: float, seed: int = 11):
    owner = ctx.parties[0]
    v = np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), shape))
    return ctx.input(owner, v if ctx.me == owner else None, shape=shape, frac=ctx.frac), v


@bench_op("lt", 10**5)
def _lt(ctx, size):
    x, y, xv, yv = random_inputs(ctx, (size,), scale=1000.0)
    return (lambda: compare.lt(x, y)), (lambda b: close_to(ctx, b, (xv < yv).astype(float), 0.5))


@bench_op("invsqrt", 10**5)
def _invsqrt(ctx, size):
    x, _ = _positive(ctx, (size,), 1e-3, 1e6)
    return lambda: roots.invsqrt(x)


@bench_op("sigmoid", 10**5)
def _sigmoid(ctx, size):
    x, _, _, _ = random_inputs(ctx, (size,), scale=20.0)
    return lambda: functions.sigmoid(x)


@bench_op("qr", 10000)
def _qr(ctx, size):
    owner = ctx.parties[0]
    rng = np.random.default_rng(13)
    a = rng.standard_normal((size, QR_COLUMNS)) @ (np.eye(QR_COLUMNS) + 0.3 * rng.standard_normal((QR_COLUMNS, QR_COLUMNS)))
    a /= a.std(axis=0)
    x = ctx.input(owner, a if ctx.me == owner else None, shape=a.shape, frac=ctx.frac)
    return lambda: linalg.qr(x)


# -- transport ----------------------------------------------------------------------------------
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
