"""Randomized sketching on shares: a secret Gaussian test matrix and the opened Gram matrix P'P.

Randomized subspace iteration starts from a Gaussian matrix Q that no party may
know (the dealer draws it and shares it), and orthonormalises its iterates P
through their small L x L Gram matrix P'P, which is opened.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.kernels import ring_matmul_tn
from cipherome.mpc.ring import decode, encode
from cipherome.mpc.shares import Shared

__all__ = ["gaussian", "open_gram"]


@recipe("gaussian")
def _gaussian(gen, shape, frac, scale):
    """A secret N(0, scale^2) matrix that the dealer draws (Box-Muller) and shares. Cost: |shape|."""
    shape = tuple(int(s) for s in shape)

    def value():
        u = gen.private((2,) + shape)
        u1 = ((u[0] >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
        u2 = (u[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return encode(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2) * float(scale), int(frac))

    return gen.derived(shape, value)


@recipe("gram_pair")
def _gram_pair(gen, shape):
    """Gram pair: uniform A (n, L) and C = A'A (L, L). Cost: L^2."""
    shape = tuple(int(s) for s in shape)
    a = gen.random(shape)
    c = gen.derived((shape[1], shape[1]), lambda: ring_matmul_tn(a, a))
    return a, c


def gaussian(ctx, shape, frac: int, scale: float) -> Shared:
    """A secret matrix of i.i.d. N(0, scale^2) entries at ``frac`` fractional bits, that no party knows.

    The dealer draws it (Box-Muller on its private randomness) and shares it. Cost:
    0 rounds; the dealer sends the lead |shape| ring elements.
    """
    got = ctx.provider.fetch("gaussian", shape=[int(s) for s in shape], frac=int(frac), scale=float(scale))
    return Shared(ctx, got[0], int(frac))


def open_gram(ctx, p: Shared, label: str = "pca.gram") -> np.ndarray:
    """P'P (L x L) of a shared P (n x L), opened to all compute parties; returns float64.

    Steps: dealer gives A (uniform, n x L) and C = A'A; open E = P - A (masked, n L
    elements, 1 round); P'P = E'E + E'A + A'E + C (the lead adds E'E), opened at the
    doubled scale without truncation (1 round, L^2 values). Needs |P'P| < 2^(63 - 2f).
    """
    pair = ctx.provider.fetch("gram_pair", shape=list(p.shape))
    a = pair[0]
    (e,) = ctx.open_masked([p.data - a], "pca.gram_mask")
    ea = ring_matmul_tn(e, a)
    g = ea + ea.T + pair[1]
    if ctx.is_lead:
        g += ring_matmul_tn(e, e)
    (got,) = ctx.disclose([g], label)
    return decode(got, 2 * p.frac)
