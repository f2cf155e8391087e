"""Block Krylov eigensolver for a secret symmetric operator, with opened Gram matrices and a residual stop.

The Krylov basis V = [V_1 .. V_q] (n x qb) stays secret; each pass applies the operator to
the newest block once and opens the Gram matrix of [V, K V_q], from which the parties
orthogonalise the next block by a public linear combination, form the Rayleigh-Ritz matrix
V'KV and bound the error of the top-k Ritz vectors -- all in plaintext on small matrices.

Where the basis lives is the ``rows`` argument: :class:`SharedRows` (default) keeps it as
shares of the whole n x qb matrix; :class:`LocalRows` keeps each site's own rows in
plaintext at that site (horizontally partitioned samples), so that a Gram matrix is the
sum of the sites' local Grams and a public combination is a local product.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.linalg

from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat
from cipherome.protocols.sketch import open_gram
from cipherome.protocols.trunc import truncate

__all__ = ["KrylovResult", "block_krylov", "ritz", "GRAM_LIMIT", "SharedRows", "LocalRows", "open_sum",
           "orthonormal_start"]

log = logging.getLogger("cipherome.krylov")

GRAM_TARGET = 2.0 ** 8  # largest Gram entry aimed at: far below the 2^15 that a 24-bit Gram allows
GRAM_FIRST = 2.0 ** 11  # first pass: a guaranteed bound (lambda_1 <= trace), so aim higher
GRAM_LIMIT = 2.0 ** 13  # an opened Gram above this is treated as overflowed and recomputed smaller


def _plausible(g: np.ndarray) -> bool:
    d = np.diag(g)
    return bool(np.all(np.isfinite(g)) and np.all(d >= -1e-6) and d.max() < GRAM_LIMIT
                and np.allclose(g, g.T, atol=1e-3 * max(1.0, d.max())))


def _public_combination(x: Shared, coef: np.ndarray) -> Shared:
    """x @ coef for a public coef, truncated back to x's scale (1 round)."""
    raw = Shared(x.ctx, ring_matmul(np.ascontiguousarray(x.data), encode(coef, x.frac)), 2 * x.frac)
    return truncate(raw, x.frac)


class SharedRows:
    """Krylov vectors as shares of whole n x b blocks (nobody sees a row)."""

    def __init__(self, ctx, n: int):
        self.ctx, self.n = ctx, int(n)

    def concat(self, blocks: list):
        return concat(blocks, axis=1)

    def gram(self, x: Shared, label: str) -> np.ndarray:
        """x'x opened (``open_gram``: 2 rounds)."""
        return open_gram(self.ctx, x, label)

    def combine(self, x: Shared, coef: np.ndarray) -> Shared:
        """x @ coef for a public coef (1 round)."""
        return _public_combination(x, coef)


class LocalRows:
    """Krylov vectors held by their sites: site s keeps its own n_s rows of every block in plaintext.

    x = [x_1; ..; x_S] with x_s at site s, so x'x = sum_s x_s'x_s: each site inputs its local
    Gram (free) and the sum is opened to the sites (1 round, ``label``); x @ coef is local.
    ``n`` is the study's total row count (public); ``frac``: fixed-point bits of the opening;
    ``bits``: ring bits the opened Gram needs (its entries stay below 2^(bits - frac - 2) by
    the Krylov scaling, checked after opening by ``_plausible``).
    """

    def __init__(self, ctx, n: int, frac: int, bits: int = 64):
        self.ctx, self.n, self.frac, self.bits = ctx, int(n), int(frac), int(bits)
        self._last = None  # (y, y'y): the last local Gram computed

    def concat(self, blocks: list) -> np.ndarray:
        return np.hstack(blocks)

    def gram(self, x: np.ndarray, label: str) -> np.ndarray:
        return open_sum(self.ctx, self.local_gram(x), label, self.frac, self.bits)

    def local_gram(self, x: np.ndarray) -> np.ndarray:
        """x_s'x_s for this site's rows, reusing the last one computed: where x = [y_1, x_2] begins with
        the first c columns y_1 of the last y (checked equal), x'x = [[y_1'y_1, y_1'x_2], [x_2'y_1,
        x_2'x_2]] costs n_s c' (c + c') instead of n_s (c + c')^2 (a Krylov basis grows by a block a pass)."""
        x = np.asarray(x, dtype=np.float64)
        c = 0
        if self._last is not None and self._last[0].shape[0] == x.shape[0]:
            y, gy = self._last
            c = min(y.shape[1], x.shape[1])
            same = np.all(x[:, :c] == y[:, :c], axis=0)
            c = c if same.all() else int(np.argmin(same))
        g = np.empty((x.shape[1], x.shape[1]))
        if c:
            g[:c, :c] = gy[:c, :c]
        g[:, c:] = x.T @ x[:, c:]
        g[c:, :c] = g[:c, c:].T
        self._last = (x, g)
        return g

    def combine(self, x: np.ndarray, coef: np.ndarray) -> np.ndarray:
        return np.asarray(x) @ coef


def open_sum(ctx, local: np.ndarray, label: str, frac: int, bits: int = 64) -> np.ndarray:
    """The sum over the sites of their local float arrays (same public shape), opened to the sites.

    Every site inputs round(local 2^frac) as ring integers (free: ``inputs_sum``) and the
    sum is opened in one round; ``bits`` < 64 promises |sum| < 2^(bits - 1 - frac), so that
    only ceil(bits/8) bytes per element travel (the opened value is offset by 2^(bits-1) to
    make it non-negative). Only the sum is disclosed: each site's own array stays hidden by
    the other sites' shares. The result is the opened integer sum times 2^-frac.
    """
    local = np.asarray(local, dtype=np.float64)
    scaled = local * float(1 << frac)
    if scaled.size and not float(np.max(np.abs(scaled))) < 2.0 ** 62:
        raise OverflowError(f"{label}: value out of fixed-point range (|x| must be < 2^{62 - frac})")
    s = ctx.inputs_sum(np.rint(scaled, out=scaled).astype(np.int64), shape=local.shape, frac=0)
    if bits >= 64:
        total = ctx.open(s, label)
    else:
        off = 1 << (bits - 1)
        total = ctx.open(s + off, label, bits=bits)
        total -= off
    return total / float(1 << frac)


def orthonormal_start(rows, x, label: str):
    """x (n x b, e.g. Gaussian) made orthonormal: opens G = x'x (``rows.gram``, ``label``) and returns
    x U Gamma^-1/2 for G = U Gamma U' (``rows.combine``)."""
    g = rows.gram(x, label)
    gam, u = np.linalg.eigh((g + g.T) / 2.0)
    return rows.combine(x, u / np.sqrt(np.maximum(gam, 1e-12))[None, :])


@dataclass
class KrylovResult:
    """basis (n, qb) secret; eigenvalues (min(k + 1, qb),) the top of the Rayleigh-Ritz matrix's,
    descending; coef (qb, min(k + 1, qb)) their Ritz coefficients (basis @ coef = Ritz vectors);
    passes: operator applications; bound: the residual bound of the top-k subspace at the end."""

    basis: Shared
    eigenvalues: np.ndarray
    coef: np.ndarray
    passes: int
    bound: float
    history: list = field(default_factory=list)


def ritz(t_mat: np.ndarray, metric: np.ndarray, top: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of T w = theta B w (B the basis Gram), descending; w B-orthonormal. ``top``: only the
    largest ``top`` pairs (LAPACK's subset driver: 23 ms instead of 54 ms at m = 600, one thread)."""
    t_mat = (t_mat + t_mat.T) / 2.0
    metric = (metric + metric.T) / 2.0
    m = t_mat.shape[0]
    subset = {"subset_by_index": [m - top, m - 1]} if top is not None and top < m else {}
    th, w = scipy.linalg.eigh(t_mat, metric, **subset)
    o = np.argsort(th)[::-1]
    return th[o], w[:, o]


def block_krylov(ctx, apply: Callable, start, k: int, *, scale0: float, tol: float, max_passes: int,
                 fixed_passes: int | None = None, label: str = "pca.gram", rows=None,
                 rtol: float = 0.0) -> KrylovResult:
    """Top-k eigenpairs of a secret symmetric n x n operator K by block Krylov with Rayleigh-Ritz.

    ``apply(v, t)`` -> shares of (scale0 K) V / 2^t (n x b, scale f) for a block V; ``start``
    (n x b) orthonormal, secret. Eigenvalues returned are of K. ``rows``: where the basis lives
    (default ``SharedRows``; with ``LocalRows`` blocks are this site's rows and ``apply``
    returns this site's rows of the product).

    Pass q (block size b, basis dimension m = (q-1) b):
      1. P_q = apply(V_q, t_q): the operator's cost (its own rounds);
      2. open G = [V, P_q]'[V, P_q] (``open_gram``: 2 rounds, (m + b)^2 values, n(m + b) masked);
         V'V = B (near I), C = V'P_q, S = P_q'P_q;
      3. Rayleigh-Ritz in plaintext: T = V'KV has block columns C_j (times 2^t_j / scale0),
         T w = theta B w; residual of the Ritz pair (theta, V w): ||R_q w_q|| with
         R_q'R_q = S - C'B^-1 C (the part of K V_q outside the basis); the top-k subspace is
         within angle sin <= bound = ||residuals_1..k|| / (theta_k - theta_(k+1)) (Davis-Kahan);
      4. stop when bound <= tol, or when every top-k Ritz pair has a relative residual
         ||K v_i - theta_i v_i|| / theta_i <= ``rtol`` (or at ``fixed_passes``/``max_passes``/
         basis = n); else
         V_(q+1) = (P_q - V B^-1 C) U Gamma^-1/2 with U Gamma U' = R_q'R_q: one public
         combination of [V, P_q] and one truncation (1 round).
    t_q keeps G in fixed-point range: from a bound on the first pass, then from the previous
    Gram; an out-of-range Gram is recomputed (the operator applied again) 8 bits smaller.
    Every opened matrix is a function of Q_0'K^j Q_0 (j >= 0) for the secret start Q_0, and the
    stop decision a function of those.

    The two stops: Davis-Kahan bounds the angle between the computed and the exact top-k
    subspace, but its gap theta_k - theta_(k+1) vanishes when the k-th eigenvalue sits in a
    cluster of noise eigenvalues (genotype relationship matrices with M >> n: the
    Marchenko-Pastur edge, relative spacing ~ M^(-2/3)); then the top-k subspace itself is
    ill-determined and no solver converges on it. A relative residual r_i / theta_i <= rtol
    still guarantees an eigenvalue within rtol theta_i of theta_i, and that v_i lies within
    angle r_i / delta of the eigenvectors whose eigenvalues are within delta of theta_i, for
    any delta: each PC is right up to mixing inside its cluster.
    """
    rows = rows if rows is not None else SharedRows(ctx, start.shape[0])
    n, b = rows.n, start.shape[1]
    blocks = [start]
    cols: list[np.ndarray] = []  # C_q in operator units (V'K V_q)
    lam_hat, target = min(float(n), math.sqrt(2.0 * b * n) + 10.0) * scale0, GRAM_FIRST
    bound = math.inf
    history = []
    passes = 0
    limit = fixed_passes if fixed_passes else max_passes
    while True:
        passes += 1
        t_bits = max(0, math.ceil(math.log2(max(lam_hat, 1.0) / math.sqrt(target))))
        basis = rows.concat(blocks)
        m = basis.shape[1]
        while True:
            p = apply(blocks[-1], t_bits)
            bp = rows.concat([basis, p])
            g = rows.gram(bp, label)
            if _plausible(g[m:, m:]):
                break
            log.warning("krylov: Gram out of range at pass %d (max %.3g), recomputing", passes, np.diag(g).max())
            t_bits += 8
        g = (g + g.T) / 2.0
        bm, c, s = g[:m, :m], g[:m, m:], g[m:, m:]
        unit = 2.0 ** t_bits / scale0
        cols.append(c * unit)
        # Rayleigh-Ritz matrix T = V'KV from the block columns (upper part), symmetrised
        t_mat = np.zeros((m, m))
        for j, cj in enumerate(cols):
            t_mat[: (j + 1) * b, j * b:(j + 1) * b] = cj[: (j + 1) * b]
        t_mat = np.triu(t_mat) + np.triu(t_mat, 1).T
        th, w = ritz(t_mat, bm, top=k + 1)  # the top k pairs and the gap to the next
        proj = np.linalg.solve(bm, c)
        resid = s - c.T @ proj
        resid = (resid + resid.T) / 2.0
        rel = math.inf
        if m > k:
            wq = w[m - b:, :k]
            res = np.sqrt(np.maximum(np.einsum("ij,ik,kj->j", wq, resid * unit ** 2, wq), 0.0))
            gap = th[k - 1] - th[k]
            bound = float(np.sqrt(np.sum(res ** 2)) / gap) if gap > 0 else math.inf
            rel = float(np.max(res / np.maximum(th[:k], 1e-300)))
        history.append({"pass": passes, "dim": m, "bound": bound, "rel_residual": rel, "top": th[:k].tolist(),
                        "t": t_bits, "orth": float(np.abs(bm - np.eye(m)).max())})
        log.info("krylov: pass %d, basis %d, top-%d residual bound %.3g", passes, m, k, bound)
        converged = bound <= tol or rel <= rtol
        if passes >= limit or m + b > n or (not fixed_passes and converged):
            if not (fixed_passes or converged):
                log.warning("krylov: top-%d not converged after %d passes (subspace bound %.3g above %.3g, "
                            "relative residual %.3g above %.3g)", k, passes, bound, tol, rel, rtol)
            return KrylovResult(basis=basis, eigenvalues=th, coef=w, passes=passes, bound=bound, history=history)
        gam, u = np.linalg.eigh(resid)
        gam = np.maximum(gam, gam.max() * 1e-12 + 1e-300)
        h = u / np.sqrt(gam)[None, :]
        blocks.append(rows.combine(bp, np.vstack([-proj @ h, h])))
        est = math.sqrt(max(np.diag(s).max(), 1e-300)) * 2.0 ** t_bits  # ||scale0 K V_q||
        lam_hat = 2.0 * est if passes > 1 else min(float(n) * scale0, 3.0 * est * math.sqrt(n / b))
        target = GRAM_TARGET
