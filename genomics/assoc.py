"""Secure per-variant projection off covariates, with PLINK 2's per-variant sample drop.

For variant j fitted on the samples S_j with a call, the association statistics
need the genotype and phenotype residualised on the covariates over S_j:
g'Mg, g'My and y'My with M = I - X_S (X_S'X_S)^-1 X_S'. Sites supply sums over
their own individuals (divided by the public study size N): the full-sample
A = X'X, b = X'y, c = y'y and, per variant, u_j = X_S'g, g'g, g'y over S_j and
the sums over the missing calls D_j = sum x x', d_j = sum x y, e_j = sum y^2.
Then X_S'X_S = A - D_j, and (A - D_j)^-1 is applied by a Neumann series around
A^-1 whose terms cost one cheap fixed-operand product each (D_j masked once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cipherome.mpc.shares import Shared, stack

from .localstats import CovariateSums, VariantSums, unpack_upper
from cipherome.protocols import arith
from cipherome.protocols.reuse import fix
from cipherome.protocols.spdinv import spd_inverse

__all__ = ["SharedSums", "ProjectedMoments", "neumann_terms", "project_off_covariates", "pool_sums"]


@dataclass
class SharedSums:
    """Pooled (summed over sites) shared aggregates for a block of V variants, k predictors.

    a (k, k), b (k,), c () -- full-sample X'X/N, X'y/N, y'y/N;
    u (V, k), gg (V,), gy (V,) -- X_S'g/N, g'g/N, g'y/N over each variant's S_j;
    dxx (V, k, k), dxy (V, k), dyy (V,) -- sums over each variant's missing calls / N.
    """

    a: Shared
    b: Shared
    c: Shared
    u: Shared
    gg: Shared
    gy: Shared
    dxx: Shared
    dxy: Shared
    dyy: Shared


def pool_sums(ctx, cov: CovariateSums, vs: VariantSums, n_total: int) -> SharedSums:
    """Secret-share a site's sums (``genomics.localstats``) divided by N and add them over sites.

    Every compute party calls this with its own sums of the same block (same V, k);
    inputs cost no traffic and the pooled sums are free (module docstring).
    """
    V, k = vs.xtg.shape
    n = float(n_total)

    def pool(v, shape):
        return ctx.inputs_sum(np.asarray(v, dtype=np.float64) / n, shape=shape, frac=ctx.frac)

    return SharedSums(
        a=pool(cov.xtx, (k, k)), b=pool(cov.xty, (k,)), c=pool(cov.yty, ()),
        u=pool(vs.xtg, (V, k)), gg=pool(vs.sum_gg, (V,)), gy=pool(vs.sum_gy, (V,)),
        dxx=pool(unpack_upper(vs.miss_xx, k), (V, k, k)), dxy=pool(vs.miss_xy, (V, k)), dyy=pool(vs.miss_yy, (V,)),
    )


@dataclass
class ProjectedMoments:
    """Per-variant residual moments (shared, each (V,)), all divided by N."""

    gmg: Shared
    gmy: Shared
    ymy: Shared


def neumann_terms(max_missing_fraction: float, safety: float = 3.0, tol: float = 1e-7) -> int:
    """Terms T of sum_t (D_j A^-1)^t so that the series remainder is below ``tol``.

    The eigenvalues of D_j A^-1 lie in [0, 1): the largest is the share of the
    covariates' variance (in the worst direction) carried by the variant's missing
    samples. For missingness unrelated to the covariates it is about the missing
    fraction rho (bounded by the --geno threshold); ``safety`` allows missingness
    concentrated in a subgroup up to safety * rho. Remainder: q^(T+1) / (1 - q) with
    q = safety * rho.
    """
    q = min(max_missing_fraction * safety, 0.95)
    if q <= 0:
        return 0
    return max(1, math.ceil(math.log(tol * (1 - q)) / math.log(q)) - 1)


def project_off_covariates(s: SharedSums, terms: int, cond_bound: float = 50.0) -> ProjectedMoments:
    """g'Mg, g'My, y'My per variant (over S_j), from pooled shared sums.

    Steps (row-vector form, Z_j = [u_j; w_j] with w_j = b - d_j):
      1. Ainv = A^-1 by Newton-Schulz (A ~ blockdiag(1, R) after standardising
         the covariates, so lambda_max <= k and cond(A) <= cond_bound).
      2. V0 = Z Ainv (one matrix product over all variants).
      3. V_{t+1} = V0 + (V_t D_j) Ainv for t < terms: D_j masked once (fixed
         operand), each term costs O(V k) traffic, not O(V k^2).
         V_T = Z (A - D_j)^-1 up to the remainder of the series.
      4. q_gg = u.Vg, q_gy = u.Vy, q_yy = w.Vy (batched inner products, 1 round);
         g'Mg = g'g - q_gg, g'My = g'y - q_gy, y'My = y'y - e_j - q_yy.
    """
    k = s.a.shape[-1]
    V = s.u.shape[0]
    ainv = spd_inverse(s.a, lam_max_bound=float(k), cond_bound=cond_bound * k)
    w = s.b.reshape(1, k).broadcast_to((V, k)) - s.dxy
    z = stack([s.u, w], axis=1)  # (V, 2, k)
    fixed_ainv = fix(ainv, "assoc.ainv_mask")
    v0 = fixed_ainv.right_mul(z.reshape(2 * V, k), "assoc.v0").reshape(V, 2, k)
    v = v0
    if terms:
        fixed_d = fix(s.dxx, "assoc.dmiss_mask")
        for _ in range(terms):
            vd = fixed_d.right_mul(v, "assoc.neumann")  # (V, 2, k) @ (V, k, k)
            v = v0 + fixed_ainv.right_mul(vd.reshape(2 * V, k), "assoc.neumann").reshape(V, 2, k)
    left = stack([s.u, s.u, w], axis=1)  # (V, 3, k)
    right = stack([v[:, 0], v[:, 1], v[:, 1]], axis=1)
    q = arith.dot(left, right)  # (V, 3)
    c = s.c.reshape(1).broadcast_to((V,))
    return ProjectedMoments(gmg=s.gg - q[:, 0], gmy=s.gy - q[:, 1], ymy=(c - s.dyy) - q[:, 2])
