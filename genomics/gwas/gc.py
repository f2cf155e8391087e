"""Genomic control: the inflation factor lambda_GC of a set of association tests, as ``plink --adjust`` reports it.

lambda_GC = median(chi2) / 0.456, where each test's p-value is turned into the 1-df
chi-square with the same upper tail; PLINK 1.9 and PLINK 2 both use the rounded
constant 0.456 for the median of chi2(1) (0.45494...).
"""
from __future__ import annotations

import numpy as np
from cipherome.genomics.gwas.tails import chi2_isf

__all__ = ["CHI2_1DF_MEDIAN_PLINK", "lambda_gc", "p_to_chi2"]

#: The denominator PLINK uses (the exact median of chi2(1) is 0.454936...).
CHI2_1DF_MEDIAN_PLINK = 0.456


def p_to_chi2(p: np.ndarray) -> np.ndarray:
    """1-df chi-square statistics ``(m,)`` float64 with upper-tail probability ``p``."""
    return chi2_isf(p, 1)


def lambda_gc(
    p: np.ndarray | None = None,
    chi2: np.ndarray | None = None,
    denominator: float = CHI2_1DF_MEDIAN_PLINK,
) -> float:
    """lambda_GC = median chi2 / ``denominator`` over the finite tests (``plink2 --adjust``).

    Give either ``p`` ``(m,)`` (converted with :func:`p_to_chi2`, as PLINK 2 does even for
    linear-regression t tests) or 1-df ``chi2`` ``(m,)``; NaN entries are ignored.
    """
    if (p is None) == (chi2 is None):
        raise ValueError("give exactly one of p or chi2")
    c = p_to_chi2(p) if chi2 is None else np.asarray(chi2, dtype=np.float64)
    c = c[np.isfinite(c)]
    if c.size == 0:
        return float("nan")
    return float(np.median(c) / denominator)
