"""Secure GWAS (in-process transport) against PLINK 2 and PLINK 1.9 on a simulated 3-site study.

The study has two populations mixed unevenly over the sites, 1% missing calls,
missing phenotypes and covariates, 12 covariates (4 + 8 PCs); thresholds are the
issue's: identical QC pass set, r of -log10 p >= 0.9999, max |d -log10 p| <= 0.01,
|d BETA| <= 1e-3 SE, and the trend test against plink1.9 --model TREND.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.mpc.local import run_local
from tests.conftest_sim import N_PCS, gwas_data
from tests.gwas_sites import sites_from_study
from tests.plink_runner import PLINK1, read_glm, read_model, run_plink

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


#: relative chi2 agreement of the trend tests (relative to max(chi2, 1))
TREND_RTOL = 2e-3


def _names(study):
    return list(study.covariate_names) + [f"PC{i + 1}" for i in range(N_PCS)]


@pytest.fixture(scope="module")
def linear_run():
    data = gwas_data()
    sites = sites_from_study(data.study, data.covariates12, _names(data.study), "quant")
    params = GwasParams(pheno_name="quant_trait", geno=0.05, maf=0.01, hwe=1e-6, block=1024)
    run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac)
    return data, run


@pytest.fixture(scope="module")
def plink_linear(tmp_path_factory):
    data = gwas_data()
    d = tmp_path_factory.mktemp("plink_linear")
    run = run_plink(["--bfile", data.bfile, "--pheno", data.pheno, "--pheno-name", "quant_trait",
                     "--covar", data.covar12, "--geno", "0.05", "--maf", "0.01", "--hwe", "1e-6",
                     "--glm", "hide-covar"], d)
    return read_glm(run.path(".quant_trait.glm.linear"))


def test_qc_pass_set_matches_plink2(linear_run, plink_linear):
    data, run = linear_run
    res = run.results[0]
    from cipherome.genomics.reference.qc import genotype_counts, hwe_exact, hwe_lrt

    ids = np.asarray(data.study.variant_id)
    ours = set(ids[res["qc_pass"]])
    theirs = set(plink_linear["ID"])
    # the secure likelihood-ratio HWE test may differ from PLINK's exact test only where
    # the two p-values fall on different sides of the threshold (the stated difference)
    diff = np.flatnonzero(np.isin(ids, sorted(ours ^ theirs)))
    counts = genotype_counts(data.study.genotypes[diff])
    straddle = (hwe_lrt(counts)[1] < 1e-6) != (hwe_exact(counts) < 1e-6)
    assert straddle.all(), ids[diff][~straddle]
    assert len(diff) <= 0.002 * len(ids)


def test_linear_association_matches_plink2(linear_run, plink_linear):
    data, run = linear_run
    res = run.results[0]
    ids = np.asarray(data.study.variant_id)[res["tested"]]
    cols = res["assoc"]["columns"]
    pos = {v: i for i, v in enumerate(plink_linear["ID"])}
    common = [i for i, v in enumerate(ids) if v in pos]
    j = np.array([pos[ids[i]] for i in common])
    ok = np.isfinite(plink_linear["P"][j]) & np.isfinite(cols["P"][common])
    assert len(common) >= 0.99 * len(ids) and ok.mean() >= 0.99  # coverage: the filter drops few rows
    ours_p = -np.log10(cols["P"][common][ok])
    theirs_p = -np.log10(plink_linear["P"][j][ok])
    assert np.corrcoef(ours_p, theirs_p)[0, 1] >= 0.9999
    assert np.max(np.abs(ours_p - theirs_p)) <= 0.01
    dbeta = np.abs(cols["BETA"][common][ok] - plink_linear["BETA"][j][ok])
    assert np.all(dbeta <= 1e-3 * plink_linear["SE"][j][ok])
    np.testing.assert_array_equal(res["assoc"]["obs_ct"][common][ok], plink_linear["OBS_CT"][j][ok])


def test_ledger_holds_only_documented_disclosures(linear_run):
    """Every label is in docs/threat_model.md; in the clear only study metadata and key material."""
    from tests.threat_model_doc import documented_labels

    _, run = linear_run
    documented = documented_labels()
    for name, rep in run.reports.items():
        labels = {e["label"] for e in rep["ledger"]}
        assert labels <= documented, labels - documented
        public = {e["label"] for e in rep["ledger"] if e["kind"] == "public"}
        assert public <= {"gwas.site_counts", "gwas.study_key_contribution", "input.shape"}


def test_trend_test_matches_plink19_model(tmp_path):
    data = gwas_data()
    study = data.study
    sites = sites_from_study(study, np.zeros((study.n_samples, 0)), [], "binary")
    params = GwasParams(glm="trend", block=2048)
    run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac)
    res = run.results[0]
    plink = run_plink(["--bfile", data.bfile, "--pheno", data.pheno, "--pheno-name", "disease",
                       "--model", "--allow-no-sex"], tmp_path, exe=PLINK1)
    model = read_model(plink.path(".model"), "TREND")
    ids = np.asarray(study.variant_id)[res["tested"]]
    pos = {v: i for i, v in enumerate(model["SNP"])}
    common = [i for i, v in enumerate(ids) if v in pos]
    j = np.array([pos[ids[i]] for i in common])
    ours = res["assoc"]["columns"]["P"][common]
    theirs = model["P"][j]
    ok = np.isfinite(ours) & np.isfinite(theirs) & (theirs > 0)
    assert len(common) > 0.9 * len(ids) and ok.mean() >= 0.99  # coverage: few NaN rows on either side
    assert np.corrcoef(-np.log10(ours[ok]), -np.log10(theirs[ok]))[0, 1] >= 0.9999
    # values, not only their ranks: a chi2 inflated by 10% must fail (plink1.9 prints 4 significant digits)
    chi_ours, chi_theirs = res["assoc"]["columns"]["CHISQ"][common][ok], model["CHISQ"][j][ok]
    assert np.max(np.abs(chi_ours - chi_theirs) / np.maximum(chi_theirs, 1.0)) <= TREND_RTOL
    assert np.max(np.abs(np.log10(ours[ok]) - np.log10(theirs[ok]))) <= 0.01


def test_covariate_adjusted_trend_matches_the_reference():
    """The trend test adjusted for 12 covariates against the plaintext residualised trend statistic."""
    from cipherome.genomics.reference.trend import residualized_trend_test

    data = gwas_data()
    study = data.study
    sites = sites_from_study(study, data.covariates12, _names(study), "binary")
    params = GwasParams(glm="trend", block=2048)
    run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac)
    res = run.results[0]
    tested = np.asarray(res["tested"])
    ref = residualized_trend_test(study.genotypes[tested], study.binary, data.covariates12)
    ours = res["assoc"]["columns"]["CHISQ"]
    ok = np.isfinite(ours) & np.isfinite(ref.chi2)
    assert ok.mean() >= 0.99, ok.mean()
    assert np.max(np.abs(ours[ok] - ref.chi2[ok]) / np.maximum(ref.chi2[ok], 1.0)) <= TREND_RTOL


def test_min_cell_size_policy_withholds_rare_variants():
    """The strictest site's min_cell_size applies: no variant with minor allele count below it is released."""
    from cipherome.genomics.reference.qc import genotype_counts

    data = gwas_data()
    study = data.study
    sites = sites_from_study(study, data.covariates12, _names(study), "quant")
    sites[1].policy["min_cell_size"] = 60  # one site is stricter than the others
    params = GwasParams(pheno_name="quant_trait", geno=0.05, block=2048)
    run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac)
    res = run.results[0]
    c = genotype_counts(study.genotypes)
    alt = c[:, 1] + 2 * c[:, 2]
    n_alleles = 2 * c[:, :3].sum(1)
    mac = np.minimum(alt, n_alleles - alt)
    tested = np.asarray(res["tested"])
    assert np.all(mac[tested] >= 60)
    assert res["qc"]["failed"]["min_cell_size"] == int(np.sum(mac < 60))
