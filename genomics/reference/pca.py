"""Plaintext twins of ``plink2 --pca``: thinning on public positions, the variance-standardized relationship matrix, exact and randomized top-K eigenvectors.

A sample's row of X holds (g - 2p) / sqrt(2p(1-p)) over the selected variants, p the
ALT frequency among the non-missing calls; PLINK 2's default relationship matrix divides
each pair's cross-product by the number of variants called in *both* samples, while
``meanimpute`` (and ``--pca approx``) sets missing entries of X to 0 and divides by M.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from cipherome.genomics.gwas.thinning import thin_by_count, thin_by_distance
from cipherome.genomics.reference.qc import alt_freq

__all__ = [
    "PCAResult",
    "thin_by_count",
    "thin_by_distance",
    "standardize",
    "relationship_matrix",
    "pca_exact",
    "pca_randomized",
    "orient_signs",
]


@dataclass
class PCAResult:
    """Top-K principal components.

    eigenvectors (n, K) float64  unit-norm sample eigenvectors (PLINK's .eigenvec values)
    eigenvalues  (K,)   float64  eigenvalues of the relationship matrix, descending
                                 (PLINK's .eigenval)
    """

    eigenvectors: np.ndarray
    eigenvalues: np.ndarray


def standardize(genotypes: np.ndarray, freq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(X ``(n, M)`` float64, observed ``(n, M)`` bool): X = (g - 2p) / sqrt(2p(1-p)), 0 where missing.

    ``genotypes`` ``(M, n)`` int8 (-1 missing); ``freq`` ``(M,)`` ALT frequencies
    (default: from the data's non-missing calls, as PLINK 2 does without
    ``--read-freq``).  Monomorphic variants give all-zero columns.
    """
    g = np.asarray(genotypes)
    p = alt_freq(g) if freq is None else np.asarray(freq, dtype=np.float64)
    sd = np.sqrt(2 * p * (1 - p))
    obs = g >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (g - 2 * p[:, None]) / sd[:, None]
    x = np.where(obs & (sd[:, None] > 0), x, 0.0)
    return np.ascontiguousarray(x.T), np.ascontiguousarray(obs.T)


def relationship_matrix(genotypes: np.ndarray, missing: str = "pairwise", freq: np.ndarray | None = None) -> np.ndarray:
    """Variance-standardized relationship matrix ``(n, n)`` float64 (``plink2 --make-rel``).

    ``missing="pairwise"`` (PLINK 2's default): K_ab = sum_i x_ia x_ib / M_ab, with M_ab
    the variants called in both a and b.  ``missing="meanimpute"``: K = X X' / M.
    """
    x, obs = standardize(genotypes, freq)
    if missing == "pairwise":
        o = obs.astype(np.float64)
        return (x @ x.T) / np.maximum(o @ o.T, 1.0)
    if missing == "meanimpute":
        return (x @ x.T) / x.shape[1]
    raise ValueError(f"missing must be 'pairwise' or 'meanimpute', not {missing!r}")


def orient_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its entry of largest magnitude is positive (deterministic signs)."""
    v = np.asarray(vectors, dtype=np.float64)
    j = np.argmax(np.abs(v), axis=0)
    s = np.sign(v[j, np.arange(v.shape[1])])
    return v * np.where(s == 0, 1.0, s)


def pca_exact(genotypes: np.ndarray, k: int = 10, missing: str = "pairwise", freq: np.ndarray | None = None) -> PCAResult:
    """Top-``k`` eigenpairs of :func:`relationship_matrix`, the twin of ``plink2 --pca k``.

    ``genotypes`` ``(M, n)`` int8 of the selected (thinned, QC-passing) variants.
    Eigenpairs are sorted by eigenvalue, descending (LAPACK returns them ascending --
    taking its first columns is the secure-gwas pitfall), and signs follow
    :func:`orient_signs`.  ``missing="meanimpute"`` is ``--pca k meanimpute``.
    """
    K = relationship_matrix(genotypes, missing, freq)
    n = K.shape[0]
    k = min(k, n)
    # only the top k eigenpairs (LAPACK syevr), returned ascending like numpy's eigh
    vals, vecs = scipy.linalg.eigh(K, subset_by_index=[n - k, n - 1])
    order = np.argsort(vals)[::-1]
    return PCAResult(eigenvectors=orient_signs(vecs[:, order]), eigenvalues=vals[order])


def pca_randomized(
    genotypes: np.ndarray,
    k: int = 10,
    oversample: int = 10,
    n_iter: int = 4,
    seed: int = 0,
    freq: np.ndarray | None = None,
) -> PCAResult:
    """Randomized top-``k`` PCA of X (missing -> 0, i.e. mean-imputed), as the secure version runs it.

    Halko-Martinsson-Tropp range finder on the ``(n, M)`` standardized matrix X:
      1. Omega ``(M, k + oversample)`` standard normal (seeded); Q = orth(X Omega);
      2. ``n_iter`` power iterations Q = orth(X (X' Q)) (QR after every product);
      3. B = Q' X, SVD B = U_b S V'; eigenvectors Q U_b[:, :k], eigenvalues S^2 / M,
         sorted descending, signs by :func:`orient_signs`.
    Matches ``plink2 --pca k meanimpute`` (and ``--pca k approx``) for the leading,
    well-separated components.
    """
    x, _ = standardize(genotypes, freq)
    n, m = x.shape
    L = min(k + oversample, n, m)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(x @ rng.standard_normal((m, L)))
    for _ in range(n_iter):
        q, _ = np.linalg.qr(x @ (x.T @ q))
    b = q.T @ x
    ub, svals, _ = np.linalg.svd(b, full_matrices=False)
    vecs = q @ ub[:, :k]
    vals = svals[:k] ** 2 / m
    order = np.argsort(vals)[::-1]
    return PCAResult(eigenvectors=orient_signs(vecs[:, order]), eigenvalues=vals[order])
