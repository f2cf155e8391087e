"""Secure PCA (in-process, 3 sites) against plink2 --pca and the plaintext twins, on the PCA study:
3 populations mixed unevenly over 3 sites (two axes of structure), 1,500 x 4,000, 1% missing calls,
QC --geno 0.05 --maf 0.01 --hwe 1e-6, 1,500 variants thinned by count."""
import numpy as np
import pytest

from cipherome.genomics.reference import pca as rp
from cipherome.genomics.gwas.pca import DISCLOSURES, PCAParams, PCAPolicyError, secure_pca, select_pca_variants
from cipherome.genomics.gwas.variants import StudyVariants
from cipherome.mpc.local import run_local
from tests.conftest_sim import pca_data
from tests.gwas_sites import sites_from_study
from tests.plink_runner import PLINK2, have_plink, read_eigenval, read_eigenvec, run_plink

K = 5


def abs_corr(a, b):
    return np.array([abs(np.corrcoef(a[:, i], b[:, i])[0, 1]) for i in range(a.shape[1])])


def _setup(data):
    s = data.study
    sites = sites_from_study(s, s.covariates, list(s.covariate_names))
    m = s.genotypes.shape[0]
    sv = StudyVariants(np.arange(m), np.zeros(m, bool), np.arange(m), 0)
    return s, sites, sv, np.flatnonzero(data.qc.variant_keep)


def _pooled(study, results):
    u = np.zeros((study.n_samples, results[0].scores_own.shape[1]))
    for i, r in enumerate(results):
        u[study.site_samples(i)] = r.scores_own
    return u


@pytest.fixture(scope="module")
def secure_run():
    d = pca_data()
    s, sites, sv, passed = _setup(d)
    pp = PCAParams(k=K, n_variants=1500, missing="mean")  # exactly plink2 --pca approx
    run = run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool), pp),
                    3, frac=24, timeout=600)
    return d, run


@pytest.fixture(scope="module")
def plink_pcs(secure_run):
    if not have_plink(PLINK2):
        pytest.skip("plink2 not installed")
    d, _ = secure_run
    s = d.study
    extract = d.dir / "secure_thinned.txt"
    extract.write_text("\n".join(s.variant_id[d.thinned]) + "\n")
    out = {}
    for mode in ("default", "approx"):
        mod = [] if mode == "default" else [mode]
        r = run_plink(["--bfile", d.bfile, "--extract", extract, "--pca", K, *mod], d.dir / "secure_pca", out=mode)
        iid, vec = read_eigenvec(r.path(".eigenvec"))
        assert list(iid) == list(s.iid)
        out[mode] = (vec, read_eigenval(r.path(".eigenval")))
    return out


def test_thinning_is_the_public_deterministic_subset(secure_run):
    d, run = secure_run
    for r in run.results:
        np.testing.assert_array_equal(r.variants, d.thinned)  # same subset at every site (count thinning)


def test_secure_pca_matches_plink2(secure_run, plink_pcs):
    d, run = secure_run
    u = _pooled(d.study, run.results)
    eig = run.results[0].eigenvalues
    vec, val = plink_pcs["default"]
    # two axes of structure (3 populations): PC1 and PC2 against plink2's default (pairwise) PCA
    assert np.all(abs_corr(u[:, :2], vec[:, :2]) >= 0.99)
    assert np.all(np.abs(eig[:2] / val[:2] - 1) < 0.05)  # mean imputation vs pairwise: ~2%
    vec, val = plink_pcs["approx"]
    assert np.all(abs_corr(u[:, :2], vec[:, :2]) >= 0.9999)
    np.testing.assert_allclose(eig[:2], val[:2], rtol=1e-3)
    assert np.all(np.diff(eig) <= 0)  # sorted descending (the LAPACK-order pitfall)


def test_secure_pca_matches_twins(secure_run):
    d, run = secure_run
    u = _pooled(d.study, run.results)
    g = d.study.genotypes[d.thinned]
    ex = rp.pca_exact(g, K, missing="meanimpute")
    rz = rp.pca_randomized(g, K, oversample=10, n_iter=4, seed=1)
    assert np.all(abs_corr(u[:, :2], ex.eigenvectors[:, :2]) >= 1 - 1e-6)
    np.testing.assert_allclose(run.results[0].eigenvalues[:2], ex.eigenvalues[:2], rtol=1e-5)
    # the noise PCs of a randomized method are as (in)accurate as the twin's
    np.testing.assert_allclose(run.results[0].eigenvalues, rz.eigenvalues, rtol=0.05)
    np.testing.assert_allclose(np.linalg.norm(u, axis=0), 1.0, atol=1e-5)  # PLINK's unit-norm scale
    for r in run.results:
        np.testing.assert_array_equal(r.eigenvalues, run.results[0].eigenvalues)


def test_ledger_holds_only_documented_disclosures(secure_run):
    d, run = secure_run
    L = K + 10
    for i, (name, rep) in enumerate(sorted((k, v) for k, v in run.reports.items() if k != "dealer")):
        disclosed = [e for e in rep["ledger"] if e["kind"] == "disclosed"]
        assert {e["label"] for e in disclosed} <= {k for k, v in DISCLOSURES.items() if v[0] == "disclosed"}
        scores = [e for e in disclosed if e["label"] == "pca.scores"]
        # every party records each site's opening; each goes to that site alone, n_s x K values
        assert sorted(tuple(e["recipients"]) for e in scores) == [("p0",), ("p1",), ("p2",)]
        for e in scores:
            j = int(e["recipients"][0][1:])
            assert e["elements"] == d.study.site_samples(j).size * K
        gram = [e for e in disclosed if e["label"] == "pca.gram"]
        assert len(gram) == 1 and gram[0]["elements"] == gram[0]["openings"] * L * L
        public = {e["label"] for e in rep["ledger"] if e["kind"] == "public"}
        assert public == {"pca.site_counts"}
    # each party learns only its own rows
    for i, r in enumerate(run.results):
        assert r.scores_own.shape == (d.study.site_samples(i).size, K)


def test_policy_refusal_and_distance_thinning():
    d = pca_data()
    s, sites, sv, passed = _setup(d)
    sites[1].policy = {"pca_own_scores": False}
    with pytest.raises(PCAPolicyError, match="p1"):
        run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool),
                                         PCAParams(k=2)), 3, frac=24, timeout=120)
    pp = PCAParams(k=2, bp_space=20000)
    got = select_pca_variants(sites[0], sv, passed, pp)
    np.testing.assert_array_equal(got, rp.thin_by_distance(s.chrom, s.pos, 20000, d.qc.variant_keep))


def test_out_of_range_gram_is_recomputed_smaller(monkeypatch):
    """An underestimated scale makes the Gram product overflow; it is detected and recomputed."""
    import cipherome.genomics.gwas.pca as pca_mod

    monkeypatch.setattr(pca_mod, "_GRAM_TARGET", 2.0**20)  # aim far above the 62-bit range
    d = pca_data()
    s, sites, sv, passed = _setup(d)
    pp = PCAParams(k=2, n_variants=600, passes=3, missing="mean")
    run = run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool), pp),
                    3, frac=24, timeout=600)
    u = _pooled(s, run.results)
    ex = rp.pca_exact(s.genotypes[run.results[0].variants], 2, missing="meanimpute")
    assert np.all(abs_corr(u, ex.eigenvectors) >= 0.999)
    gram = [e for e in run.reports["p0"]["ledger"] if e["label"] == "pca.gram"][0]
    assert gram["openings"] > pp.passes  # some passes were recomputed


def _site_mean_twin(study, thinned, k):
    """Plaintext twin of missing="site-mean": each site's missing calls at its own mean dosage (to 1/8),
    standardised with the pooled frequencies, exact top-k eigenpairs."""
    import scipy.linalg

    from cipherome.genomics.reference.qc import alt_freq

    g = study.genotypes[thinned]
    p = alt_freq(g)
    h = g.astype(float)
    for s in range(study.config.n_sites):
        idx = study.site_samples(s)
        gs = g[:, idx]
        fill = np.rint(8 * np.where(gs >= 0, gs, 0).sum(1) / np.maximum((gs >= 0).sum(1), 1)) / 8
        h[:, idx] = np.where(gs >= 0, gs, fill[:, None])
    x = ((h - 2 * p[:, None]) / np.sqrt(2 * p * (1 - p))[:, None]).T
    kmat = x @ x.T / x.shape[1]
    n = kmat.shape[0]
    vals, vecs = scipy.linalg.eigh(kmat, subset_by_index=[n - k, n - 1])
    o = np.argsort(vals)[::-1]
    return vals[o], vecs[:, o]


def test_site_mean_mode_matches_its_twin_and_plink2(plink_pcs):
    d = pca_data()
    s, sites, sv, passed = _setup(d)
    pp = PCAParams(k=K, n_variants=1500, missing="site-mean")
    run = run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool), pp),
                    3, frac=24, timeout=600)
    u = _pooled(s, run.results)
    vals, vecs = _site_mean_twin(s, d.thinned, K)
    assert np.all(abs_corr(u[:, :2], vecs[:, :2]) >= 1 - 1e-6)
    np.testing.assert_allclose(run.results[0].eigenvalues[:2], vals[:2], rtol=1e-4)
    vec, val = plink_pcs["default"]
    assert np.all(abs_corr(u[:, :2], vec[:, :2]) >= 0.99)
    assert np.all(np.abs(run.results[0].eigenvalues[:2] / val[:2] - 1) < 0.05)
    # one masked matrix (M x n_s) per site instead of two
    led = {(e["label"], tuple(e["recipients"])): e for e in run.reports["p0"]["ledger"]}
    assert led[("pca.genotype_mask", ("p1",))]["elements"] == 1500 * s.site_samples(0).size
