"""Products with a shared matrix that is masked once and reused (a fixed operand).

When the same secret matrix X multiplies many other secrets (per-variant
corrections in a Neumann series, a genotype matrix in power iterations),
E = X - R is opened once for a dealer mask R that the dealer remembers; every
later product X @ Y then costs only the opening of Y - B and the dealer's share
of R B: O(size of Y + size of result) instead of O(size of X) each time.
"""
from __future__ import annotations

import itertools


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


@recipe("fixed_mask")
def _fixed_mask(gen, key, shape):
    """A uniform mask R for a fixed operand; the dealer keeps R under ``key``. Cost: 0."""
    r = gen.random(shape)
    if gen.dealer_side:
        gen.state[key] = r
    return (r,)


@recipe("fixed_product")
def _fixed_product(gen, key, x_shape, y_shape, left):
    """Uniform B (shape of Y) and C = R @ B (``left``) or B @ R for the stored mask R. Cost: |C|."""
    b = gen.random(y_shape)
    r = gen.state[key] if gen.dealer_side else None
    value = (lambda: ring_matmul(r, b)) if left else (lambda: ring_matmul(b, r))
    c = gen.derived(_product_shape(x_shape, y_shape, left), value)
    return b, c


class FixedOperand:
    """A secret matrix X (2-D, or batched 3-D) whose masked value E = X - R is public.

    Build it with :func:`fix` (one round, |X| elements opened, uniformly random).
    ``x @ y`` style products: ``left_mul(y)`` = X @ Y and ``right_mul(y)`` = Y @ X.
    """

    def __init__(self, x: Shared, label: str):
        ctx = x.ctx
        self.ctx, self.frac, self.shape = ctx, x.frac, x.shape
        self.key = f"fixed/{next(_keys)}"
        (r,) = ctx.provider.fetch("fixed_mask", key=self.key, shape=list(x.shape))
        self.r = r
        (self.e,) = ctx.open_masked([x.data - r], label)

    def _product(self, y: Shared, left: bool, label: str) -> Shared:
        """X Y = E B + R F + E F + C with F = Y - B opened (left); mirrored for Y X.

        Steps: dealer gives uniform B and C = R B; open F = Y - B (1 round);
        ``beaver.combine`` with the stored E and R (the lead adds E F); truncate.
        Traffic per party: (n-1) 8 |Y| bytes; the dealer sends the lead 8 |XY|.
        """
        ctx = self.ctx
        t = ctx.provider.fetch("fixed_product", key=self.key, x_shape=list(self.shape),
                               y_shape=list(y.shape), left=left)
        (f,) = ctx.open_masked([y.data - t[0]], label)
        if left:
            z = combine(MATMUL, self.e, self.r, f, t[0], t[1], ctx.is_lead)
        else:
            z = combine(MATMUL, f, t[0], self.e, self.r, t[1], ctx.is_lead)
        return rescale(Shared(ctx, z, self.frac + y.frac), self.frac, y.frac)

    def left_mul(self, y: Shared, label: str = "fixed.product") -> Shared:
        """X @ Y."""
        return self._product(y, True, label)

    def right_mul(self, y: Shared, label: str = "fixed.product") -> Shared:
        """Y @ X."""
        return self._product(y, False, label)


def fix(x: Shared, label: str = "fixed.mask") -> FixedOperand:
    """Mask ``x`` once so that later products with it are cheap (see module docstring)."""
    return FixedOperand(x, label)
