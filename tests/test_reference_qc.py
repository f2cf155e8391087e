"""QC twins against plink2 (and plink1.9): statistics, exact threshold ties, filter order, HWE sample set."""
from __future__ import annotations

import numpy as np
import pytest

from cipherome.genomics.reference import qc
from cipherome.genomics.io.writers import Variants, write_bed

from conftest_sim import gwas_data, scratch_dir
from plink_runner import (
    PLINK1,
    PLINK2,
    have_plink,
    read_afreq,
    read_hardy,
    read_id_list,
    read_smiss,
    read_snplist,
    read_vmiss,
    run_plink,
)

pytestmark = pytest.mark.skipif(not have_plink(PLINK2), reason="plink2 not installed")


@pytest.fixture(scope="module")
def basic_stats():
    d = gwas_data()
    r = run_plink(["--bfile", d.bfile, "--hardy", "--freq", "--missing"], d.dir / "qc", out="stats")
    rm = run_plink(["--bfile", d.bfile, "--hardy", "midp"], d.dir / "qc", out="midp")
    return d, r, rm


def test_freq_and_missingness_match_plink2(basic_stats):
    d, r, _ = basic_stats
    g = d.study.genotypes
    np.testing.assert_allclose(qc.alt_freq(g), read_afreq(r.path(".afreq"))["ALT_FREQS"], atol=5e-7)
    np.testing.assert_allclose(qc.variant_missing_rate(g), read_vmiss(r.path(".vmiss"))["F_MISS"], atol=5e-7)
    np.testing.assert_allclose(qc.sample_missing_rate(g), read_smiss(r.path(".smiss"))["F_MISS"], atol=5e-7)


def test_hwe_exact_matches_plink2_hardy(basic_stats):
    d, r, rm = basic_stats
    c = qc.genotype_counts(d.study.genotypes)
    h = read_hardy(r.path(".hardy"))
    # PLINK prints 6 significant digits
    np.testing.assert_allclose(qc.hwe_exact(c), h["P"], rtol=1e-5, atol=0)
    hm = read_hardy(rm.path(".hardy"))
    np.testing.assert_allclose(qc.hwe_exact(c, midp=True), hm["MIDP"], rtol=1e-5, atol=0)
    assert (h["P"] < 1e-6).sum() > 10  # the test data has real HWE failures


def test_hwe_chisq_formula_and_where_it_differs_from_exact():
    c = np.array([[360, 480, 160, 0], [999, 0, 1, 0], [500, 300, 200, 0], [1000, 0, 0, 0]])
    chi2, p = qc.hwe_chisq(c)
    n = c[:, :3].sum(1)
    q = (2 * c[:, 2] + c[:, 1]) / (2 * n)
    e = np.column_stack([n * (1 - q) ** 2, 2 * n * q * (1 - q), n * q**2])
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.nansum((c[:, :3] - e) ** 2 / e, axis=1)
    np.testing.assert_allclose(chi2[:3], ref[:3], rtol=1e-12, atol=1e-20)
    assert chi2[0] == 0 and chi2[3] == 0 and p[3] == 1
    # pitfall: one minor homozygote, no hets -- chi2 says p ~ 1e-219, the exact test ~ 1e-3
    exact = qc.hwe_exact(c)
    assert p[1] < 1e-100 and exact[1] > 1e-4
    # a 1e-6 threshold removes it with the chi2 test but not with PLINK's exact test
    assert p[1] < 1e-6 <= exact[1]


@pytest.fixture(scope="module")
def boundary_data():
    """Variants whose F_MISS / MAF sit exactly on decimal thresholds (ties)."""
    rng = np.random.default_rng(1)
    n = 100
    rows = []
    for k in range(61):  # k missing calls
        g = rng.binomial(2, 0.5, n).astype(np.int8)
        g[:k] = -1
        rows.append(g)
    for a in range(201):  # ALT count a, no missing
        g = np.zeros(n, np.int8)
        g[: a // 2] = 2
        if a % 2:
            g[a // 2] = 1
        rows.append(g)
    for a in range(80):  # 198 observed alleles
        g = np.zeros(n, np.int8)
        g[0] = -1
        g[1 : 1 + a] = 1
        rows.append(g)
    G = np.array(rows)
    m = G.shape[0]
    ids = np.array([f"v{i}" for i in range(m)])
    iid = [f"s{i}" for i in range(n)]
    d = scratch_dir() / "ties"
    write_bed(d / "ties", G, Variants(["1"] * m, np.arange(1, m + 1) * 100, ids, ["A"] * m, ["C"] * m), iid, iid)
    return G, ids, str(d / "ties")


@pytest.mark.parametrize(
    "flag,t",
    [("geno", 0.07), ("geno", 0.29), ("geno", 0.57), ("geno", 0.05),
     ("maf", 0.07), ("maf", 0.1), ("maf", 0.035), ("maf", 0.145), ("maf", 0.29)],
)
def test_threshold_ties_are_kept_exactly_as_plink2(boundary_data, flag, t):
    G, ids, bfile = boundary_data
    r = run_plink(["--bfile", bfile, f"--{flag}", t, "--write-snplist"], scratch_dir() / "ties", out=f"{flag}{t}")
    got = set(read_snplist(r.path(".snplist")))
    twin = qc.qc_filter(G, **{flag: t})
    assert got == set(ids[twin.variant_keep])


def test_naive_float_thresholds_would_differ(boundary_data):
    """Pitfalls: MAF as 1 - p of the coded allele, or t * N in floating point, flip ties."""
    G, ids, _ = boundary_data
    c = qc.genotype_counts(G)
    p = qc.alt_freq(G)
    naive_maf = np.minimum(p, 1.0 - p) < 0.07  # 1 - 0.93 = 0.06999999999999995
    exact_maf = ~qc.qc_filter(G, maf=0.07).variant_keep
    assert (naive_maf != exact_maf).any()
    naive_geno = c[:, 3] > 0.29 * G.shape[1]  # 0.29 * 100 = 28.999999999999996
    exact_geno = ~qc.qc_filter(G, geno=0.29).variant_keep
    assert (naive_geno != exact_geno).any()


QC_SETTINGS = [(0.05, 0.05, 1e-6, 0.01), (0.03, 0.02, 1e-4, 0.05), (0.012, 0.011, 1e-3, 0.02)]


@pytest.mark.parametrize("mind,geno,hwe,maf", QC_SETTINGS)
def test_qc_pass_sets_identical_to_plink2(mind, geno, hwe, maf):
    d = gwas_data()
    s = d.study
    args = ["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", "disease",
            "--mind", mind, "--geno", geno, "--hwe", hwe, "--maf", maf]
    r = run_plink(args + ["--write-snplist", "--write-samples"], d.dir / "qc", out=f"pass{geno}")
    twin = qc.qc_filter(s.genotypes, mind=mind, geno=geno, hwe=hwe, maf=maf)
    assert set(read_snplist(r.path(".snplist"))) == set(s.variant_id[twin.variant_keep])
    assert set(read_id_list(r.path(".id"))) == set(s.iid[twin.sample_keep])
    # per-filter counts as in PLINK 2's log, in its order: --mind, --geno, --hwe, --maf
    log = r.log
    assert f"{twin.removed['mind']} sample" in log and f"removed due to missing genotype data (--mind)" in log
    assert f"--geno: {twin.removed['geno']} variant" in log
    assert f"--hwe: {twin.removed['hwe']} variant" in log and "(founders only)" in log
    assert f"{twin.removed['maf']} variant" in log
    order = [log.index(k) for k in ("(--mind)", "--geno:", "--hwe:", "allele frequency threshold")]
    assert order == sorted(order)
    # PLINK 2 tests HWE on all samples: a controls-only test gives a different pass set
    ctrl = qc.qc_filter(s.genotypes, mind=mind, geno=geno, hwe=hwe, maf=maf, hwe_samples=s.binary == 0)
    assert (ctrl.variant_keep != twin.variant_keep).any()


def test_mind_before_geno_order_matters():
    """Applying --geno before --mind (the other order) changes the result on this data."""
    d = gwas_data()
    g = d.study.genotypes
    mind, geno = 0.012, 0.011
    twin = qc.qc_filter(g, mind=mind, geno=geno)
    first = qc.qc_filter(g, geno=geno)
    other = qc.qc_filter(g[first.variant_keep], mind=mind)
    assert (other.sample_keep != twin.sample_keep).any()


@pytest.mark.skipif(not have_plink(PLINK1), reason="plink1.9 not installed")
def test_plink19_tests_hwe_in_controls_only():
    d = gwas_data()
    s = d.study
    mind, geno, hwe, maf = QC_SETTINGS[0]
    args = ["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", "disease",
            "--mind", mind, "--geno", geno, "--hwe", hwe, "--maf", maf, "--write-snplist"]
    r = run_plink(args, d.dir / "qc", exe=PLINK1, out="p19")
    ctrl = qc.qc_filter(s.genotypes, mind=mind, geno=geno, hwe=hwe, maf=maf, hwe_samples=s.binary == 0)
    assert set(read_snplist(r.path(".snplist"))) == set(s.variant_id[ctrl.variant_keep])
