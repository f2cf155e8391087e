"""Logistic twins against ``plink2 --glm`` (non-Firth rows) and statsmodels; score tests and their site-additive sums."""
from __future__ import annotations

import numpy as np
import pytest

from cipherome.genomics.reference import logistic as lg
from cipherome.genomics.reference.linear import complete_samples, design_matrix, plink2_a1_is_alt
from cipherome.genomics.simulate import BINARY_PHENO

from conftest_sim import gwas_data, plink_firth_reports, rare_variants
from plink_runner import PLINK2, have_plink, read_glm, run_plink

pytestmark = pytest.mark.skipif(not have_plink(PLINK2), reason="plink2 not installed")


@pytest.fixture(scope="module")
def plink_logistic():
    d = gwas_data()
    r = run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", BINARY_PHENO,
                   "--covar", d.covar12, "--covar-variance-standardize", "--glm", "hide-covar"],
                  d.dir / "logistic", out="log")
    # firth-fallback is plink2 a3.5's default for case/control traits -> .hybrid report
    return d, read_glm(r.path(f".{BINARY_PHENO}.glm.logistic.hybrid"))


@pytest.fixture(scope="module")
def twin_wald():
    d = gwas_data()
    return lg.glm_logistic(d.study.genotypes, d.study.binary, d.covariates12)


def test_wald_matches_plink2_non_firth_rows(plink_logistic, twin_wald):
    d, pl = plink_logistic
    tw = twin_wald
    s = d.study
    firth = pl["FIRTH?"] == "Y"
    ok = ~firth & ~np.isnan(pl["P"])
    assert ok.sum() > 0.95 * len(ok)
    assert tw.converged[ok].all()
    assert not tw.converged[firth].any()  # where PLINK fell back to Firth, IRLS fails here too
    np.testing.assert_array_equal(tw.n_obs[ok], pl["OBS_CT"][ok].astype(np.int64))
    sign = np.where(plink2_a1_is_alt(s.genotypes), 1.0, -1.0)
    d_lnor = np.abs(np.log(pl["OR"][ok]) - sign[ok] * tw.beta[ok])
    assert d_lnor.max() <= 1e-3 and d_lnor.max() < 1e-4  # bar 1e-3; measured ~5e-6 (print precision)
    d_lp = np.abs(-np.log10(pl["P"][ok]) - tw.neglog10_p[ok])
    assert d_lp.max() <= 0.1 and d_lp.max() < 1e-3
    np.testing.assert_allclose(tw.se[ok], pl["LOG(OR)_SE"][ok], rtol=1e-4)


def test_wald_matches_statsmodels(twin_wald):
    sm = pytest.importorskip("statsmodels.api")
    d = gwas_data()
    s = d.study
    keep = complete_samples(s.binary, d.covariates12)
    idx = np.flatnonzero(twin_wald.converged)
    miss = (s.genotypes[idx] < 0).sum(1)
    pick = idx[np.argsort(-miss)[:10]].tolist() + idx[::300].tolist()  # most-missing variants + a spread
    for j in pick:
        sel = keep & (s.genotypes[j] >= 0)
        X = np.column_stack([np.ones(sel.sum()), d.covariates12[sel], s.genotypes[j, sel]])
        fit = sm.Logit(s.binary[sel], X).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
        assert abs(fit.params[-1] - twin_wald.beta[j]) < 1e-7
        np.testing.assert_allclose(twin_wald.se[j], fit.bse[-1], rtol=1e-7)


def test_score_test_refit_and_projected_track_plink2(plink_logistic):
    d, pl = plink_logistic
    s = d.study
    ok = (pl["FIRTH?"] == "N") & ~np.isnan(pl["P"])
    lp = -np.log10(pl["P"])
    refit = lg.logistic_score_test(s.genotypes, s.binary, d.covariates12, null="refit")
    proj = lg.logistic_score_test(s.genotypes, s.binary, d.covariates12, null="project")
    naive = lg.logistic_score_test(s.genotypes, s.binary, d.covariates12, null="global")
    r = {k: np.corrcoef(lp[ok], v.neglog10_p[ok])[0, 1] for k, v in
         (("refit", refit), ("project", proj), ("global", naive))}
    assert r["refit"] >= 0.999, r
    assert r["project"] >= 0.999, r
    assert r["global"] < r["project"] - 0.01, r  # not re-projecting on S_j costs accuracy
    # the one-step projection is close to the full per-variant refit
    both = ok & np.isfinite(refit.chi2) & np.isfinite(proj.chi2)
    assert np.max(np.abs(refit.neglog10_p[both] - proj.neglog10_p[both])) < 0.05


def test_score_sums_are_site_additive():
    """Sites compute score_sums with the shared null model; their sum gives the pooled test."""
    d = gwas_data()
    s = d.study
    keep = complete_samples(s.binary, d.covariates12)
    y = s.binary[keep]
    z = design_matrix(d.covariates12[keep], keep.sum())
    g = s.genotypes[:, keep]
    null = lg.fit_null_logistic(y, z)
    pooled = lg.score_sums(g, z, y, null)
    site = s.site[keep]
    parts = []
    for k in range(3):
        sel = site == k
        sub = lg.NullModel(null.coef, null.mu[sel], null.w[sel], null.converged, null.iterations)
        parts.append(lg.score_sums(g[:, sel], z[sel], y[sel], sub))
    for name in pooled:
        np.testing.assert_allclose(sum(p[name] for p in parts), pooled[name], rtol=1e-9, atol=1e-7)
    total = {k: sum(p[k] for p in parts) for k in pooled}
    a = lg.score_test_from_sums(total["gr"], total["gwg"], total["gwz"], total["zwz"], total["zr"])
    b = lg.logistic_score_test(s.genotypes, s.binary, d.covariates12, null="project")
    np.testing.assert_allclose(a.chi2, b.chi2, rtol=1e-7, equal_nan=True)


def test_firth_twin_matches_plink2_firth_on_rare_variants():
    """Rare variants (minor allele count 1-15, separation in some): ``glm_firth`` against ``plink2 --glm firth``
    (a3.5: Wald test on the penalised fit with SE from I^-1), and plink2's firth-fallback picks exactly the
    variants where the IRLS twin fails."""
    d = gwas_data()
    s = d.study
    g = s.genotypes
    cand = rare_variants(g)
    ids = np.asarray(s.variant_id)[cand]
    pf, ph = plink_firth_reports(d, ids, "firth_rare")
    tw = lg.glm_firth(g[cand], s.binary, d.covariates12)
    j = np.arange(len(cand))
    ok = tw.converged & np.isfinite(pf["P"][j])
    assert ok.sum() >= len(cand) - 1
    sign = np.where(plink2_a1_is_alt(g[cand]), 1.0, -1.0)
    d_lnor = np.abs(np.log(pf["OR"][j][ok]) - sign[ok] * tw.beta[ok])
    assert d_lnor.max() <= 1e-3  # measured 6.7e-4: plink2 a3.5 stops at |step| < 1e-4 in single precision
    np.testing.assert_allclose(tw.se[ok], pf["LOG(OR)_SE"][j][ok], rtol=1e-3)  # measured 2.4e-4
    assert np.abs(tw.neglog10_p[ok] + np.log10(pf["P"][j][ok])).max() <= 0.01  # measured 2.3e-4
    jh = j
    irls = lg.glm_logistic(g[cand], s.binary, d.covariates12)
    np.testing.assert_array_equal(ph["FIRTH?"][jh] == "Y", ~irls.converged)


def test_glm_firth_modifiers_set_the_firth_slots():
    """``--glm firth-fallback`` (the default, as plink2) keeps the Firth slots; ``--glm no-firth`` drops them."""
    from cipherome.cli.gwas import gwas_params_from_cli
    from cipherome.genomics.gwas.logistic import LogisticParams

    def slots(*words):
        p = gwas_params_from_cli("disease", (), None, None, None, None, ("logistic", *words), None, 0, 4096)
        return LogisticParams.from_gwas(p).firth_slots

    assert slots() == slots("firth-fallback") == LogisticParams().firth_slots > 0
    assert slots("no-firth") == 0
