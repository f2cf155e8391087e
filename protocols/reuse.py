"""Products with a shared matrix that is masked once and reused (a fixed operand).

When the same secret matrix X multiplies many other secrets (per-variant
corrections in a Neumann series, a genotype matrix in power iterations),
E = X - R is opened once for a dealer mask R that the dealer remembers; every
later product X @ Y then costs only the opening of Y - B and the dealer's share
of R B: O(size of Y + size of result) instead of O(size of X) each time.
"""
from __future__ import annotations

import itertools

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.shares import Shared

from .arith import rescale
from .beaver import MATMUL, combine

__all__ = ["FixedOperand", "fix"]

_keys = itertools.count()


def _product_shape(x_shape, y_shape, left: bool) -> tuple[int, ...]:
    """Shape of X @ Y (left) or Y @ X (not left), batched over a leading axis."""
    if left:
        return tuple(x_shape[:-1]) + (y_shape[-1],)
    return tuple(y_shape[:-1]) + (x_shape[-1],)


def _unpack_sym(packed: np.ndarray, k: int) -> np.ndarray:
    """(..., k, k) symmetric matrices from (..., k(k+1)/2) upper triangles (``np.triu_indices`` order)."""
    iu, ju = np.triu_indices(k)
    out = np.zeros(packed.shape[:-1] + (k, k), dtype=packed.dtype)
    out[..., iu, ju] = packed
    out[..., ju, iu] = packed
    return out


@recipe("fixed_mask")
def _fixed_mask(gen, key, shape, symmetric=False):
    """A uniform mask R for a fixed operand; the dealer keeps R under ``key``. Cost: 0.

    ``symmetric``: R is uniform among symmetric matrices (every share is, so their sum is).
    """
    if symmetric:
        k = shape[-1]
        r = _unpack_sym(gen.random([*shape[:-2], k * (k + 1) // 2]), k)
    else:
        r = gen.random(shape)
    if gen.dealer_side:
        gen.state[key] = r
    return (r,)


@recipe("fixed_product")
def _fixed_product(gen, key, x_shape, y_shape, left, rows=None):
    """Uniform B (shape of Y) and C = R @ B (``left``) or B @ R for the stored mask R. Cost: |C|.

    ``rows``: a batched X is used through its first ``rows`` matrices only (a prefix).
    """
    b = gen.random(y_shape)
    r = gen.state[key] if gen.dealer_side else None
    if rows is not None and r is not None:
        r = r[:rows]
    value = (lambda: ring_matmul(r, b)) if left else (lambda: ring_matmul(b, r))
    c = gen.derived(_product_shape(x_shape, y_shape, left), value)
    return b, c


class FixedOperand:
    """A secret matrix X (2-D, or batched 3-D) whose masked value E = X - R is public.

    Build it with :func:`fix` (one round, |X| elements opened, uniformly random; for a
    symmetric X, k(k+1)/2 per k x k matrix).
    ``x @ y`` style products: ``left_mul(y)`` = X @ Y and ``right_mul(y)`` = Y @ X. For a
    batched X (V, a, b), a batched Y with fewer matrices (V' < V) multiplies the first V'.
    """

    def __init__(self, x: Shared, label: str, symmetric: bool = False):
        ctx = x.ctx
        self.ctx, self.frac, self.shape = ctx, x.frac, x.shape
        self.key = f"fixed/{next(_keys)}"
        extra = {"symmetric": True} if symmetric else {}
        (r,) = ctx.provider.fetch("fixed_mask", key=self.key, shape=list(x.shape), **extra)
        self.r = r
        if symmetric:  # X - R is symmetric: open its upper triangles only
            k = x.shape[-1]
            iu, ju = np.triu_indices(k)
            (e,) = ctx.open_masked([np.ascontiguousarray((x.data - r)[..., iu, ju])], label)
            self.e = _unpack_sym(e, k)
        else:
            (self.e,) = ctx.open_masked([x.data - r], label)

    def _product(self, y: Shared, left: bool, label: str) -> Shared:
        """X Y = E B + R F + E F + C with F = Y - B opened (left); mirrored for Y X.

        Steps: dealer gives uniform B and C = R B; open F = Y - B (1 round);
        ``beaver.combine`` with the stored E and R (the lead adds E F); truncate.
        Traffic per party: (n-1) 8 |Y| bytes; the dealer sends the lead 8 |XY|.
        """
        ctx = self.ctx
        e, r, x_shape, extra = self.e, self.r, list(self.shape), {}
        if len(self.shape) == 3 and y.ndim == 3 and y.shape[0] < self.shape[0]:  # a prefix of the batch
            rows = int(y.shape[0])
            e, r, x_shape, extra = e[:rows], r[:rows], [rows, *self.shape[1:]], {"rows": rows}
        t = ctx.provider.fetch("fixed_product", key=self.key, x_shape=x_shape,
                               y_shape=list(y.shape), left=left, **extra)
        (f,) = ctx.open_masked([y.data - t[0]], label)
        if left:
            z = combine(MATMUL, e, r, f, t[0], t[1], ctx.is_lead)
        else:
            z = combine(MATMUL, f, t[0], e, r, t[1], ctx.is_lead)
        return rescale(Shared(ctx, z, self.frac + y.frac), self.frac, y.frac)

    def left_mul(self, y: Shared, label: str = "fixed.product") -> Shared:
        """X @ Y."""
        return self._product(y, True, label)

    def right_mul(self, y: Shared, label: str = "fixed.product") -> Shared:
        """Y @ X."""
        return self._product(y, False, label)


def fix(x: Shared, label: str = "fixed.mask", *, symmetric: bool = False) -> FixedOperand:
    """Mask ``x`` once so that later products with it are cheap (see module docstring).

    ``symmetric=True`` promises that x (the sum of the shares; a batch of square matrices)
    is symmetric: the mask is symmetric too and only the k(k+1)/2 upper entries of each
    matrix are opened.
    """
    return FixedOperand(x, label, symmetric)
