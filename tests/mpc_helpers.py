"""Helpers for engine tests: run a function on shared inputs among n parties and open the result."""
from __future__ import annotations

import numpy as np

from cipherome.mpc.local import run_local


def run_shared(fn, arrays: list[np.ndarray], n: int = 3, fracs=None, frac: int = 20):
    """Share ``arrays`` (array i owned by party i mod n), apply ``fn(ctx, *shared)`` and open.

    Returns (opened result at the lead, LocalRun). ``fracs`` gives each input's
    scale (default: ``frac`` for float arrays, 0 for integer arrays).
    """
    arrays = [np.asarray(a) for a in arrays]
    if fracs is None:
        fracs = [frac if a.dtype.kind == "f" else 0 for a in arrays]

    def job(ctx):
        xs = []
        for i, (a, f) in enumerate(zip(arrays, fracs)):
            owner = ctx.parties[i % ctx.n]
            xs.append(ctx.input(owner, a if ctx.me == owner else None, shape=a.shape, frac=f))
        out = fn(ctx, *xs)
        return ctx.open(out, "result")

    run = run_local(job, n, frac=frac)
    for r in run.results[1:]:
        np.testing.assert_array_equal(r, run.results[0])  # everybody opens the same value
    return run.results[0], run
