"""Orthonormalisation (QR) of tall secret matrices and eigenvectors of small secret symmetric matrices.

QR is Cholesky-QR2: the Gram matrix A^T A (one matrix product, whatever the
number of rows) is factored by Gram-Schmidt in its own metric, which gives the
triangular T with Q1 = A T orthonormal; a second pass on Q1^T Q1 = I + E, with E
small, finds the triangular correction by a square-root-free fixed-point
iteration, so that Q is orthonormal to working precision. The top eigenvectors of
a small symmetric (positive semi-definite) matrix come from repeated squaring,
normalised by secret powers of two, followed by deflation.
"""
from __future__ import annotations

import math

import numpy as np

from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat, stack

from .arith import dot, matmul, mul, mul_public
from .compare import ltz
from .normalize import thermometer_compare, mul_exact, onehot_table
from .roots import invsqrt, invsqrt_table
from .trunc import truncate

__all__ = ["gram", "qr", "eigh_top", "power_iteration", "chol_inverse"]

U64 = np.uint64


def _eye(ctx, k: int, frac: int) -> Shared:
    return Shared.public(ctx, np.eye(k), frac)


def _diag_idx(k: int):
    return np.arange(k), np.arange(k)


def gram(a: Shared, scale: float | None = None) -> Shared:
    """A^T A (k x k) for A (n x k), times the public ``scale`` (default 1/n).

    One matrix product: each party opens (A^T - X) and (A - Y), 2 n k ring elements,
    plus the truncations (k^2). Rounds: 2 (+1 for the scale).
    """
    n = a.shape[0]
    g = matmul(a.T, a)
    s = 1.0 / n if scale is None else float(scale)
    return g if s == 1.0 else mul_public(g, s)


def chol_inverse(g: Shared, *, hi: int = 12, iters: int = 0):
    """Upper-triangular T and R = T^-1 with T^T G T = I, for a symmetric positive definite G (k x k).

    Modified Gram-Schmidt in the metric <u, v> = u^T G v, started from the unit
    vectors (V = I, W = G V kept alongside): for each column j,
      d_l = v_j . w_l for l >= j (one batched inner-product round + truncation),
      y = 1/sqrt(d_j): by default (iters = 0) ``invsqrt_table``, relative error 0.3% in
      7 rounds, which ``qr``'s second pass corrects; iters = 1..3 uses ``invsqrt`` with
      that many Goldschmidt steps (2: 2e-4, 3: 1e-7; 18-26 rounds),
      r_jl = y d_l, q_j = y v_j, G q_j = y w_j (one batched product),
      v_l -= r_jl q_j, w_l -= r_jl G q_j for l > j (one batched product).
    T = [q_1 .. q_k], R = [r_jl]. Pivots d_j must lie in [2^-f, 2^hi).
    Rounds: k (2 + 7 + 2 + 2) = 13 k (default); traffic O(k^3) ring elements plus
    (f + hi) 64 comparisons of one value per pivot.
    """
    ctx = g.ctx
    k = g.shape[0]
    f = g.frac
    V = _eye(ctx, k, f)
    W = g.copy()
    R = Shared.zeros(ctx, (k, k), f)
    for j in range(k):
        vj = V[:, j]
        m = k - j
        d = dot(vj.broadcast_to((m, k)), W[:, j:].T, axis=-1)  # <v_j, v_l>_G, l >= j
        y = invsqrt(d[0:1], hi=hi, iters=iters) if iters else invsqrt_table(d[0:1], hi=hi)
        both = mul(concat([d, vj, W[:, j]]), y)
        r, qj, gqj = both[:m], both[m : m + k], both[m + k :]
        R.data[j, j:] = r.data
        V.data[:, j] = qj.data
        W.data[:, j] = gqj.data
        if m > 1:
            upd = mul(stack([qj, gqj])[:, :, None], r[1:].reshape(1, 1, m - 1))
            V.data[:, j + 1 :] -= upd.data[0]
            W.data[:, j + 1 :] -= upd.data[1]
    return V, R


def _tri_half(m: Shared) -> Shared:
    """-(strict upper part of M + diag(M) / 2), the triangular X with X + X^T = -M (1 truncation round)."""
    ctx = m.ctx
    k = m.shape[0]
    iu = np.triu_indices(k, 1)
    half = truncate(Shared(ctx, m.data[_diag_idx(k)], m.frac), 1)
    x = np.zeros((k, k), dtype=U64)
    x[iu] = m.data[iu]
    x[_diag_idx(k)] = half.data
    return -Shared(ctx, x, m.frac)


def _tri_correction(e: Shared, iters: int = 3) -> Shared:
    """Upper-triangular X with (I + X)^T (I + E) (I + X) = I for a small symmetric E.

    Fixed point of X = -(triu(M) + diag(M)/2), M = E + X^T E + E X + X^T X + X^T E X
    (the last term with the previous iterate's E X); converges like ||E||^iters.
    Rounds: 1 + (iters - 1) 3.
    """
    x = _tri_half(e)
    ex_prev = None
    for _ in range(iters - 1):
        xt = x.T
        if ex_prev is None:
            p = matmul(stack([xt, e, xt]), stack([e, x, x]))
            m = e + p[0] + p[1] + p[2]
        else:
            p = matmul(stack([xt, e, xt, xt]), stack([e, x, x, ex_prev]))
            m = e + p[0] + p[1] + p[2] + p[3]
        ex_prev = p[1]
        x = _tri_half(m)
    return x


def qr(a: Shared, *, scale: float | None = None, hi: int = 12, iters: int = 9, frac: int | None = None):
    """Thin QR of a tall shared matrix A (n x k): Q (n x k) with Q^T Q = I and R (k x k) upper triangular.

    Cholesky-QR2, in steps:
      1. G = s A^T A with the public s = 1/n (``gram``); G should have entries of order 1.
      2. T1, R1 = ``chol_inverse``(G): T1^T G T1 = I (k pivots, one ``invsqrt`` each).
      3. Q1 = sqrt(s) A T1 (one n x k by k x k product and a public scaling).
      4. E = Q1^T Q1 - I (small: the error of pass 1); X = ``_tri_correction``(E).
      5. Q = Q1 (I + X) (one product); R = triu(Q^T A) (one product, R at A's scale).
    Q's entries are about n^-1/2, so Q gets ``frac`` = f + ceil(log2(n)/2) fractional bits
    (at most 30) by default, to keep f significant bits per entry.
    Rounds: 13 k + about 37 (k = 20: 297). Traffic per party: about 7 n k ring elements to each
    other party. Requires |(A^T A)_ij| s < 2^hi, numerical rank k (pivots above 2^-f)
    and kappa(A)^2 2^-f < 0.1, i.e. kappa(A) <= 300 for f = 20: pass 1, with 0.3%
    pivots, leaves a small E (|E| ~ 0.1-0.2 for correlated columns) and the 9 correction
    iterations (3 rounds each, error ~|E|^9) bring Q^T Q to I; measured |Q^T Q - I| = 3e-8
    at kappa = 100 and 300 (n = 2000) and for 10000 x 20; kappa = 1000 fails.
    """
    ctx = a.ctx
    n, k = a.shape
    f = a.frac
    fq = min(30, f + (int(math.ceil(math.log2(max(n, 2)))) + 1) // 2) if frac is None else int(frac)
    s = 1.0 / n if scale is None else float(scale)
    g = gram(a, s)
    t1, _ = chol_inverse(g, hi=hi)
    m = matmul(a, t1)  # scale f, columns of norm n^(1/2)
    q1 = truncate(Shared(ctx, m.data * encode(math.sqrt(s), fq), f + fq), f)  # scale fq
    e = matmul(q1.T, q1) - np.eye(k)
    x = _tri_correction(e, iters)
    q = matmul(q1, x + np.eye(k))
    raw = matmul(Shared(ctx, q.data, 0).T, a)  # exact sums at scale fq + f
    r = truncate(Shared(ctx, raw.data, fq + f), fq)
    r = Shared(ctx, np.triu(r.data), f)
    return q, r


def _trace_normalise(p: Shared, frac: int, hi: int) -> Shared:
    """P times a secret power of four so that trace(P) lies in [1/4, 1), at scale ``frac``.

    trace(P) must be in [2^-f, 2^hi) (f = p.frac); P symmetric positive semi-definite,
    so |P_ij| <= trace(P) and every entry ends below 1. With T = trace as a ring
    integer and v = 4^(J - j*) from its thermometer (one batched ltz of T - 4^j),
    P' = P v 2^(frac - 2J - 2). Rounds: 7 + 1 + 1.
    """
    ctx = p.ctx
    k = p.shape[0]
    tr = Shared(ctx, p.data[_diag_idx(k)].sum(dtype=U64).reshape(1), p.frac)
    K = p.frac + hi
    J = (K + 1) // 2 - 1
    H = thermometer_compare(tr, K, J)
    v = onehot_table(ctx, H, [4 ** (J - j) for j in range(J + 1)])
    pv = mul_exact(Shared(ctx, p.data, 0), Shared(ctx, v.reshape(1, 1), 0))
    shift = 2 * J + 2 - frac
    if shift > 0:
        return truncate(pv, shift, frac=frac)
    return Shared(ctx, pv.data << U64(-shift), frac)


def power_iteration(c: Shared, *, squarings: int = 6, hi: int = 12, frac: int = 28, seed: int = 0x5EED):
    """The dominant eigenvector v (unit norm) and eigenvalue of a symmetric PSD matrix C (k x k).

    Steps: P_0 = C normalised to trace in [1/4, 1) by a secret power of four
    (``_trace_normalise``); P <- P^2, normalised the same way, ``squarings`` times (each
    one k x k product and 9 rounds of normalisation), so that P ~ v v^T up to
    (lambda_2/lambda_1)^(2^squarings); r = P w for a fixed public random w (local),
    u = P sign(r) (one ltz, one product: robust even when w is nearly orthogonal to v);
    v = u / |u| (``invsqrt``); lambda = v^T C v.
    trace(C) must be in [2^-f, 2^hi) with hi <= 62 - f - frac (f = 20: 14).
    Returns (v at the working scale ``frac``, v at C's scale, lambda at scale ``frac``).
    Rounds: 11 squarings + about 46.
    """
    if hi > 62 - c.frac - frac:
        raise ValueError(f"power_iteration: trace(C) < 2^{hi} is too large for scale {c.frac}; rescale C")
    ctx = c.ctx
    k = c.shape[0]
    p = _trace_normalise(c, frac, hi)
    for _ in range(squarings):
        p = matmul(p, p)
        p = _trace_normalise(p, frac, 2)
    w = np.random.default_rng(seed).standard_normal(k)
    r = Shared(ctx, (p.data * encode(w, frac)[None, :]).sum(axis=1, dtype=U64), 2 * frac)
    # r = P w ~ v (v^T w) may be weak if w is nearly orthogonal to v; its signs are still
    # those of +-v, so u = P sign(r) ~ v sum_j |v_j| (>= 1 in size) is a strong start.
    sgn = 1 - ltz(r) * 2
    u = Shared(ctx, mul_exact(p, sgn[None, :].broadcast_to(p.shape)).data.sum(axis=1, dtype=U64), frac)
    s = invsqrt(dot(u[None, :], u[None, :]), hi=2 + int(math.ceil(math.log2(k))))
    v = mul(u, s)  # unit vector, working scale
    vf = truncate(v, frac - c.frac) if frac > c.frac else v  # at C's scale
    lam = dot(vf[None, :], matmul(c, v)[None, :])  # products at scale f + frac: |lambda| < 2^(62-f-frac)
    return v, vf, lam


def eigh_top(c: Shared, K: int, *, squarings: int = 6, hi: int = 12, frac: int = 28):
    """The K leading eigenpairs of a symmetric positive semi-definite C (k x k, k <= 30), by
    power iteration and deflation; eigenvalues in decreasing order.

    Returns (values (K,), vectors (k, K) with unit columns), both shared. For each pair:
    ``power_iteration`` on C_i, then C_(i+1) = C_i - lambda v v^T (2 rounds). Accuracy
    depends on the gaps: the direction error is about (lambda_(i+1)/lambda_i)^(2^squarings)
    plus fixed-point noise ~1e-5 relative. Rounds: about 120 per pair.
    """
    ctx = c.ctx
    f = c.frac
    vals, vecs = [], []
    ci = c
    for i in range(K):
        v, vf, lam = power_iteration(ci, squarings=squarings, hi=hi, frac=frac, seed=0x5EED + i)
        vals.append(truncate(lam, frac - f) if frac > f else lam)
        vecs.append(vf)
        if i < K - 1:
            lv = mul(vf, lam)  # scale frac
            outer = mul_exact(lv[:, None], vf[None, :])  # scale frac + f
            ci = ci - truncate(outer, frac, frac=f)
    return concat(vals), stack(vecs, axis=1)
