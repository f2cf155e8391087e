"""A site's plaintext sums for the secure association: everything over its own individuals.

Given the site's genotype block, its covariates (already transformed with the
study's public standardisation, intercept first) and phenotype, it returns the
sums that ``genomics.assoc`` pools across sites, divided by the public study size
N so that pooled values are O(1) in the fixed-point ring (docs/precision.md).
Missing-call corrections are sums over the (few) missing entries only (sparse).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["study_sums", "variant_sums"]


def study_sums(x: np.ndarray, y: np.ndarray, n_total: int) -> dict[str, np.ndarray]:
    """Full-sample X'X/N (k, k), X'y/N (k,), y'y/N () for x (n, k) and y (n,) float64."""
    return {"a": x.T @ x / n_total, "b": x.T @ y / n_total, "c": np.asarray(y @ y / n_total)}


def variant_sums(g: np.ndarray, x: np.ndarray, y: np.ndarray, n_total: int) -> dict[str, np.ndarray]:
    """Per-variant sums over each variant's called samples S_j and its missing calls M_j.

    g: (V, n) int8 ALT dosage, -1 missing; x: (n, k) float64; y: (n,) float64.
    Returns (all divided by N except n_obs):
      n_obs (V,) int64 called samples; alt (V,) int64 ALT allele count;
      u (V, k) = X_S'g; gg (V,), gy (V,) = g'g, g'y over S_j;
      dxx (V, k, k) = sum over M_j of x x'; dxy (V, k) = sum x y; dyy (V,) = sum y^2.
    """
    g = np.asarray(g)
    called = g >= 0
    g0 = np.where(called, g, 0).astype(np.float64)
    n, k = x.shape
    miss = sp.csr_matrix(~called, dtype=np.float64)
    outer = (x[:, :, None] * x[:, None, :]).reshape(n, k * k)
    return {
        "n_obs": called.sum(axis=1).astype(np.int64),
        "alt": g0.sum(axis=1).astype(np.int64),
        "u": g0 @ x / n_total,
        "gg": np.einsum("vi,vi->v", g0, g0) / n_total,
        "gy": g0 @ y / n_total,
        "dxx": np.asarray(miss @ outer).reshape(-1, k, k) / n_total,
        "dxy": np.asarray(miss @ (x * y[:, None])) / n_total,
        "dyy": np.asarray(miss @ (y * y)).ravel() / n_total,
    }
