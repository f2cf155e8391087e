"""Plaintext twin of ``plink2 --glm`` for quantitative traits: per-variant least squares with covariates and per-variant sample drop.

For every variant j the model y = b0 + b_g g_j + C b_C + e is fitted on the samples S_j
with a non-missing call (and non-missing phenotype and covariates); the ADD row's BETA,
SE, T_STAT, P and OBS_CT come from the (q+1) x (q+1) normal equations built from sums
over S_j, exactly the per-site aggregates the secure version adds up.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import stats

from cipherome.genomics.gwas.params import MAX_CORR, MAX_VIF

__all__ = [
    "LinearResult",
    "complete_samples",
    "design_matrix",
    "missing_indicator",
    "glm_linear",
    "VariantSums",
    "iter_variant_sums",
    "t_test_pvalues",
    "plink2_a1_is_alt",
]

@dataclass
class LinearResult:
    """Per-variant ADD-row results, each ``(m,)``; NaN where PLINK 2 prints NA.

    beta, se, t_stat, p, neglog10_p : float64 (beta per ALT allele)
    n_obs                             : int64  samples in the regression (OBS_CT)
    errcode                           : str    '.' or PLINK 2's ERRCODE
                                              (CONST_OMITTED_ALLELE, CORR_TOO_HIGH,
                                              VIF_TOO_HIGH, UNFINISHED)
    """

    beta: np.ndarray
    se: np.ndarray
    t_stat: np.ndarray
    p: np.ndarray
    neglog10_p: np.ndarray
    n_obs: np.ndarray
    errcode: np.ndarray


def complete_samples(y: np.ndarray, covariates: np.ndarray | None) -> np.ndarray:
    """``(n,)`` bool: samples with a phenotype and every covariate (PLINK drops the rest first)."""
    keep = ~np.isnan(np.asarray(y, dtype=np.float64))
    if covariates is not None:
        c = np.asarray(covariates, dtype=np.float64).reshape(len(keep), -1)
        keep &= ~np.isnan(c).any(axis=1)
    return keep


def design_matrix(covariates: np.ndarray | None, n: int) -> np.ndarray:
    """``(n, q)`` float64 = [1, covariates centred and scaled to unit SD].

    Centring and scaling change neither the genotype coefficient nor its SE (the
    intercept absorbs shifts) but keep the normal equations well conditioned -- this
    is what ``--covar-variance-standardize`` does, and why plink2's multicollinearity
    check needs it for covariates like year of birth (see docs/statistics.md).
    A covariate that is constant on the samples is dropped (PLINK 2 errors out).
    """
    cols = [np.ones(n)]
    if covariates is not None:
        c = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        mu = c.mean(axis=0)
        sd = c.std(axis=0)
        for k in range(c.shape[1]):
            if sd[k] > 0:
                cols.append((c[:, k] - mu[k]) / sd[k])
    return np.column_stack(cols)


def missing_indicator(genotypes: np.ndarray) -> sp.csr_matrix:
    """Sparse ``(m, n)`` 0/1 float64 matrix of missing calls (1 = missing)."""
    return sp.csr_matrix((np.asarray(genotypes) < 0).astype(np.float64))


def t_test_pvalues(t: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t-test p-values and -log10 p (from the log tail, exact far below 1e-300)."""
    t = np.abs(np.asarray(t, dtype=np.float64))
    logp = np.log(2.0) + stats.t.logsf(t, df)
    return np.exp(logp), -logp / np.log(10.0)


def plink2_a1_is_alt(genotypes: np.ndarray) -> np.ndarray:
    """``(m,)`` bool: whether plink2 --glm's A1 (the nonmajor allele) is ALT.

    PLINK 2 tests the nonmajor allele by default (REF when ALT_FREQ > 0.5); its BETA,
    T_STAT (and ln OR, Z) then have the opposite sign of the ALT-allele twin.  Ties
    (ALT_FREQ exactly 0.5) keep ALT as A1.  Frequencies are over all samples' calls.
    """
    g = np.asarray(genotypes)
    alt = np.where(g > 0, g, 0).sum(axis=1, dtype=np.int64)
    n_alleles = 2 * (g >= 0).sum(axis=1, dtype=np.int64)
    return 2 * alt <= n_alleles


def _collinearity_errcode(a: np.ndarray) -> np.ndarray:
    """PLINK 2's --max-corr / --vif checks from the normal matrices ``(J, p, p)`` (col 0 = intercept)."""
    J, p, _ = a.shape
    err = np.full(J, ".", dtype=object)
    if p <= 2:
        return err
    n = a[:, 0, 0]
    mean = a[:, 0, 1:] / n[:, None]
    cov = a[:, 1:, 1:] - n[:, None, None] * mean[:, :, None] * mean[:, None, :]
    d = np.sqrt(np.clip(np.einsum("jii->ji", cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (d[:, :, None] * d[:, None, :])
    off = np.abs(corr - np.eye(p - 1)[None])
    high = np.nanmax(off, axis=(1, 2)) > MAX_CORR
    err[high] = "CORR_TOO_HIGH"
    ok = ~high & np.all(d > 0, axis=1)
    if ok.any():
        try:
            vif = np.einsum("jii->ji", np.linalg.inv(corr[ok]))
            bad = np.flatnonzero(ok)[np.max(vif, axis=1) > MAX_VIF]
            err[bad] = "VIF_TOO_HIGH"
        except np.linalg.LinAlgError:  # pragma: no cover - singular within the checks
            pass
    return err


@dataclass
class VariantSums:
    """Per-variant sums over S_j (samples with a call), for a block of J variants.

    n_obs (J,) int64; zz (J, q, q); zy (J, q); yy (J,); gz (J, q); gg (J,); gy (J,)
    -- all float64.  Each is a sum over individuals, so each site computes its part
    locally and the secure version adds the parts up.
    """

    n_obs: np.ndarray
    zz: np.ndarray
    zy: np.ndarray
    yy: np.ndarray
    gz: np.ndarray
    gg: np.ndarray
    gy: np.ndarray


def iter_variant_sums(
    g: np.ndarray, z: np.ndarray, y: np.ndarray, missing: str = "drop", chunk: int = 4096
):
    """Yield ``(first_variant_index, VariantSums)`` over blocks of ``chunk`` variants.

    ``g`` ``(m, n)`` int8 (-1 missing), ``z`` ``(n, q)`` design, ``y`` ``(n,)`` float64,
    all over the same (complete) samples.  ``missing="drop"``: sums over S_j, each the
    full-sample sum minus a sparse sum over the missing calls; ``missing="mean"``:
    missing calls replaced by the variant's mean and S_j = all samples.
    """
    if missing not in ("drop", "mean"):
        raise ValueError(f"missing must be 'drop' or 'mean', not {missing!r}")
    m, n = g.shape
    q = z.shape[1]
    zz = (z[:, :, None] * z[:, None, :]).reshape(n, q * q)
    zz_full = zz.sum(axis=0)
    zy_full = z.T @ y
    yy_full = float(y @ y)
    zy_rows = z * y[:, None]
    for a in range(0, m, chunk):
        gb = g[a : a + chunk]
        J = gb.shape[0]
        miss = gb < 0
        gf = gb.astype(np.float64)
        if missing == "drop":
            gf[miss] = 0.0
            ms = sp.csr_matrix(miss.astype(np.float64))
            zz_s = zz_full[None, :] - np.asarray(ms @ zz)
            zy_s = zy_full[None, :] - np.asarray(ms @ zy_rows)
            yy_s = yy_full - np.asarray(ms @ (y * y)).ravel()
            n_s = n - miss.sum(axis=1)
        else:
            cnt = (~miss).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = np.where(miss, 0.0, gf).sum(axis=1) / cnt
            gf = np.where(miss, mu[:, None], gf)
            zz_s = np.broadcast_to(zz_full, (J, q * q))
            zy_s = np.broadcast_to(zy_full, (J, q))
            yy_s = np.full(J, yy_full)
            n_s = np.full(J, n)
        yield a, VariantSums(
            n_obs=np.asarray(n_s, dtype=np.int64),
            zz=np.asarray(zz_s).reshape(J, q, q),
            zy=np.asarray(zy_s),
            yy=np.asarray(yy_s, dtype=np.float64),
            gz=gf @ z,
            gg=np.einsum("ji,ji->j", gf, gf),
            gy=gf @ y,
        )


def glm_linear(genotypes: np.ndarray, y: np.ndarray, covariates: np.ndarray | None = None, missing: str = "drop",
               chunk: int = 4096) -> LinearResult:
    """Per-variant linear regression, the twin of ``plink2 --glm`` ADD rows (quantitative trait).

    Inputs: ``genotypes`` ``(m, n)`` int8 ALT counts (-1 missing); ``y`` ``(n,)``
    float64 (NaN missing); ``covariates`` ``(n, c)`` float64 (NaN missing) or None.

    1. samples with a missing phenotype or any missing covariate are dropped for all
       variants; Z = [1, standardized covariates] on the rest (:func:`design_matrix`);
    2. ``missing="drop"`` (PLINK 2): for variant j, S_j = samples with a call; the
       normal equations A_j b = r_j with X = [Z, g_j] restricted to S_j are
       A_j = [[Z_S'Z_S, Z_S'g], [g'Z_S, g'g]], r_j = [Z_S'y, g'y]; each sum over S_j is
       the full-sample sum minus the sum over the (few) missing calls;
       ``missing="mean"``: missing calls replaced by the variant's mean ALT count
       and S_j = all samples (what PLINK does *not* do; up to 0.2 in -log10 p off);
    3. b = A^-1 r, RSS = y_S'y_S - b'r, sigma^2 = RSS / (N_j - q - 1),
       SE(b_g) = sqrt(sigma^2 [A^-1]_gg), T = b_g / SE, P = 2 t_{N_j-q-1}.sf(|T|).

    Variants that are constant on S_j, or that fail plink2's multicollinearity
    checks (|corr| > 0.999 between predictors, VIF > 50), get NaN with PLINK's
    ERRCODE.  Returns a :class:`LinearResult` (BETA per ALT allele: flip the sign
    where :func:`plink2_a1_is_alt` is False to compare with plink2's A1 rows).
    """
    g_all = np.asarray(genotypes)
    y = np.asarray(y, dtype=np.float64)
    keep = complete_samples(y, covariates)
    g = g_all[:, keep]
    yk = y[keep]
    yk = yk - yk.mean()
    z = design_matrix(None if covariates is None else np.asarray(covariates, float)[keep], yk.size)
    m, n = g.shape
    q = z.shape[1]
    out = {k: np.full(m, np.nan) for k in ("beta", "se", "t_stat", "p", "neglog10_p")}
    n_obs = np.zeros(m, dtype=np.int64)
    errcode = np.full(m, ".", dtype=object)

    for a, sums in iter_variant_sums(g, z, yk, missing=missing, chunk=chunk):
        J = sums.n_obs.size
        zz_s, zy_s, yy_s, n_s = sums.zz, sums.zy, sums.yy, sums.n_obs
        gz, gg, gy = sums.gz, sums.gg, sums.gy
        A = np.empty((J, q + 1, q + 1))
        A[:, :q, :q] = zz_s
        A[:, :q, q] = gz
        A[:, q, :q] = gz
        A[:, q, q] = gg
        r = np.concatenate([zy_s, gy[:, None]], axis=1)
        n_obs[a : a + J] = n_s

        # constant genotype on S_j
        gmean = gz[:, 0] / np.maximum(n_s, 1)
        gvar = gg - n_s * gmean**2
        const = gvar <= 1e-9 * np.maximum(gg, 1.0)
        err = _collinearity_errcode(A)
        err[const] = "CONST_OMITTED_ALLELE"
        dof = n_s - (q + 1)
        ok = (err == ".") & (dof > 0)
        err[(err == ".") & (dof <= 0)] = "UNFINISHED"
        errcode[a : a + J] = err
        if not ok.any():
            continue
        Ai = np.linalg.inv(A[ok])
        b = np.einsum("jkl,jl->jk", Ai, r[ok])
        rss = yy_s[ok] - np.einsum("jk,jk->j", b, r[ok])
        sigma2 = rss / dof[ok]
        se = np.sqrt(sigma2 * Ai[:, q, q])
        t = b[:, q] / se
        p, nl = t_test_pvalues(t, dof[ok])
        idx = np.flatnonzero(ok) + a
        out["beta"][idx] = b[:, q]
        out["se"][idx] = se
        out["t_stat"][idx] = t
        out["p"][idx] = p
        out["neglog10_p"][idx] = nl
    return LinearResult(n_obs=n_obs, errcode=errcode, **out)
