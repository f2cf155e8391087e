"""Benchmarks of the non-linear protocols, registered as ``cipherome bench`` operations and ``bench.<op>`` jobs.

lt: x < y for two secret vectors; invsqrt: 1/sqrt of a secret positive vector;
sigmoid: the logistic function of a secret vector; qr: thin QR of a secret
(size x 20) matrix. Inputs are random, owned by the first two parties; the timed
runs open nothing; ``lt`` opens its last result once to check it (``ok``), the
others are checked by tests and bench/test_bench_nonlinear.py (``ok`` is None).
"""
from __future__ import annotations

import numpy as np

from . import compare, functions, linalg, roots
from .jobs import _inputs, bench_op, close_to

__all__ = ["QR_COLUMNS"]

#: columns of the ``qr`` benchmark matrix (its size is the number of rows)
QR_COLUMNS = 20


def _positive(ctx, shape, lo: float, hi: float, seed: int = 11):
    owner = ctx.parties[0]
    v = np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), shape))
    return ctx.input(owner, v if ctx.me == owner else None, shape=shape, frac=ctx.frac), v


@bench_op("lt", 10**5)
def _lt(ctx, size):
    x, y, xv, yv = _inputs(ctx, (size,), scale=1000.0)
    return (lambda: compare.lt(x, y)), (lambda b: close_to(ctx, b, (xv < yv).astype(float), 0.5))


@bench_op("invsqrt", 10**5)
def _invsqrt(ctx, size):
    x, _ = _positive(ctx, (size,), 1e-3, 1e6)
    return lambda: roots.invsqrt(x)


@bench_op("sigmoid", 10**5)
def _sigmoid(ctx, size):
    x, _, _, _ = _inputs(ctx, (size,), scale=20.0)
    return lambda: functions.sigmoid(x)


@bench_op("qr", 10000)
def _qr(ctx, size):
    owner = ctx.parties[0]
    rng = np.random.default_rng(13)
    a = rng.standard_normal((size, QR_COLUMNS)) @ (np.eye(QR_COLUMNS) + 0.3 * rng.standard_normal((QR_COLUMNS, QR_COLUMNS)))
    a /= a.std(axis=0)
    x = ctx.input(owner, a if ctx.me == owner else None, shape=a.shape, frac=ctx.frac)
    return lambda: linalg.qr(x)
