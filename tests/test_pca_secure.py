"""Secure PCA (in-process, 3 sites) against ``plink2 --pca 10`` on every QC-passing variant: all K PCs.

Study: 3 populations mixed unevenly over 3 sites, 600 x 2,400, 1% missing calls plus bad variants and
samples; QC --geno 0.05 --maf 0.01 --hwe 1e-6. Beyond the two axes of structure its eigenvalues are
noise eigenvalues 0.1-0.5% apart (asserted below): the clustered case, where a fixed small number of
power passes does not converge.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas.pca import (DISCLOSURES, PCAParams, PCAPolicyError, pairwise_factors, secure_pca,
                                         select_pca_variants)
from cipherome.genomics.gwas.variants import StudyVariants
from cipherome.genomics.reference import pca as rp
from cipherome.mpc.local import run_local
from tests.conftest_sim import pca_small_data
from tests.gwas_sites import sites_from_study
from tests.plink_runner import PLINK2, have_plink, read_eigenval, read_eigenvec, run_plink

K = 10


def subspace_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between span(a) and span(b) (orthonormalised), ascending."""
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    return np.sort(np.linalg.svd(qa.T @ qb, compute_uv=False))


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


def _run(data, pp):
    s, sites, sv, passed = _setup(data)
    return run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool), pp),
                     3, frac=24, timeout=1800)


@pytest.fixture(scope="module")
def secure_run():
    d = pca_small_data()
    return d, _run(d, PCAParams(k=K, min_maf=0.01))


def _plink(d, mode: str):
    if not have_plink(PLINK2):
        pytest.skip("plink2 not installed")
    s = d.study
    extract = d.dir / "pca_qc_pass.txt"
    extract.write_text("\n".join(np.asarray(s.variant_id)[d.qc.variant_keep]) + "\n")
    r = run_plink(["--bfile", d.bfile, "--extract", extract, "--pca", K, *([mode] if mode else [])],
                  d.dir / "plink_pca", out=mode or "default")
    iid, vec = read_eigenvec(r.path(".eigenvec"))
    assert list(iid) == list(s.iid)
    return vec, read_eigenval(r.path(".eigenval"))


def test_all_k_pcs_match_plink2_default(secure_run):
    d, run = secure_run
    vec, val = _plink(d, "")
    # the clustered case: noise eigenvalues beyond the 2 axes of structure, some within 0.5% of each other
    assert val[1] > 2 * val[2]
    assert np.min(np.diff(val[2:])[:] / val[3:] * -1) < 0.005
    u = _pooled(d.study, run.results)
    eig = run.results[0].eigenvalues
    cos = subspace_cosines(u, vec)
    assert cos.min() >= 0.999, cos
    np.testing.assert_allclose(eig, val, rtol=0.005)
    # each PC on its own too (signs are arbitrary)
    assert np.all(np.abs(np.sum(u * vec, axis=0)) >= 0.99)
    assert np.all(np.diff(eig) <= 0)  # sorted descending (the LAPACK-order pitfall)
    np.testing.assert_allclose(np.linalg.norm(u, axis=0), 1.0, atol=1e-5)  # PLINK's unit-norm scale
    r0 = run.results[0]
    # stopped by a residual stop (the subspace bound or every PC's relative residual), not the cap
    assert (r0.bound <= 0.02 or r0.history[-1]["rel_residual"] <= 2e-3) and r0.passes < 40
    for r in run.results:  # every site computed the same public values
        np.testing.assert_array_equal(r.eigenvalues, r0.eigenvalues)
        assert r.passes == r0.passes


def test_pairwise_factors_reproduce_plinks_matrix():
    """The operator D A D / M + diag(e) against plink2's pairwise matrix (the twin, tested against
    plink2 in test_reference_pca): top-K eigenvalues within 5e-4, subspace cosines >= 0.9999."""
    d = pca_small_data()
    g = d.study.genotypes[d.qc.variant_keep]
    x, obs = rp.standardize(g)
    m = g.shape[0]
    dd, e = pairwise_factors((~obs).sum(axis=1), m, approx=False)
    kmat = dd[:, None] * (x @ x.T) * dd[None, :] / m + np.diag(e)
    w, v = np.linalg.eigh(kmat)
    ex = rp.pca_exact(g, K)
    np.testing.assert_allclose(w[::-1][:K], ex.eigenvalues, rtol=5e-4)
    assert subspace_cosines(v[:, ::-1][:, :K], ex.eigenvectors).min() >= 0.9999


def test_ledger_holds_only_documented_disclosures(secure_run):
    d, run = secure_run
    r0 = run.results[0]
    for name, rep in run.reports.items():
        if name == "dealer":
            continue
        disclosed = [e for e in rep["ledger"] if e["kind"] == "disclosed"]
        assert {e["label"] for e in disclosed} <= {k for k, v in DISCLOSURES.items() if v[0] == "disclosed"}
        scores = [e for e in disclosed if e["label"] == "pca.scores"]
        assert sorted(tuple(e["recipients"]) for e in scores) == [("p0",), ("p1",), ("p2",)]
        for e in scores:
            j = int(e["recipients"][0][1:])
            assert e["elements"] == d.study.site_samples(j).size * K
        passes = [e for e in disclosed if e["label"] == "pca.passes"]
        assert len(passes) == 1 and list(passes[0]["recipients"]) == ["dealer"]
        gram = [e for e in disclosed if e["label"] == "pca.gram"]
        assert gram[0]["openings"] == r0.passes  # one Gram per pass (no recomputation here)
        public = {e["label"] for e in rep["ledger"] if e["kind"] == "public"}
        assert "pca.site_counts" in public and public <= {"pca.site_counts", "input.shape"}
    for i, r in enumerate(run.results):  # each party learns only its own rows
        assert r.scores_own.shape == (d.study.site_samples(i).size, K)


def test_approx_with_a_fixed_schedule_is_plink2_approx_matrix():
    """``--pca K approx`` (mean-imputed matrix) with a fixed public pass count: no ``pca.passes``
    disclosure; 15 passes of block 15 on 800 thinned variants."""
    d = pca_small_data()
    s = d.study
    pp = PCAParams(k=5, approx=True, oversample=10, passes=15, thin_count=800)
    run = _run(d, pp)
    u = _pooled(s, run.results)
    g = s.genotypes[run.results[0].variants]
    ex = rp.pca_exact(g, 5, missing="meanimpute")  # = plink2 --pca meanimpute (and approx's matrix)
    assert subspace_cosines(u, ex.eigenvectors).min() >= 0.999
    np.testing.assert_allclose(run.results[0].eigenvalues, ex.eigenvalues, rtol=0.005)
    labels = {e["label"] for e in run.reports["p0"]["ledger"]}
    assert "pca.passes" not in labels and run.results[0].passes == 15


def test_variant_choice_policy_and_consistency():
    d = pca_small_data()
    s, sites, sv, passed = _setup(d)
    assert np.array_equal(select_pca_variants(sites[0], sv, passed, PCAParams()), passed)  # default: all passing
    ids = list(np.asarray(s.variant_id)[passed[::3]]) + ["not_a_variant"]
    got = select_pca_variants(sites[0], sv, passed, PCAParams(extract=tuple(ids)))
    np.testing.assert_array_equal(got, passed[::3])
    got = select_pca_variants(sites[0], sv, passed, PCAParams(bp_space=20000))
    np.testing.assert_array_equal(got, rp.thin_by_distance(s.chrom, s.pos, 20000, d.qc.variant_keep))
    got = select_pca_variants(sites[0], sv, passed, PCAParams(thin_count=500))
    np.testing.assert_array_equal(got, rp.thin_by_count(500, d.qc.variant_keep))
    with pytest.raises(ValueError, match="pca-extract"):
        select_pca_variants(sites[0], sv, passed, PCAParams(extract=("nope",)))
    sites[1].policy = {"pca_own_scores": False}
    with pytest.raises(PCAPolicyError, match="p1"):
        run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool),
                                         PCAParams(k=2)), 3, frac=24, timeout=120)
    sites[1].policy = {}
    # a site whose IDs name other variants chooses another set: refused before any computation
    ext = tuple(np.asarray(s.variant_id)[passed[:300]])
    with pytest.raises(ValueError, match="different PCA variant sets"):
        run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool),
                                         PCAParams(k=2, extract=ext[: 300 - 50 * ctx.index])), 3, frac=24,
                  timeout=120)


def test_out_of_range_gram_is_recomputed_smaller(monkeypatch):
    """An underestimated scale makes the Gram overflow; the pass is recomputed 8 bits smaller."""
    import cipherome.protocols.krylov as kr

    monkeypatch.setattr(kr, "GRAM_TARGET", 2.0**20)  # aim far above the 62-bit range after pass 1
    d = pca_small_data()
    # 4 fixed passes: with 3 the random start left the subspace at cosine 0.9989 in 2 of ~32 runs
    pp = PCAParams(k=2, approx=True, passes=4, thin_count=400)
    run = _run(d, pp)
    u = _pooled(d.study, run.results)
    ex = rp.pca_exact(d.study.genotypes[run.results[0].variants], 2, missing="meanimpute")
    assert subspace_cosines(u, ex.eigenvectors).min() >= 0.999
    gram = [e for e in run.reports["p0"]["ledger"] if e["label"] == "pca.gram"][0]
    assert gram["openings"] > pp.passes  # some passes were recomputed
