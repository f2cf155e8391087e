"""Linear-regression twin against ``plink2 --glm`` (12 covariates incl. PCs, 1% missing calls) and against brute force."""
from __future__ import annotations

import numpy as np
import pytest

from cipherome.genomics.reference import linear as lin
from cipherome.genomics.simulate import QUANT_PHENO
from cipherome.genomics.io.writers import write_covar

from conftest_sim import gwas_data
from plink_runner import PLINK2, PlinkError, have_plink, read_glm, run_plink

pytestmark = pytest.mark.skipif(not have_plink(PLINK2), reason="plink2 not installed")


@pytest.fixture(scope="module")
def plink_linear():
    d = gwas_data()
    r = run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", QUANT_PHENO,
                   "--covar", d.covar12, "--covar-variance-standardize", "--glm", "hide-covar"],
                  d.dir / "linear", out="lin")
    return d, read_glm(r.path(f".{QUANT_PHENO}.glm.linear"))


@pytest.fixture(scope="module")
def twin_linear():
    d = gwas_data()
    return lin.glm_linear(d.study.genotypes, d.study.quant, d.covariates12)


def test_matches_plink2_glm_with_12_covariates(plink_linear, twin_linear):
    d, pl = plink_linear
    tw = twin_linear
    s = d.study
    assert d.covariates12.shape[1] == 12 and (s.genotypes < 0).mean() > 0.009
    ok = ~np.isnan(pl["P"])
    # the same variants are NA (constant on the analysed samples), with the same ERRCODE
    np.testing.assert_array_equal(np.isnan(tw.p), ~ok)
    assert list(tw.errcode[~ok]) == list(pl["ERRCODE"][~ok])
    np.testing.assert_array_equal(tw.n_obs, pl["OBS_CT"].astype(np.int64))
    lp, lt = -np.log10(pl["P"][ok]), tw.neglog10_p[ok]
    r = np.corrcoef(lp, lt)[0, 1]
    assert r >= 0.99999, r
    assert np.max(np.abs(lp - lt)) <= 1e-4
    # PLINK reports A1 = nonmajor allele: flip the ALT-allele BETA where ALT is major
    sign = np.where(lin.plink2_a1_is_alt(s.genotypes), 1.0, -1.0)
    assert list(pl["A1"] == s.alt) == list(sign > 0)
    assert np.max(np.abs(pl["BETA"][ok] - sign[ok] * tw.beta[ok]) / pl["SE"][ok]) <= 1e-3
    np.testing.assert_allclose(tw.se[ok], pl["SE"][ok], rtol=1e-4)
    np.testing.assert_allclose(sign[ok] * tw.t_stat[ok], pl["T_STAT"][ok], rtol=1e-4, atol=1e-5)


def test_mean_imputation_differs_from_plink2(plink_linear):
    """The pitfall: mean-imputing missing calls instead of PLINK's per-variant drop."""
    d, pl = plink_linear
    mean = lin.glm_linear(d.study.genotypes, d.study.quant, d.covariates12, missing="mean")
    ok = ~np.isnan(pl["P"]) & ~np.isnan(mean.p)
    delta = np.abs(-np.log10(pl["P"][ok]) - mean.neglog10_p[ok])
    assert delta.max() > 0.05  # measured 0.19 on this data; the drop twin is within 1e-5


def test_plink2_refuses_unscaled_covariates_and_twin_is_scale_invariant(plink_linear, twin_linear):
    """plink2 a3.5 does not standardize covariates itself: age (~50) beside PCs (~0.02) stops --glm."""
    d, _ = plink_linear
    s = d.study
    raw = d.dir / "linear" / "raw_pcs.covar"  # PCs at PLINK's .eigenvec scale (unit norm)
    names = list(s.covariate_names) + [f"PC{i + 1}" for i in range(d.pcs_raw.shape[1])]
    write_covar(raw, s.fid, s.iid, np.column_stack([s.covariates, d.pcs_raw]), names)
    with pytest.raises(PlinkError, match="scales vary too widely"):
        run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", QUANT_PHENO,
                   "--covar", raw, "--glm", "hide-covar"], d.dir / "linear", out="unscaled")
    # the same covariates at unit scale are accepted without standardization
    run_plink(["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", QUANT_PHENO,
               "--covar", d.covar12, "--glm", "hide-covar"], d.dir / "linear", out="scaled")
    c = d.covariates12.copy()
    c[:, 0] = 1900 + c[:, 0] * 1000.0  # a wildly scaled covariate
    c[:, 4:] *= 1e-3
    again = lin.glm_linear(d.study.genotypes[:300], d.study.quant, c)
    np.testing.assert_allclose(again.neglog10_p, twin_linear.neglog10_p[:300], rtol=1e-9, atol=1e-12)


def test_brute_force_least_squares(twin_linear):
    d = gwas_data()
    s = d.study
    keep = lin.complete_samples(s.quant, d.covariates12)
    for j in np.flatnonzero(~np.isnan(twin_linear.p))[:: 97][:25]:
        sel = keep & (s.genotypes[j] >= 0)
        X = np.column_stack([np.ones(sel.sum()), s.genotypes[j, sel], d.covariates12[sel]])
        y = s.quant[sel]
        b, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ b
        sigma2 = resid @ resid / (sel.sum() - X.shape[1])
        se = np.sqrt(sigma2 * np.linalg.inv(X.T @ X)[1, 1])
        assert twin_linear.n_obs[j] == sel.sum()
        np.testing.assert_allclose(twin_linear.beta[j], b[1], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(twin_linear.se[j], se, rtol=1e-8)


def test_variant_sums_add_up_over_sites():
    """Each site's sums (with the pooled design) add up to the pooled sums: the secure recipe."""
    d = gwas_data()
    s = d.study
    keep = lin.complete_samples(s.quant, d.covariates12)
    y = s.quant[keep] - s.quant[keep].mean()
    z = lin.design_matrix(d.covariates12[keep], keep.sum())
    g = s.genotypes[:200][:, keep]
    site = s.site[keep]
    (_, pooled), = list(lin.iter_variant_sums(g, z, y))
    parts = [next(lin.iter_variant_sums(g[:, site == k], z[site == k], y[site == k]))[1] for k in range(3)]
    for name in ("n_obs", "zz", "zy", "yy", "gz", "gg", "gy"):
        np.testing.assert_allclose(sum(getattr(p, name) for p in parts), getattr(pooled, name), rtol=1e-10, atol=1e-8)


def test_constant_and_degenerate_variants():
    g = np.array([[0, 0, 0, 0, -1, 0], [0, 1, 2, 1, 0, 1], [1, -1, -1, -1, -1, 1]], dtype=np.int8)
    y = np.array([0.1, 0.5, 0.9, 0.4, 0.3, 0.2])
    res = lin.glm_linear(g, y)
    assert np.isnan(res.p[0]) and res.errcode[0] == "CONST_OMITTED_ALLELE"
    assert np.isfinite(res.p[1]) and res.n_obs[1] == 6
    assert np.isnan(res.p[2]) and res.n_obs[2] == 2
