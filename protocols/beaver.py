"""Beaver products, one path for every form of operand: z = c + op(e, b) + op(a, f) + op(e, f).

For any op that is bilinear over the ring (elementwise product, matrix product,
transposed matrix product) and correlated randomness (a, b, c = op(a, b)) from the
provider: the masked operands e = x - a and f = y - b are opened (uniformly random
to their recipients) and every party combines its shares locally,
z_i = c_i + op(e, b_i) + op(a_i, f), one party adding the public op(e, f); the sum
is op(e + a, f + b) = op(x, y). The protocols differ only in where (a, b, c) come
from and when e and f are opened:

- a fresh triple, both operands opened now (:func:`beaver_products`: ``arith.mul``,
  ``arith.matmul``, batched integer products in filtering), or a square pair
  (a = b, x = y: one opening);
- an operand masked once and reused (``reuse.FixedOperand``): e opened once, each
  later product opens only f;
- several vectors each masked and opened once, products of pairs
  (``beaver_multi.MultiProduct``);
- a site's own matrix M, whose mask only the site and the dealer know
  (``owned.owned_products``): f is opened to the owner alone, who adds op(M, f).
All of them end in :func:`combine`.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.kernels import beaver_combine, ring_matmul, ring_matmul_sym, ring_matmul_tn

__all__ = ["MUL", "MATMUL", "MATMUL_TN", "MATMUL_SYM", "apply", "combine", "beaver_products"]

U64 = np.uint64

#: the bilinear ops: elementwise product, X @ Y, X^T @ Y, and X @ S for a batch of symmetric S given as upper
#: triangles (all mod 2^64; unpacking is linear, so masks and openings of S stay packed)
MUL, MATMUL, MATMUL_TN, MATMUL_SYM = "mul", "matmul", "matmul_tn", "matmul_sym"
_OPS = {MUL: np.multiply, MATMUL: ring_matmul, MATMUL_TN: ring_matmul_tn, MATMUL_SYM: ring_matmul_sym}


def apply(op: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """op(x, y) on ring arrays (what the dealer computes for c = op(a, b))."""
    return _OPS[op](x, y)


def combine(op: str, e, a, f, b, c, adds_public: bool) -> np.ndarray:
    """This party's share of op(x, y): c + op(e, b) + op(a, f) (+ op(e, f) if ``adds_public``).

    e, f: the opened x - a and y - b (e None: not known here); a, b: this party's mask
    shares (None: zero here); c: its share of op(a, b). Terms are grouped to save
    products: op(e, b + f) when adding the public term, op(a + e, f) when b is zero here
    (e None: a is then the whole x, as for a site's own matrix).
    """
    fn = _OPS[op]
    if op == MUL and a is not None and b is not None and e is not None:
        return beaver_combine(c, a, b, e, f, adds_public)  # one fused pass
    if adds_public and b is None:
        terms = [fn(a if e is None else (e if a is None else a + e), f)]
    else:
        terms = []
        if b is not None:
            terms.append(fn(e, b + f if adds_public else b))
        if a is not None:
            terms.append(fn(a, f))
    z = np.asarray(terms[0], dtype=U64) if terms else np.zeros(np.shape(c), dtype=U64)  # a fresh array
    for t in terms[1:]:
        z += t
    z += c
    return z


def beaver_products(ctx, op: str, items: list, label: str) -> list[np.ndarray]:
    """Raw shares of op(x_k, y_k) for items (x, y, (a, b, c)), all operands opened in one round.

    x, y: this party's ring shares (uint64, already broadcast to the triple's shapes);
    y None with a pair (a, c = op(a, a)) squares x (opened once). Steps: open every
    x - a and y - b together (masked, 1 round); :func:`combine`, the lead adding op(e, f).
    Traffic per party: (n-1) 8 (|x| + |y|) bytes for all items; the dealer's part is |c|.
    """
    masked = []
    for x, y, t in items:
        masked.append(x - t[0])
        if y is not None:
            masked.append(y - t[1])
    opened = ctx.open_masked(masked, label) if masked else []
    out, pos = [], 0
    for x, y, t in items:
        e = opened[pos]
        if y is None:
            out.append(combine(op, e, t[0], e, t[0], t[1], ctx.is_lead))
            pos += 1
        else:
            out.append(combine(op, e, t[0], opened[pos + 1], t[1], t[2], ctx.is_lead))
            pos += 2
    return out
