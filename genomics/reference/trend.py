"""Plaintext twins of the Cochran-Armitage trend test (``plink1.9 --model`` TREND rows) and of its covariate-residualised form used by secure-gwas.

Both are chi2 = N r^2 with r the Pearson correlation of the ALT count and the phenotype
over a variant's non-missing samples -- after projecting both off [1, covariates] in
the residualised form -- so they are functions of the per-variant sums of
:func:`cipherome.genomics.reference.linear.iter_variant_sums`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from cipherome.genomics.reference.linear import complete_samples, design_matrix, iter_variant_sums

__all__ = ["TrendResult", "trend_test", "residualized_trend_test", "chi2_pvalues"]


@dataclass
class TrendResult:
    """Per-variant results, each ``(m,)``: chi2, p, neglog10_p, r (float64; NaN if undefined) and n_obs (int64)."""

    chi2: np.ndarray
    p: np.ndarray
    neglog10_p: np.ndarray
    r: np.ndarray
    n_obs: np.ndarray


def chi2_pvalues(chi2: np.ndarray, df: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Upper-tail chi-square p-values and -log10 p (log tail: exact far below 1e-300)."""
    chi2 = np.asarray(chi2, dtype=np.float64)
    logp = stats.chi2.logsf(chi2, df)
    return np.exp(logp), -logp / np.log(10.0)


def _result(num: np.ndarray, gvar: np.ndarray, yvar: np.ndarray, n_obs: np.ndarray) -> TrendResult:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / np.sqrt(gvar * yvar)
    r = np.where((gvar > 1e-9) & (yvar > 1e-12), r, np.nan)
    r = np.clip(r, -1.0, 1.0)
    chi2 = n_obs * r**2
    p, nl = chi2_pvalues(chi2)
    return TrendResult(chi2=chi2, p=p, neglog10_p=nl, r=r, n_obs=n_obs)


def trend_test(genotypes: np.ndarray, case: np.ndarray, missing: str = "drop") -> TrendResult:
    """Cochran-Armitage trend test per variant, the twin of ``plink1.9 --model`` TREND rows.

    ``genotypes``: ``(m, n)`` int8 ALT counts (-1 missing); ``case``: ``(n,)`` float64
    1 case / 0 control / NaN missing (any two-valued trait works).  Over the N_j
    samples with a call and a phenotype:

        chi2_j = N_j r_j^2,  r_j = corr(g_j, y)   (1 df; scores 0, 1, 2)

    which equals Armitage's statistic with the binomial variance under H0.  The test
    is symmetric in the alleles, so PLINK 1.9's A1 choice does not matter.
    """
    return residualized_trend_test(genotypes, case, None, missing=missing)


def residualized_trend_test(
    genotypes: np.ndarray,
    y: np.ndarray,
    covariates: np.ndarray | None,
    missing: str = "drop",
    chunk: int = 4096,
) -> TrendResult:
    """Covariate-adjusted trend statistic chi2 = N_j r_j^2 (secure-gwas, Cho et al. 2018).

    r_j is the correlation of P g_j and P y, where P = I - Z (Z'Z)^-1 Z' projects off
    Z = [1, covariates] *with* the intercept column, on the samples S_j of variant j
    (``missing="drop"``, per-variant projection) or on all samples with missing calls
    mean-imputed (``missing="mean"``).  With the sums of ``iter_variant_sums``:

        g'Py = g'y - g'Z (Z'Z)^-1 Z'y,  g'Pg = g'g - g'Z (Z'Z)^-1 Z'g,
        y'Py = y'y - y'Z (Z'Z)^-1 Z'y,  r = g'Py / sqrt(g'Pg y'Py).

    With no covariates (Z = 1) this is :func:`trend_test`.  It is a score test of
    b_g = 0 in the linear model: the linear T satisfies T^2 = (N-q-1) r^2 / (1 - r^2).
    Samples with a missing phenotype or covariate are dropped first.
    """
    g = np.asarray(genotypes)
    y = np.asarray(y, dtype=np.float64)
    keep = complete_samples(y, covariates)
    yk = y[keep] - y[keep].mean()
    z = design_matrix(None if covariates is None else np.asarray(covariates, float)[keep], yk.size)
    m = g.shape[0]
    num = np.empty(m)
    gvar = np.empty(m)
    yvar = np.empty(m)
    n_obs = np.empty(m, dtype=np.int64)
    for a, s in iter_variant_sums(g[:, keep], z, yk, missing=missing, chunk=chunk):
        J = s.n_obs.size
        inv_zz_zy = np.linalg.solve(s.zz, s.zy[:, :, None])[:, :, 0]
        inv_zz_gz = np.linalg.solve(s.zz, s.gz[:, :, None])[:, :, 0]
        num[a : a + J] = s.gy - np.einsum("jk,jk->j", s.gz, inv_zz_zy)
        gvar[a : a + J] = s.gg - np.einsum("jk,jk->j", s.gz, inv_zz_gz)
        yvar[a : a + J] = s.yy - np.einsum("jk,jk->j", s.zy, inv_zz_zy)
        n_obs[a : a + J] = s.n_obs
    return _result(num, gvar, yvar, n_obs)
