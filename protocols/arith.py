"""Products of secret-shared values: elementwise, squares, matrix products, inner products.

All follow Beaver's method with dealer-made triples (``protocols.beaver``): open the
masked operands e = x - a and f = y - b in one round (they are uniform and reveal
nothing), then combine locally, z = c + e*b + a*f + e*f, the public e*f added by the lead.
Fixed-point products are truncated back to the larger operand scale (one more round).
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared

from .beaver import MATMUL, MUL, beaver_products
from .trunc import truncate

__all__ = ["mul", "square", "matmul", "dot", "mul_public", "rescale"]

U64 = np.uint64


def rescale(z: Shared, fx: int, fy: int) -> Shared:
    """Bring a raw product (scale fx + fy) back to scale max(fx, fy) by truncation."""
    return truncate(z, min(fx, fy)) if fx and fy else z


def _raw_mul(x: Shared, y: Shared) -> Shared:
    shape = np.broadcast_shapes(x.shape, y.shape)
    xd, yd = np.broadcast_to(x.data, shape), np.broadcast_to(y.data, shape)
    ctx = x.ctx
    (z,) = beaver_products(ctx, MUL, [(xd, yd, ctx.provider.triple(shape))], "mul")
    return Shared(ctx, z, x.frac + y.frac)


def mul(x: Shared, y: Shared) -> Shared:
    """Elementwise product x * y (numpy broadcasting).

    Steps: dealer triple (a, b, c = ab); open e = x - a, f = y - b (1 round);
    z = c + e b + a f + e f; truncate if both are fixed-point (1 round).
    Traffic per element: each party sends 2 (n-1) * 8 bytes (+ truncation);
    the dealer sends the lead 8 bytes (+ 16 for truncation).
    """
    return rescale(_raw_mul(x, y), x.frac, y.frac)


def square(x: Shared) -> Shared:
    """Elementwise x^2 with a square pair (a, a^2): open e = x - a, x^2 = a^2 + 2 e a + e^2.

    Half the opening traffic of ``mul(x, x)``: (n-1) * 8 bytes per element and party.
    """
    ctx = x.ctx
    (z,) = beaver_products(ctx, MUL, [(x.data, None, ctx.provider.square(x.shape))], "square")
    return rescale(Shared(ctx, z, 2 * x.frac), x.frac, x.frac)


def matmul(x: Shared, y: Shared) -> Shared:
    """Matrix product X (.., p, q) @ Y (.., q, r), also batched over a leading axis.

    Steps: dealer matrix triple (A, B, C = A B); open E = X - A and F = Y - B
    (1 round, p q + q r elements); Z = C + E B + A F + E F (lead adds E F),
    computed as E (B + F) + A F on the lead to save one product; then truncate
    the p r results (1 round). Traffic per party: (n-1) 8 (pq + qr) bytes, plus
    truncation; the dealer sends the lead 8 pr bytes (+16 pr for truncation).
    """
    ctx = x.ctx
    if x.ndim == 1 or y.ndim == 1:
        xs = x.reshape(1, -1) if x.ndim == 1 else x
        ys = y.reshape(-1, 1) if y.ndim == 1 else y
        z = matmul(xs, ys)
        if x.ndim == 1:
            z = z.reshape(z.shape[1:]) if z.ndim == 2 else z
        if y.ndim == 1:
            z = z.reshape(z.shape[:-1])
        return z
    t = ctx.provider.matrix_triple(x.shape, y.shape)
    (z,) = beaver_products(ctx, MATMUL, [(x.data, y.data, t)], "matmul")
    return rescale(Shared(ctx, z, x.frac + y.frac), x.frac, y.frac)


def dot(x: Shared, y: Shared, axis: int = -1) -> Shared:
    """Inner products sum(x * y, axis): one multiplication round, one truncation of the sums.

    Truncating after summing (rather than each product) saves traffic and makes
    the error one ulp per inner product, not one per term.
    """
    return rescale(_raw_mul(x, y).sum(axis=axis), x.frac, y.frac)


def mul_public(x: Shared, v, frac: int | None = None) -> Shared:
    """x times a public real array/scalar v (local product, then one truncation round).

    v is encoded with ``frac`` bits (default ctx.frac); integers need no truncation
    and should use ``x * int`` directly.
    """
    f = x.ctx.frac if frac is None else frac
    vv = np.asarray(v)
    if vv.dtype.kind in "iub":
        return x * vv
    z = Shared(x.ctx, x.data * encode(vv, f), x.frac + f)
    return truncate(z, f)
