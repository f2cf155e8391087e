"""Jobs that the daemon end-to-end tests load into real daemons (site config ``plugins``).

``test.check_mul`` checks a secure product against numpy inside the job;
``test.slow`` keeps a job in its rounds long enough to kill or cancel it;
``test.site`` returns what a job sees of its site (and its BLAS pool sizes); ``test.fail`` fails at one party;
``test.busy`` has one party compute locally (holding the interpreter lock, or not) for longer than a round timeout.
"""
from __future__ import annotations

import ctypes
import time

import numpy as np

from cipherome.mpc.jobs import job
from cipherome.protocols import arith

__all__ = ["check_mul", "slow", "site_info", "fail", "once", "busy"]


def _operands(seed: int, shape):
    rng = np.random.default_rng(seed)
    return rng.uniform(-4, 4, shape), rng.uniform(-4, 4, shape)


@job("test.check_mul")
def check_mul(ctx, params, site=None):
    """x (owned by parties[0]) times y (owned by parties[-1]), elementwise and as matrices, opened to all."""
    n, seed = int(params.get("n", 20)), int(params.get("seed", 1))
    xv, yv = _operands(seed, (n, n))
    a, b = ctx.parties[0], ctx.parties[-1]
    x = ctx.input(a, xv if ctx.me == a else None, shape=(n, n), frac=ctx.frac)
    y = ctx.input(b, yv if ctx.me == b else None, shape=(n, n), frac=ctx.frac)
    prod = ctx.open(arith.mul(x, y), "test.mul")
    mat = ctx.open(arith.matmul(x, y), "test.matmul")
    err = max(float(np.max(np.abs(prod - xv * yv))), float(np.max(np.abs(mat - xv @ yv))))
    return {"ok": err < 1e-3, "max_err": err, "product": mat, "seed": seed}


@job("test.slow")
def slow(ctx, params, site=None):
    """``rounds`` openings of a small vector with ``sleep`` seconds between them."""
    x = ctx.input(ctx.parties[0], np.arange(4.0) if ctx.me == ctx.parties[0] else None, shape=(4,), frac=ctx.frac)
    for i in range(int(params.get("rounds", 10))):
        ctx.open(x, f"slow.{i}")
        time.sleep(float(params.get("sleep", 0.1)))
    return {"rounds": ctx.rounds}


@job("test.site")
def site_info(ctx, params, site=None):
    from threadpoolctl import threadpool_info

    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return {"party": ctx.me, "name": site.name, "data": site.data, "policy": site.policy, "blas_threads": blas}


@job("test.fail")
def fail(ctx, params, site=None):
    ctx.open(ctx.input(ctx.parties[0], np.ones(3) if ctx.me == ctx.parties[0] else None, shape=(3,),
                       frac=ctx.frac), "before")
    if ctx.me == params.get("party", ctx.parties[1]):
        raise ValueError("deliberate failure for the test")
    ctx.open(ctx.input(ctx.parties[0], np.ones(3) if ctx.me == ctx.parties[0] else None, shape=(3,),
                       frac=ctx.frac), "after")
    return {}


@job("test.once")
def once(ctx, params, site=None):
    """One run of a protocol benchmark op (``bench.<op>`` without its warm-up): time, bytes and rounds."""
    from cipherome.cli.bench_jobs import BENCH_OPS

    op, size = params["op"], int(params["size"])
    run = BENCH_OPS[op][1](ctx, size)
    st = ctx.transport.stats
    b0, r0, t0 = st.bytes_sent, ctx.rounds, time.perf_counter()
    ok = run()
    return {"seconds": time.perf_counter() - t0, "bytes_sent": st.bytes_sent - b0, "rounds": ctx.rounds - r0,
            "ok": None if ok is None else bool(ok)}


@job("test.busy")
def busy(ctx, params, site=None):
    """Two openings; between them ``party`` is busy for ``seconds``: with ``gil`` in one C call that holds the
    interpreter lock all along (``sleep`` through ``ctypes.PyDLL``, as a long sort of Python strings or a
    non-nogil kernel would), else in a step that releases it."""
    x = ctx.input(ctx.parties[0], np.arange(4.0) if ctx.me == ctx.parties[0] else None, shape=(4,), frac=ctx.frac)
    before = ctx.open(x, "busy.before")
    if ctx.me == params.get("party", ctx.parties[0]):
        if params.get("gil"):
            ctypes.PyDLL(None).sleep(int(params["seconds"]))
        else:
            time.sleep(float(params["seconds"]))
    after = ctx.open(x, "busy.after")
    return {"ok": bool(np.allclose(before, np.arange(4.0)) and np.allclose(after, before))}
