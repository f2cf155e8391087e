"""Per-variant association statistics from the residual moments, and the output columns.

From g'Mg, g'My, y'My (shared, over each variant's called samples, / N) and the
opened OBS_CT n_j with k predictors besides the genotype (intercept included):

* linear (``plink2 --glm``): b = g'My / g'Mg, RSS = y'My - b g'My, and with
  D = g'Mg RSS = g'Mg y'My - g'My^2, T = g'My sqrt(df) / sqrt(D), df = n_j - k - 1.
  The division and the inverse square root run side by side (``mpc.pipeline``: their
  openings share rounds), about 36 rounds instead of 70 one after the other.
  b and T are opened, then BETA = b sd(y), SE = BETA / T, P = 2 t_df.sf(|T|) in plaintext;
* trend (Cochran-Armitage, PLINK 1.9 ``--model`` TREND; with covariates the
  residualised form of secure-gwas): CHISQ = n_j r^2, r^2 = g'My^2 / (g'Mg y'My).
A genotype constant on S_j (g'Mg below half a sample's worth, 0.5/N) gets
ERRCODE CONST_OMITTED_ALLELE, as PLINK reports it, and nothing else is opened for it.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.pipeline import pipeline
from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import arith

from cipherome.genomics.gwas.assoc import ProjectedMoments
from cipherome.genomics.gwas.tails import chi2_sf, norm_isf, t_sf

__all__ = ["finish", "output_columns"]


def finish(ctx, pm: ProjectedMoments, obs_ct: np.ndarray, k: int, glm: str, n_total: int) -> dict:
    """Open the constant-genotype bit and the test statistics (OBS_CT ``obs_ct`` (V,) already opened)."""
    from cipherome.protocols import compare, division, roots

    V = obs_ct.shape[0]
    # constant genotype on S_j: g'Mg < 0.5 / N (N = study size, g'Mg is divided by N)
    eps = Shared.public(ctx, np.full(V, 0.5 / max(n_total, 1)), pm.gmg.frac)
    # g'Mg <= g'g / N <= 4: the difference lies far inside [-2^29, 2^29) at frac 24 (a 30-bit comparison)
    const_bit = compare.ltz(pm.gmg - eps, pm.gmg.frac + 6)
    const = ctx.open(const_bit, "gwas.const", bits=1).astype(bool)
    gmg = pm.gmg + const_bit  # a constant genotype gets 1: finite, and nothing is opened for it
    live = (~const).astype(np.int64)  # public 0/1: a local product, no Beaver round
    out = {"obs_ct": obs_ct, "const": const}
    if glm == "linear":
        # D = g'Mg y'My - g'My^2 = g'Mg RSS: both terms in one product round
        pr = arith.mul(concat([gmg, pm.gmy]), concat([pm.ymy, pm.gmy]))
        d = pr[:V] - pr[V:] + const_bit
        # b = g'My / g'Mg and 1/sqrt(D) side by side: their openings share rounds
        b, inv = pipeline(ctx, [lambda: division.div(pm.gmy, gmg, hi=3, x_hi=3),  # g'Mg in [0.5/N, 4], |g'My| < 8
                                lambda: roots.invsqrt(d, hi=5)], window=2)  # D <= g'Mg y'My < 16
        df = np.maximum(obs_ct - k - 1, 1)
        t = arith.mul_public(arith.mul(pm.gmy, inv), np.sqrt(df))
        both = concat([b, t]) * np.concatenate([live, live])
        opened = ctx.open(both, "gwas.beta_t_stat")
        out["beta"], out["t_stat"] = opened[:V], opened[V:]
    elif glm == "trend":
        inv = roots.invsqrt(arith.mul(gmg, pm.ymy) + const_bit, hi=5)
        r = arith.mul(pm.gmy, inv)
        chisq = arith.mul_public(arith.square(r), obs_ct.astype(np.float64))
        out["chisq"] = ctx.open(chisq * live, "gwas.chisq")
    else:
        raise ValueError(f"unknown test {glm!r}")
    return out


def output_columns(out: dict, obs_ct: np.ndarray, const: np.ndarray, k: int, glm: str, sd_y: float,
                   ci: float | None, a1_is_alt: np.ndarray) -> dict:
    """PLINK-style statistic columns (dict name -> (V,) float64) and ERRCODE, per tested variant."""
    err = np.where(const, "CONST_OMITTED_ALLELE", ".").astype(object)
    sign = np.where(a1_is_alt, 1.0, -1.0)
    cols: dict[str, np.ndarray] = {}
    if glm == "linear":
        df = obs_ct - k - 1
        beta = np.where(const, np.nan, out["beta"] * sd_y * sign)
        t = np.where(const, np.nan, out["t_stat"] * sign)
        with np.errstate(divide="ignore", invalid="ignore"):
            se = beta / t
        cols["BETA"], cols["SE"] = beta, se
        if ci is not None:
            zq = float(norm_isf((1 - ci) / 2))
            cols["L95" if abs(ci - 0.95) < 1e-12 else f"L{int(round(ci * 100))}"] = beta - zq * se
            cols["U95" if abs(ci - 0.95) < 1e-12 else f"U{int(round(ci * 100))}"] = beta + zq * se
        cols["T_STAT"] = t
        cols["P"] = 2 * t_sf(np.abs(t), np.maximum(df, 1))
    else:
        chisq = np.where(const, np.nan, out["chisq"])
        cols["CHISQ"] = chisq
        cols["P"] = chi2_sf(chisq, 1)
    return {"columns": cols, "errcode": err, "obs_ct": obs_ct}
