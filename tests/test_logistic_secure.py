"""Secure logistic regression (in-process, 3 sites) against plink2 --glm (non-Firth rows), statsmodels and
the plaintext twins, on the GWAS study: 2 populations mixed unevenly over 3 sites, 1.1% missing calls,
missing phenotypes and covariates, 12 covariates (4 + 8 PCs), binary trait."""
import numpy as np
import pytest

from cipherome.genomics.reference import logistic as lg
from cipherome.genomics.gwas.logistic import DISCLOSURES, LogisticParams, logistic_association
from cipherome.genomics.reference.linear import complete_samples, design_matrix, plink2_a1_is_alt
from cipherome.genomics.simulate import BINARY_PHENO
from cipherome.mpc.local import run_local
from tests.conftest_sim import gwas_data, plink_firth_reports, rare_variants
from tests.plink_runner import PLINK2, have_plink, read_glm, run_plink

TOP = 100


@pytest.fixture(scope="module")
def secure_run():
    d = gwas_data()
    s = d.study
    cov = d.covariates12
    keep = complete_samples(s.binary, cov)
    tested = np.flatnonzero(d.qc.variant_keep)
    n = int(keep.sum())
    x = design_matrix(cov[keep], n)
    y = s.binary[keep]
    site = s.site[keep]
    g = s.genotypes[tested][:, keep]
    a1 = plink2_a1_is_alt(s.genotypes[tested])
    pp = LogisticParams(top=TOP, missing_bound=0.05)

    def job(ctx):
        sel = site == ctx.index
        gs = g[:, sel]
        return logistic_association(ctx, x[sel], y[sel], lambda idx: gs[idx], len(tested), n, pp, a1_is_alt=a1,
                                    site_counts=[int((site == i).sum()) for i in range(3)])

    run = run_local(job, 3, frac=24, timeout=900)
    return d, tested, a1, run


@pytest.fixture(scope="module")
def plink_logistic(secure_run):
    if not have_plink(PLINK2):
        pytest.skip("plink2 not installed")
    d = secure_run[0]
    r = run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", BINARY_PHENO, "--covar", d.covar12,
                   "--covar-variance-standardize", "--glm", "hide-covar"], d.dir / "secure_logistic", out="log")
    return read_glm(r.path(f".{BINARY_PHENO}.glm.logistic.hybrid"))


def _align(ids, plink):
    pos = {v: i for i, v in enumerate(plink["ID"])}
    mine = np.array([i for i, v in enumerate(ids) if v in pos])
    return mine, np.array([pos[ids[i]] for i in mine])


def test_wald_top_hits_match_plink2_and_statsmodels(secure_run, plink_logistic):
    d, tested, a1, run = secure_run
    res = run.results[0]
    ids = np.asarray(d.study.variant_id)[tested]
    mine, theirs = _align(ids, plink_logistic)
    wald = res["wald"][mine]
    non_firth = (plink_logistic["FIRTH?"][theirs] == "N") & np.isfinite(plink_logistic["P"][theirs])
    ok = wald & non_firth
    assert ok.sum() >= 0.9 * TOP
    cols = res["columns"]
    d_lnor = np.abs(np.log(cols["OR"][mine][ok]) - np.log(plink_logistic["OR"][theirs][ok]))
    d_lp = np.abs(np.log10(cols["P"][mine][ok]) - np.log10(plink_logistic["P"][theirs][ok]))
    assert d_lnor.max() <= 1e-3
    assert d_lp.max() <= 0.1
    np.testing.assert_allclose(cols["LOG(OR)_SE"][mine][ok], plink_logistic["LOG(OR)_SE"][theirs][ok], rtol=1e-3)
    np.testing.assert_array_equal(res["obs_ct"][mine], plink_logistic["OBS_CT"][theirs].astype(np.int64))
    # second reference: a textbook fit (statsmodels) for a few top hits, most-missing first
    sm = pytest.importorskip("statsmodels.api")
    s = d.study
    keep = complete_samples(s.binary, d.covariates12)
    top = np.flatnonzero(res["wald"])
    miss = (s.genotypes[tested[top]] < 0).sum(1)
    for j in top[np.argsort(-miss)[:5]]:
        sel = keep & (s.genotypes[tested[j]] >= 0)
        X = np.column_stack([np.ones(sel.sum()), d.covariates12[sel], s.genotypes[tested[j], sel]])
        fit = sm.Logit(s.binary[sel], X).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
        sign = 1.0 if a1[j] else -1.0
        assert abs(np.log(cols["OR"][j]) - sign * fit.params[-1]) < 1e-4
        np.testing.assert_allclose(cols["LOG(OR)_SE"][j], fit.bse[-1], rtol=1e-4)


def test_score_test_tracks_plink2_logistic_p(secure_run, plink_logistic):
    d, tested, _, run = secure_run
    res = run.results[0]
    ids = np.asarray(d.study.variant_id)[tested]
    mine, theirs = _align(ids, plink_logistic)
    ok = (plink_logistic["FIRTH?"][theirs] == "N") & np.isfinite(plink_logistic["P"][theirs]) \
        & np.isfinite(res["score_p"][mine])
    assert ok.sum() > 0.95 * len(mine)
    r = np.corrcoef(-np.log10(res["score_p"][mine][ok]), -np.log10(plink_logistic["P"][theirs][ok]))[0, 1]
    assert r >= 0.999, r
    # the reported P column (Wald for the top hits, score elsewhere) tracks plink2 as closely
    r2 = np.corrcoef(-np.log10(res["columns"]["P"][mine][ok]), -np.log10(plink_logistic["P"][theirs][ok]))[0, 1]
    assert r2 >= 0.999, r2


def test_matches_plaintext_twins(secure_run):
    d, tested, a1, run = secure_run
    s = d.study
    res = run.results[0]
    proj = lg.logistic_score_test(s.genotypes[tested], s.binary, d.covariates12, null="project")
    ok = np.isfinite(proj.p) & np.isfinite(res["score_p"])
    np.testing.assert_array_equal(np.isfinite(proj.p), np.isfinite(res["score_p"]))  # same CONST rows
    assert np.max(np.abs(-np.log10(res["score_p"][ok]) - proj.neglog10_p[ok])) < 1e-3
    sign = np.where(a1, 1.0, -1.0)
    np.testing.assert_allclose(res["score_z"][ok] * sign[ok] * np.sign(proj.score[ok]), np.sqrt(proj.chi2[ok]),
                               rtol=1e-3, atol=2e-4)  # fixed-point noise of z: about 1e-4 absolute
    top = np.flatnonzero(res["wald"])
    tw = lg.glm_logistic(s.genotypes[tested[top]], s.binary, d.covariates12)
    assert np.max(np.abs(np.log(res["columns"]["OR"][top]) * sign[top] - tw.beta)) < 1e-4
    np.testing.assert_allclose(res["columns"]["LOG(OR)_SE"][top], tw.se, rtol=1e-4)
    # the null model is the twin's covariate-only fit
    keep = complete_samples(s.binary, d.covariates12)
    null = lg.fit_null_logistic(s.binary[keep], design_matrix(d.covariates12[keep], keep.sum()))
    np.testing.assert_allclose(res["null_beta"], null.coef, atol=1e-6)


def test_ledger_holds_only_documented_disclosures(secure_run):
    _, tested, _, run = secure_run
    documented = {k for k, v in DISCLOSURES.items() if v[0] == "disclosed"}
    for name, rep in run.reports.items():
        if name == "dealer":
            continue
        disclosed = {e["label"]: e for e in rep["ledger"] if e["kind"] == "disclosed"}
        assert set(disclosed) <= documented, set(disclosed) - documented
        assert disclosed["logistic.score"]["elements"] == len(tested)
        assert disclosed["logistic.wald_var"]["elements"] == TOP
        public = {k for k, v in DISCLOSURES.items() if v[0] == "public"}
        assert {e["label"] for e in rep["ledger"] if e["kind"] == "public"} <= public


def _rare_study():
    """The GWAS study's complete samples: (data, study, covariates, N, design, y, site, genotypes (M, N))."""
    d = gwas_data()
    s = d.study
    cov = d.covariates12
    keep = complete_samples(s.binary, cov)
    n = int(keep.sum())
    return d, s, cov, n, design_matrix(cov[keep], n), s.binary[keep], s.site[keep], s.genotypes[:, keep]


def test_wald_rare_variants_match_twin():
    """Rare variants (minor allele count 1-15, no MAF filter): the preconditioned Newton steps still
    converge to the textbook fit where it converges; where neither converges (separation), NaN."""
    from cipherome.genomics.gwas.logistic import fit_null, wald_fits

    d, s, cov, n, x, y, site, g = _rare_study()
    cand = rare_variants(g)[:48]
    tw = lg.glm_logistic(s.genotypes[cand], s.binary, cov)

    def job(ctx):
        sel = site == ctx.index
        null = fit_null(ctx, x[sel], y[sel], n)
        return wald_fits(ctx, null, x[sel], y[sel], g[cand][:, sel], n, LogisticParams(firth_slots=0))  # Wald only

    r = run_local(job, 3, frac=24, timeout=600).results[0]
    both = tw.converged & r["converged"]
    assert both.sum() >= 0.9 * tw.converged.sum()
    assert not (r["converged"] & ~tw.converged).any()
    assert np.max(np.abs(r["beta"][both] - tw.beta[both])) < 1e-3
    assert np.max(np.abs(r["neglog10_p"][both] - tw.neglog10_p[both])) < 0.01
    assert np.all(np.isnan(r["p"][~r["converged"]]))


def test_firth_fallback_rare_variants_match_plink2_firth():
    """Rare variants (minor allele count 1-15, some separated: no case or no control carries A1): the Wald fits
    that fail get Firth's penalised fit (plink2's default firth-fallback) in one batch of public slots; its rows
    match ``plink2 --glm firth`` (ln OR within 1e-3, LOG(OR)_SE 1e-3, -log10 P 0.01) and the twin to 1e-5, and
    every variant plink2's firth-fallback fits by Firth is one of them."""
    from cipherome.genomics.gwas.logistic import fit_null, wald_fits

    if not have_plink(PLINK2):
        pytest.skip("plink2 not installed")
    d, s, cov, n, x, y, site, g = _rare_study()
    cand = rare_variants(g)
    a1 = plink2_a1_is_alt(s.genotypes[cand])
    pp = LogisticParams(firth_slots=16)

    def job(ctx):
        sel = site == ctx.index
        null = fit_null(ctx, x[sel], y[sel], n)
        return wald_fits(ctx, null, x[sel], y[sel], g[cand][:, sel], n, pp, alt_major=~a1)

    run = run_local(job, 3, frac=24, timeout=900)
    r = run.results[0]
    pf, ph = plink_firth_reports(d, np.asarray(s.variant_id)[cand], "secure_firth_rare")
    jf = jh = np.arange(len(cand))
    plink_firth = ph["FIRTH?"][jh] == "Y"
    assert plink_firth.sum() >= 5
    assert not (plink_firth & ~r["firth"]).any()  # every plink2 Firth row is a Firth row here
    fr = r["firth"]
    assert r["firth_converged"][fr].all()
    sign = np.where(a1, 1.0, -1.0)
    d_lnor = np.abs(sign[fr] * r["beta"][fr] - np.log(pf["OR"][jf][fr]))
    assert d_lnor.max() <= 1e-3, d_lnor.max()
    np.testing.assert_allclose(r["se"][fr], pf["LOG(OR)_SE"][jf][fr], rtol=1e-3)
    assert np.abs(r["neglog10_p"][fr] + np.log10(pf["P"][jf][fr])).max() <= 0.01
    tw = lg.glm_firth(s.genotypes[cand[fr]], s.binary, cov)
    assert np.abs(r["beta"][fr] - tw.beta).max() < 1e-5
    np.testing.assert_allclose(r["se"][fr], tw.se, rtol=1e-5)
    print(f"Firth rows {fr.sum()} (plink2 Y {plink_firth.sum()}): max |d ln OR| vs plink2 --glm firth "
          f"{d_lnor.max():.2e}, vs twin {np.abs(r['beta'][fr] - tw.beta).max():.2e}")
    for name, rep in run.reports.items():
        led = {e["label"]: e["elements"] for e in rep["ledger"] if "firth" in e["label"]}
        if name != "dealer":
            assert led == {"logistic.firth_step": pp.firth_iterations * pp.firth_slots * (x.shape[1] + 1),
                           "logistic.firth_var": pp.firth_slots}


def test_null_model_convergence_bit():
    """The opened bit says whether the last secret Newton step is below tol_null in every coefficient: after
    2 steps it is not (the fit stops with an error naming the cause), after the default 10 it is."""
    from cipherome.genomics.gwas.logistic import fit_null

    d, s, cov, n, x, y, site, g = _rare_study()

    def job(ctx, iterations):
        sel = site == ctx.index
        try:
            return fit_null(ctx, x[sel], y[sel], n, LogisticParams(null_iterations=iterations)).beta
        except ValueError as exc:
            return str(exc)

    short = run_local(lambda ctx: job(ctx, 2), 3, frac=24, timeout=600)
    assert all("does not converge" in r for r in short.results)
    full = run_local(lambda ctx: job(ctx, 10), 3, frac=24, timeout=600)
    np.testing.assert_allclose(full.results[0], lg.fit_null_logistic(y, x).coef, atol=1e-6)
    for rep in short.reports.values():
        assert [e["elements"] for e in rep["ledger"] if e["label"] == "logistic.null_converged"] in ([1], [])
