"""Protocol benchmark jobs, registered by name so that daemons can run them like workloads.

Each ``bench.<op>`` job makes its own random inputs (owned by the first two
parties), runs the protocol once to warm up (compilation, allocator) and then
times ``reps`` runs, and returns seconds, bytes sent by this party and rounds per
run, plus ``ok``: after the timed runs, the last result is opened (label
``bench.check``, outside the timing) and compared with the plaintext computation
where the op registers a check; ``ok`` is None (not checked) otherwise, never a
truth value of the result object itself.
"""
from __future__ import annotations

import time

import numpy as np

from cipherome.mpc.jobs import job

from . import arith

__all__ = ["BENCH_OPS", "bench_op", "measure", "close_to"]

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


def _inputs(ctx, shape, seed: int = 7, scale: float = 1.0):
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
    x, y, xv, yv = _inputs(ctx, (size,))
    return (lambda: arith.mul(x, y)), (lambda z: close_to(ctx, z, xv * yv, 1e-4))


@bench_op("matmul", 1000)
def _matmul(ctx, size):
    x, y, xv, yv = _inputs(ctx, (size, size))
    return (lambda: arith.matmul(x, y)), (lambda z: close_to(ctx, z, xv @ yv, 1e-4 * size))


@bench_op("open", 10**6)
def _open(ctx, size):
    x, _, xv, _ = _inputs(ctx, (size,))

    return (lambda: ctx.open(x, "bench.open")), (lambda got: np.allclose(got, xv, rtol=0, atol=2.0 ** -ctx.frac))
