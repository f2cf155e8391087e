"""Trend-test twins against ``plink1.9 --model`` TREND rows, the linear model, brute-force projections; lambda_GC against ``plink2 --adjust``."""
from __future__ import annotations

import re

import numpy as np
import pytest

from cipherome.genomics.reference import linear as lin
from cipherome.genomics.reference import trend as tr
from cipherome.genomics.gwas.gc import lambda_gc
from cipherome.genomics.simulate import BINARY_PHENO, QUANT_PHENO

from conftest_sim import gwas_data
from plink_runner import PLINK1, PLINK2, have_plink, read_model, run_plink


@pytest.mark.skipif(not have_plink(PLINK1), reason="plink1.9 not installed")
def test_trend_matches_plink19_model():
    d = gwas_data()
    s = d.study
    r = run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", BINARY_PHENO, "--model"],
                  d.dir / "trend", exe=PLINK1, out="model")
    t = read_model(r.path(".model"), "TREND")
    assert list(t["SNP"]) == list(s.variant_id)
    tw = tr.trend_test(s.genotypes, s.binary)
    ok = ~np.isnan(t["P"])
    np.testing.assert_array_equal(np.isnan(tw.p), ~ok)
    lp, lt = -np.log10(t["P"][ok]), tw.neglog10_p[ok]
    rr = np.corrcoef(lp, lt)[0, 1]
    assert rr >= 0.9999, rr
    # PLINK 1.9 prints CHISQ with 4 significant digits, P with 4
    np.testing.assert_allclose(tw.chi2[ok], t["CHISQ"][ok], rtol=6e-4, atol=6e-5)
    assert np.max(np.abs(lp - lt)) < 1e-3


def test_residualized_trend_equals_brute_force_projection_with_intercept():
    d = gwas_data()
    s = d.study
    res = tr.residualized_trend_test(s.genotypes[:400], s.binary, d.covariates12)
    keep = lin.complete_samples(s.binary, d.covariates12)
    for j in range(0, 400, 37):
        sel = keep & (s.genotypes[j] >= 0)
        Z = np.column_stack([np.ones(sel.sum()), d.covariates12[sel]])
        proj = lambda v: v - Z @ np.linalg.lstsq(Z, v, rcond=None)[0]
        gr, yr = proj(s.genotypes[j, sel].astype(float)), proj(s.binary[sel])
        r = gr @ yr / np.sqrt((gr @ gr) * (yr @ yr))
        np.testing.assert_allclose(res.r[j], r, rtol=1e-9)
        np.testing.assert_allclose(res.chi2[j], sel.sum() * r**2, rtol=1e-9)
        # pitfall: projecting without the intercept column gives another statistic
        Z0 = d.covariates12[sel]
        g0 = s.genotypes[j, sel].astype(float)
        g0 = g0 - Z0 @ np.linalg.lstsq(Z0, g0, rcond=None)[0]
        y0 = s.binary[sel] - Z0 @ np.linalg.lstsq(Z0, s.binary[sel], rcond=None)[0]
        r0 = g0 @ y0 / np.sqrt((g0 @ g0) * (y0 @ y0))
        assert abs(r0 - r) > 1e-3


def test_residualized_trend_is_the_linear_score_test():
    """T^2 = (N - q - 1) r^2 / (1 - r^2): the same evidence as plink2's linear t test."""
    d = gwas_data()
    s = d.study
    g = s.genotypes[:500]
    res = tr.residualized_trend_test(g, s.quant, d.covariates12)
    fit = lin.glm_linear(g, s.quant, d.covariates12)
    ok = ~np.isnan(fit.t_stat)
    q = 1 + d.covariates12.shape[1]
    t2 = (fit.n_obs - q - 1) * res.r**2 / (1 - res.r**2)
    np.testing.assert_allclose(t2[ok], fit.t_stat[ok] ** 2, rtol=1e-8)
    # no covariates: the plain trend test
    np.testing.assert_allclose(tr.residualized_trend_test(g, s.binary, None).chi2, tr.trend_test(g, s.binary).chi2)


@pytest.mark.skipif(not have_plink(PLINK2), reason="plink2 not installed")
def test_lambda_gc_matches_plink2_adjust():
    d = gwas_data()
    s = d.study
    r = run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", QUANT_PHENO,
                   "--covar", d.covar, "--glm", "hide-covar", "--adjust"], d.dir / "trend", out="adj")
    lam_plink = float(re.search(r"lambda \(based on median chisq\) = ([0-9]+(?:\.[0-9]+)?)", r.log).group(1))
    fit = lin.glm_linear(s.genotypes, s.quant, s.covariates)
    assert abs(lambda_gc(fit.p) - lam_plink) < 2e-4 * lam_plink
    assert lam_plink > 1.3  # confounded trait, no PCs
