"""Products of secret-shared values: elementwise, squares, matrix products, inner products.

All follow Beaver's method with dealer-made triples (``protocols.beaver``): open the
masked operands e = x - a and f = y - b in one round (they are uniform and reveal
nothing), then combine locally, z = c + e*b + a*f + e*f, the public e*f added by the lead.
Fixed-point products are truncated back to the larger operand scale (one more round).
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared

from .beaver import MATMUL, MUL, beaver_products, combine
from .trunc import truncate

__all__ = ["mul", "square", "matmul", "matmul_self", "dot", "mul_public", "rescale"]

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


@recipe("matrix_square_ext", rotate=True)
def _matrix_square_ext(gen, a_shape, q_shape):
    """Uniform A (.., p, p), Q (.., p, r) and C = A [A | Q]: a matrix triple whose right mask
    begins with the left one. Cost: |C|."""
    a = gen.random(a_shape)
    q = gen.random(q_shape)
    c_shape = tuple(a_shape[:-1]) + (a_shape[-1] + q_shape[-1],)
    c = gen.derived(c_shape, lambda: ring_matmul(a, np.concatenate([a, q], axis=-1)))
    return a, q, c


def matmul_self(x: Shared, y: Shared) -> Shared:
    """X [X | Y] for square X (.., p, p) and Y (.., p, r) at one scale, batched over a leading axis.

    As ``matmul`` with the right operand [X | Y], whose mask [A | Q] begins with X's own mask A
    (``matrix_square_ext``), so X is opened once: E = X - A and F = Y - Q (1 round, uniform), then
    Z = C + E [A | Q] + A [E | F] + E [E | F] (the lead adds the last term), truncated (1 round).
    Traffic per party: (n-1) 8 (p^2 + p r) bytes, against (n-1) 8 (2 p^2 + p r) for ``matmul``.
    """
    if x.frac != y.frac:
        raise ValueError("matmul_self: X and Y must have the same scale")
    ctx = x.ctx
    a, q, c = ctx.provider.fetch("matrix_square_ext", a_shape=list(x.shape), q_shape=list(y.shape))
    e, f = ctx.open_masked([x.data - a, y.data - q], "matmul")
    z = combine(MATMUL, e, a, np.concatenate([e, f], axis=-1), np.concatenate([a, q], axis=-1), c, ctx.is_lead)
    return rescale(Shared(ctx, z, 2 * x.frac), x.frac, x.frac)


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
