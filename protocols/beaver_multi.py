"""Several products among a few secret vectors, each vector opened (masked) only once.

Beaver's method opens x - a and y - b for every product x y. When the same
vector takes part in several products (g y, g u and y u in a Goldschmidt step),
one mask per vector and the dealer's products of the masks for the needed pairs
let each vector be opened once: x_i x_j = c_ij + e_i a_j + a_i e_j + e_i e_j,
with e_i = x_i - a_i public and c_ij = a_i a_j from the dealer. Vectors may be
opened in different rounds (the masks are drawn up front).
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.shares import Shared

from .beaver import MUL, combine

__all__ = ["MultiProduct"]

U64 = np.uint64


@recipe("mask_products", rotate=True)
def _mask_products(gen, shape, m, pairs):
    """m uniform masks a_i (shape each) and c_k = a_i a_j for each listed pair (i, j) (i = j: squares).

    Cost (dealer -> lead): one ring element per pair and element.
    """
    shape = tuple(shape)
    a = gen.random((m,) + shape)
    ii = np.array([p[0] for p in pairs], dtype=np.intp)
    jj = np.array([p[1] for p in pairs], dtype=np.intp)
    c = gen.derived((len(pairs),) + shape, lambda: a[ii] * a[jj])
    return a, c


class MultiProduct:
    """Products x_i x_j for the listed pairs of m secret vectors of one shape, each opened once.

    ``open(i, x, ...)`` opens x_i - a_i (several vectors per call are one round);
    ``product(i, j)`` is the raw ring product (scale x_i.frac + x_j.frac), local once
    both are open. Traffic: one ring element per vector and element to each peer
    (instead of two per product); the dealer sends one per pair.
    """

    def __init__(self, ctx, shape, m: int, pairs: list[tuple[int, int]]):
        self.ctx = ctx
        self.shape = tuple(int(s) for s in shape)
        self.pairs = [tuple(int(v) for v in p) for p in pairs]
        self.bundle = ctx.provider.fetch("mask_products", shape=list(self.shape), m=int(m),
                                         pairs=[list(p) for p in self.pairs])
        self.e: dict[int, np.ndarray] = {}
        self.frac: dict[int, int] = {}

    def open(self, items: dict[int, Shared], label: str = "mul") -> None:
        """Open the masked vectors x_i - a_i for ``items`` {i: x_i} in one round."""
        a = self.bundle[0]
        keys = list(items)
        got = self.ctx.open_masked([np.broadcast_to(items[i].data, self.shape) - a[i] for i in keys], label)
        for i, e in zip(keys, got):
            self.e[i] = e
            self.frac[i] = items[i].frac

    def product(self, i: int, j: int) -> Shared:
        """x_i x_j (raw, scale frac_i + frac_j) = c + e_i a_j + a_i e_j (+ e_i e_j on the lead)."""
        k = self.pairs.index((i, j)) if (i, j) in self.pairs else self.pairs.index((j, i))
        a, c = self.bundle[0], self.bundle[1]
        z = combine(MUL, self.e[i], a[i], self.e[j], a[j], c[k], self.ctx.is_lead)
        return Shared(self.ctx, z, self.frac[i] + self.frac[j])
