"""Tail probabilities of the association tests' null distributions, straight from ``scipy.special``.

The functions are the ones ``scipy.stats`` itself evaluates (``chi2.sf`` is
``chdtrc``, ``t.sf(x, df)`` is ``stdtr(df, -x)``, ``norm.logsf(x)`` is
``log_ndtr(-x)``, ``norm.isf(q)`` is ``-ndtri(q)``, ``chi2.isf`` is ``chdtri``), with
the same answer for a negative statistic (upper tail 1). Importing ``scipy.stats``
costs every daemon about 1.5 s at start (Zen 1 host, after numpy, numba and
``scipy.special``), four times over on a machine that runs a demo cluster.

One difference, by design: the log upper tail of a 1-df chi-square is
``log 2 + log_ndtr(-sqrt(x))``, since chi2(1) = z^2; ``scipy.stats.chi2.logsf``
takes ``log(chdtrc(1, x))``, which is -inf beyond x ~ 1,400 (p < 1e-308) where
this stays finite.
"""
from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["chi2_sf", "chi2_isf", "chi2_1df_logsf", "t_sf", "norm_logsf", "norm_isf"]


def _nonneg(x) -> np.ndarray:
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)  # NaN stays NaN


def chi2_sf(x, df) -> np.ndarray:
    """P(X > x) for X ~ chi-square(df)."""
    return special.chdtrc(df, _nonneg(x))


def chi2_isf(p, df) -> np.ndarray:
    """The x with P(X > x) = p for X ~ chi-square(df)."""
    return special.chdtri(df, np.asarray(p, dtype=np.float64))


def chi2_1df_logsf(x) -> np.ndarray:
    """log P(X > x) for X ~ chi-square(1): log 2 + log Phi(-sqrt(x))."""
    return np.log(2.0) + special.log_ndtr(-np.sqrt(_nonneg(x)))


def t_sf(x, df) -> np.ndarray:
    """P(T > x) for T ~ Student t(df)."""
    return special.stdtr(df, -np.asarray(x, dtype=np.float64))


def norm_logsf(x) -> np.ndarray:
    """log P(Z > x) for Z ~ N(0, 1)."""
    return special.log_ndtr(-np.asarray(x, dtype=np.float64))


def norm_isf(q) -> np.ndarray:
    """The z with P(Z > z) = q for Z ~ N(0, 1)."""
    return -special.ndtri(np.asarray(q, dtype=np.float64))
