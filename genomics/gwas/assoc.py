"""Secure per-variant projection off covariates, with PLINK 2's per-variant sample drop.

For variant j fitted on the samples S_j with a call, the association statistics
need the genotype and phenotype residualised on the covariates over S_j:
g'Mg, g'My and y'My with M = I - X_S (X_S'X_S)^-1 X_S'. With X'X/N = A (the
standardised covariates' pooled Gram matrix, public: ``gwas.covariate_moments``)
and the sums over the variant's missing calls D_j, X_S'X_S/N = A - D_j. With the
public S = A^-1/2 (symmetric), (A - D_j)^-1 = S (I - B_j)^-1 S = S sum_t B_j^t S for
the symmetric B_j = S D_j S, so z (A - D_j)^-1 z' = z_S sum_t B_j^t z_S' with z_S = z S.
Every site multiplies its own sums by the public S in plaintext, so the only secure
products are one per series term, with the per-variant symmetric B_j masked once
(``protocols.reuse``, upper triangle only: k(k+1)/2 elements).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from cipherome.mpc.kernels import pack_upper
from cipherome.mpc.shares import Shared
from cipherome.mpc.ledger import DISCLOSED
from cipherome.protocols.reuse import fix

from cipherome.genomics.local.stats import CovariateSums, VariantSums, packed_upper
from cipherome.genomics.local.threads import twin_kernel

__all__ = ["SiteTerms", "PooledTerms", "ProjectedMoments", "neumann_terms", "series_terms", "site_spectral_bound",
           "study_series_terms", "shifted_series", "missing_buckets", "inv_sqrt_sym", "packed_congruence",
           "site_terms", "whiten", "pool_terms", "project_off_covariates", "SERIES_TOL"]

#: the Neumann series is cut where its remainder q^(T+1) / (1 - q) is below this
SERIES_TOL = 1e-6
#: added to the pooled spectral bound for the rounding of the public A (opened at 2^-24)
A_ROUNDING_MARGIN = 1e-3


@dataclass
class SiteTerms:
    """One site's plaintext inputs for a block of V variants, k predictors (all / N).

    z (V, 2, k): rows u_j S and w_j S, with u_j = X_S'g and w_j = X_S'y over the site's
    called samples and S = A^-1/2; m (V, k(k+1)/2): the upper triangles (``local.stats.packed_upper``
    order) of the symmetric S (D_j - A_site) S, with D_j the sum of x x' over the site's missing calls
    and A_site its share of X'X (the lead adds I); gg, gy, yy (V,): g'g, g'y, y'y over the site's
    called samples.
    """

    z: np.ndarray
    m: np.ndarray
    gg: np.ndarray
    gy: np.ndarray
    yy: np.ndarray


@dataclass
class PooledTerms:
    """The same, summed over sites as shares (``pool_terms``; m still packed)."""

    z: Shared
    m: Shared
    gg: Shared
    gy: Shared
    yy: Shared

    def part(self, sl: slice) -> "PooledTerms":
        """The terms of the variants ``sl``."""
        return PooledTerms(z=self.z[sl], m=self.m[sl], gg=self.gg[sl], gy=self.gy[sl], yy=self.yy[sl])


@dataclass
class ProjectedMoments:
    """Per-variant residual moments (shared, each (V,)), all divided by N."""

    gmg: Shared
    gmy: Shared
    ymy: Shared


def inv_sqrt_sym(ainv: np.ndarray) -> np.ndarray:
    """S = A^-1/2 (symmetric) from the public A^-1."""
    vals, vecs = np.linalg.eigh((ainv + ainv.T) / 2)
    return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T


def whiten(x: np.ndarray, ainv: np.ndarray) -> np.ndarray:
    """The design X S with S = A^-1/2 from the public A^-1: sums of x x' over any samples are then
    S (sums) S already, so ``site_terms(..., ainv=None)`` needs no per-variant congruence.

    For the GWAS's standardised design (an intercept and centred covariates) A is block diagonal
    with A_00 = 1, and so is S: the intercept column stays exactly ones, which ``local.stats``
    recognises (its sums come from the genotype counts)."""
    x = np.asarray(x, dtype=np.float64)
    k = ainv.shape[0]
    if k > 1 and ainv[0, 0] == 1.0 and not np.any(ainv[0, 1:]) and not np.any(ainv[1:, 0]):
        s = np.zeros((k, k))
        s[0, 0] = 1.0
        s[1:, 1:] = inv_sqrt_sym(ainv[1:, 1:])
        return x @ s
    return x @ inv_sqrt_sym(ainv)


def site_terms(cov: CovariateSums, vs: VariantSums, ainv: np.ndarray | None, n_total: int) -> SiteTerms:
    """A site's terms from its ``local.stats`` sums and the public A^-1 (k, k).

    ``ainv=None``: the sums are of the whitened design (``whiten``), so S = I: z is the sums
    themselves and m = miss_xx / N - X_s'X_s / N a subtraction (at V = 80,000, k = 23 the compiled
    congruence of the unwhitened sums took 0.8-1.0 s per site in the job).
    """
    n = float(n_total)
    u = vs.xtg / n
    w = (cov.xty[None, :] - vs.miss_xy) / n
    if ainv is None:
        z = np.stack([u, w], axis=1)
        m = vs.miss_xx * (1.0 / n)
        m -= pack_upper((cov.xtx + cov.xtx.T) / (2.0 * n))[None, :]
    else:
        sq = inv_sqrt_sym(ainv)
        z = np.stack([u, w], axis=1) @ sq
        m = packed_congruence(vs.miss_xx, 1.0 / n, cov.xtx / n, sq)
    return SiteTerms(z=z, m=m, gg=vs.sum_gg / n, gy=vs.sum_gy / n, yy=(cov.yty - vs.miss_yy) / n)


def _packed_congruence_kernel(packed, scale, base, c, out):  # pragma: no cover - compiled
    k = c.shape[0]  # out: (V, k(k+1)/2), the upper triangles of C' D_j C
    for j in numba.prange(packed.shape[0]):
        d = np.empty((k, k))
        p = 0
        for a in range(k):
            for b in range(a, k):
                v = packed[j, p] * scale - base[a, b]
                d[a, b] = v
                d[b, a] = v
                p += 1
        t = np.zeros((k, k))  # D C
        for a in range(k):
            for e in range(k):
                dae = d[a, e]
                for b in range(k):
                    t[a, b] += dae * c[e, b]
        p = 0
        for a in range(k):  # C' (D C), upper triangle
            for b in range(a, k):
                v = 0.0
                for e in range(k):
                    v += c[e, a] * t[e, b]
                out[j, p] = v
                p += 1


_packed_congruence = twin_kernel(_packed_congruence_kernel)


def packed_congruence(packed: np.ndarray, scale: float, base: np.ndarray, c: np.ndarray) -> np.ndarray:
    """C' D_j C for D_j = scale unpack(packed_j) - base and one (k, k) C, as upper triangles (V, k(k+1)/2).

    ``packed`` (V, k(k+1)/2): upper triangles (``local.stats.packed_upper`` order), and so is the
    result (C' D_j C is symmetric); ``base`` (k, k) symmetric (symmetrised here). One compiled pass
    per variant on k x k matrices that stay in cache: unpacking to (V, k, k) and two flat GEMMs
    (with their temporaries and transposed copy) cost about ten times as much at V = 100,000,
    k = 13, where the 135 MB arrays are new memory.
    """
    packed = np.ascontiguousarray(packed, dtype=np.float64)
    k = c.shape[0]
    if packed.ndim != 2 or packed.shape[1] != k * (k + 1) // 2:
        raise ValueError(f"packed has shape {packed.shape}, expected (V, {k * (k + 1) // 2})")
    out = np.empty(packed.shape)
    base = np.asarray(base, dtype=np.float64)
    _packed_congruence(packed, float(scale), np.ascontiguousarray((base + base.T) / 2.0),
                       np.ascontiguousarray(c, dtype=np.float64), out)
    return out


def pool_terms(ctx, t: SiteTerms, shift: np.ndarray | None = None) -> PooledTerms:
    """Secret-share every site's terms and add them (inputs and sums cost no traffic).

    ``shift`` (V,) public (``study_series_terms``): the series is taken about c_j I, so every site
    first divides its m rows by (1 - c_j) and its z rows by sqrt(1 - c_j) (in place, plaintext):
    the pooled B'_j = sum_s m_s / (1 - c_j) + I = (B_j - c_j I)/(1 - c_j), and z' B'^t z summed
    is z (I - B_j)^-1 z' with the 1/(1 - c_j) factor carried by z.

    The lead adds the identity to B so that B_j = S (D_j + A_pub - A) S: the small
    difference between the public A (opened, rounded; S A_pub S = I) and the exact
    pooled A joins the series, which keeps the projection exact. It adds it to its own
    terms before they are input (``t.m`` is changed in place there), so the identity is
    never encoded as a separate (V, k(k+1)/2) array.
    """
    k = t.z.shape[-1]
    if shift is not None and np.any(shift):
        scale = 1.0 / (1.0 - np.asarray(shift, dtype=np.float64))
        t.m *= scale[:, None]
        t.z *= np.sqrt(scale)[:, None, None]
    pool = lambda v: ctx.inputs_sum(np.asarray(v, dtype=np.float64), shape=np.shape(v), frac=ctx.frac)
    if ctx.is_lead:
        iu, ju = packed_upper(k)
        t.m[:, iu == ju] += 1.0  # + I, packed
    return PooledTerms(z=pool(t.z), m=pool(t.m), gg=pool(t.gg), gy=pool(t.gy), yy=pool(t.yy))


def series_terms(q: float, tol: float = SERIES_TOL) -> int:
    """Fewest terms T with q^(T+1) / (1 - q) <= tol, for a spectral radius bound q of D_j A^-1."""
    q = min(float(q), 0.95)
    if q <= 0:
        return 0
    return max(1, math.ceil(math.log(tol * (1 - q)) / math.log(q)) - 1)


def _below_kernel(packed, scale, base, idx, out):  # pragma: no cover - compiled
    k = base.shape[0]  # out[t]: is base - scale unpack(packed[idx[t]]) positive definite (Cholesky)?
    for t in numba.prange(idx.size):
        j = idx[t]
        m = np.empty((k, k))
        p = 0
        for a in range(k):
            for b in range(a, k):
                m[b, a] = base[a, b] - scale * packed[j, p]  # the lower triangle
                p += 1
        ok = True
        for c in range(k):  # Cholesky, column by column
            d = m[c, c]
            for e in range(c):
                d -= m[c, e] * m[c, e]
            if not d > 0.0:
                ok = False
                break
            d = math.sqrt(d)
            m[c, c] = d
            for a in range(c + 1, k):
                v = m[a, c]
                for e in range(c):
                    v -= m[a, e] * m[c, e]
                m[a, c] = v / d
        out[t] = ok


_below = twin_kernel(_below_kernel)


def site_spectral_bound(miss_xx: np.ndarray, ainv: np.ndarray, n_total: int, rows: np.ndarray | None = None) -> float:
    """max_j of the largest eigenvalue of D_{j,s} A^-1 over this site's variants ``rows`` (default: all),
    rounded up to the grid 2^(i/4) (what the site discloses; plaintext, local).

    miss_xx (V, k(k+1)/2): the site's sums of x x' over its missing calls (``VariantSums``);
    D_{j,s} = unpack(miss_xx_j) / N. D A^-1 is similar to the symmetric PSD A^-1/2 D A^-1/2, so
    its largest eigenvalue is below G exactly when G A - D is positive definite, which one Cholesky
    factorisation of k x k decides (no eigenvalues computed). Start from the grid point above the
    largest diagonal ratio D_aa / A_aa (a lower bound: the Rayleigh quotient of e_a) and step up the
    grid, testing again only the variants that failed: the result is the smallest grid point above
    every variant's largest eigenvalue, i.e. the grid value of the exact maximum. The search ends by
    the grid point above lambda_max(A^-1) trace(D) >= trace(D A^-1) >= lambda_max(D A^-1); sums that
    no grid point bounds (not PSD, or not finite) are refused. Only the rows' diagonals are gathered:
    the kernel reads the rows in place.
    """
    packed = np.ascontiguousarray(miss_xx, dtype=np.float64)
    k = ainv.shape[0]
    idx = np.arange(packed.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    diag = np.cumsum(np.r_[0, np.arange(k, 1, -1)])  # the diagonal's positions in a packed row
    d = packed[np.ix_(idx, diag)] / float(n_total)  # (rows, k)
    if not np.isfinite(d).all():
        raise ValueError("the missing-call sums hold a non-finite value")
    if not d.size or not np.any(d):
        return 0.0  # a PSD sum with a zero diagonal is zero
    ainv = np.asarray(ainv, dtype=np.float64)
    a = np.linalg.inv(ainv)
    a = (a + a.T) / 2.0
    lower = float((d / np.diag(a)).max())
    upper = float(np.linalg.eigvalsh((ainv + ainv.T) / 2.0)[-1] * d.sum(axis=1).max())
    i = math.ceil(4 * math.log2(lower))  # the first grid point to test (lower > 0: D has a positive diagonal)
    last = math.ceil(4 * math.log2(upper)) + 1
    while i <= last:
        ok = np.empty(idx.size, dtype=np.bool_)
        _below(packed, 1.0 / float(n_total), 2.0 ** (i / 4) * a, idx, ok)
        idx = idx[~ok]
        if not idx.size:
            return float(2.0 ** (i / 4))
        i += 1
    raise ValueError("the missing-call sums are not positive semidefinite or not finite (no grid point bounds them)")


def missing_buckets(n_missing: np.ndarray) -> np.ndarray:
    """(V,) bucket of each variant by its public missing-call count: 0 for none, else 1 + floor(log2 m)."""
    m = np.asarray(n_missing, dtype=np.int64)
    out = np.zeros(m.shape, dtype=np.int64)
    pos = m > 0
    out[pos] = 1 + np.floor(np.log2(m[pos])).astype(np.int64)
    return out


def shifted_series(bound: float, margin: float = A_ROUNDING_MARGIN, tol: float = SERIES_TOL) -> tuple[int, float]:
    """(T, c): the Neumann length and shift for a B_j whose eigenvalues lie in [-margin, bound + margin].

    (I - B)^-1 = 1/(1-c) sum_t B'^t with B' = (B - c I)/(1 - c): centring the spectrum at
    c = bound / 2 gives ||B'|| <= rho = (bound/2 + margin)/(1 - c), about half of the
    unshifted radius bound + margin, and the remainder rho^(T+1) / ((1 - c)(1 - rho)) <= tol
    needs fewer terms (bound 0.2: 6 instead of 8). ``bound`` 0: (0, 0.0), no series. The top of
    the interval is capped at 0.95 as ``series_terms`` caps q (a Weyl sum of site bounds at or above
    1 says little: the true radius is below 1 whenever the called samples' covariates have full rank).
    """
    if bound <= 0:
        return 0, 0.0
    top = min(float(bound) + margin, 0.95)
    c, r = (top - margin) / 2.0, (top + margin) / 2.0
    return series_terms(r / (1.0 - c), tol * (1.0 - c)), c  # rho <= 0.905 here: series_terms' cap does not bite


def study_series_terms(ctx, miss_xx: np.ndarray, ainv: np.ndarray, n_total: int, n_missing: np.ndarray,
                       label: str, tol: float = SERIES_TOL) -> tuple[np.ndarray, np.ndarray]:
    """(V,) Neumann length and (V,) shift per variant from the study's actual missingness (not the
    ``--geno`` bound); give both to ``pool_terms`` and the length to ``project_off_covariates``.

    n_missing (V,): the pooled number of missing calls per variant, public (N - OBS_CT,
    which the output discloses). Variants are grouped by ``missing_buckets``; every site
    discloses (``label``, public within the study) per group its largest eigenvalue of
    D_{j,s} A^-1, rounded up to the grid 2^(i/4). The spectral radius of D_j A^-1
    (similar to the symmetric PSD A^-1/2 D_j A^-1/2, D_j = sum_s D_{j,s}) is at most
    the sum of the sites' largest eigenvalues (Weyl), so the eigenvalues of B_j lie in
    [-margin, sum_s bound_s + margin] (margin: the public A's rounding) and the shifted
    series of ``shifted_series`` meets ``tol`` for every variant of the group: a proven
    bound, where the ``--geno`` rule relied on a measured ratio (safety 2). Variants
    without missing calls need no term, and rarely-missing ones fewer than the worst.
    """
    buckets = missing_buckets(n_missing)
    nb = int(buckets.max()) + 1 if buckets.size else 1
    own = np.zeros(nb)
    for b in np.unique(buckets[buckets > 0]):
        own[b] = site_spectral_bound(miss_xx, ainv, n_total, rows=np.flatnonzero(buckets == b))
    bounds = ctx.allgather(own, label, kind=DISCLOSED)
    q = np.sum([np.asarray(b, dtype=np.float64) for b in bounds], axis=0)
    plans = [shifted_series(qb, A_ROUNDING_MARGIN, tol) if b > 0 else (0, 0.0) for b, qb in enumerate(q)]
    per = np.array([t for t, _ in plans], dtype=np.int64)
    shift = np.array([c for _, c in plans], dtype=np.float64)
    return per[buckets], shift[buckets]


def neumann_terms(max_missing_fraction: float, safety: float = 2.0, tol: float = SERIES_TOL) -> int:
    """Terms T of sum_t (D_j A^-1)^t so that the series remainder is below ``tol``.

    The eigenvalues of D_j A^-1 lie in [0, 1): the largest is the share of the
    covariates' variance (in the worst direction) carried by the variant's missing
    samples. For missingness unrelated to the covariates it is about the missing
    fraction rho; measured at N = 2,000 and k = 13 with 1% missing calls, the largest
    eigenvalue was 2.7 rho (median) and at most 0.048 among variants passing
    --geno 0.05. The bound q = safety * --geno (safety 2: twice that largest value)
    gives a remainder q^(T+1) / (1 - q) below ``tol``.
    """
    return series_terms(max_missing_fraction * safety, tol)


def project_off_covariates(p: PooledTerms, terms) -> ProjectedMoments:
    """g'Mg, g'My, y'My per variant (over S_j), from pooled terms.

    ``terms``: the Neumann length T_j, one int for all variants or (V,) ints per variant
    (public: from public missing counts and disclosed bounds, ``study_series_terms``).
    With Z_j = [u_j; w_j] S (row-vector form), the three moments need only
    Q_j = Z_j (I - B_j)^-1 Z_j' ~ sum_(s=0..T_j) Z_j B_j^s Z_j' (2 x 2), and since B_j is
    symmetric, Z B^(a+b) Z' = (Z B^a)(Z B^b)': h_j = ceil(T_j / 2) products W_(a+1) = W_a B_j
    give every term up to s = 2 h_j >= T_j from Gram products of the W_a
    (``FixedOperand.series_gram``). Steps:
      1. B_j masked once (fixed operand, symmetric: upper triangle) for the variants with
         at least one term: (n-1) 8 k(k+1)/2 bytes per such variant and party;
      2. the paired series, variants sorted by decreasing h_j so that step a works on a
         prefix of the batch: per variant (n-1) 8 (2k (2 h_j + 1) + 3) bytes; rounds
         2 max_j h_j + 2 (half the Horner steps of the plain series, and the final
         product V_T Z' comes free from the openings already made);
      3. q_gg = Q_00, q_gy = Q_01, q_yy = Q_11;
         g'Mg = g'g - q_gg, g'My = g'y - q_gy, y'My = y'y - q_yy.
    """
    V = p.z.shape[0]
    per = np.broadcast_to(np.asarray(terms, dtype=np.int64), (V,))
    half = (per + 1) // 2
    order = np.argsort(-half, kind="stable")
    half = half[order]
    perm = not np.array_equal(order, np.arange(V))
    z = p.z[order] if perm else p.z
    n1 = int(np.count_nonzero(half >= 1))
    m = p.m[order[:n1]] if perm or n1 < V else p.m
    fixed = fix(m, "assoc.missing_mask", packed_k=z.shape[-1])
    q = fixed.series_gram(z, half, "assoc.neumann")  # (V, 2, 2)
    if perm:
        q = q[np.argsort(order, kind="stable")]
    return ProjectedMoments(gmg=p.gg - q[:, 0, 0], gmy=p.gy - q[:, 0, 1], ymy=p.yy - q[:, 1, 1])
