"""PCA twins against ``plink2 --pca`` (default, meanimpute, approx) on a thinned QC-passing subset; thinning against ``--bp-space``."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from cipherome.genomics.reference import pca
from cipherome.genomics.reference.qc import qc_filter
from cipherome.genomics.simulate import simulate_study, write_study

from conftest_sim import pca_config, pca_data, scratch_dir
from plink_runner import PLINK2, have_plink, read_eigenval, read_eigenvec, read_snplist, run_plink

pytestmark = pytest.mark.skipif(not have_plink(PLINK2), reason="plink2 not installed")

K = 5


def abs_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Pearson r| of matching columns."""
    return np.array([abs(np.corrcoef(a[:, i], b[:, i])[0, 1]) for i in range(a.shape[1])])


@pytest.fixture(scope="module")
def plink_pcs():
    d = pca_data()
    s = d.study
    extract = d.dir / "thinned.txt"
    extract.write_text("\n".join(s.variant_id[d.thinned]) + "\n")
    out = {}
    for mode in ("default", "meanimpute", "approx"):
        mod = [] if mode == "default" else [mode]
        r = run_plink(["--bfile", d.bfile, "--extract", extract, "--pca", K, *mod], d.dir / "pca", out=mode)
        iid, vec = read_eigenvec(r.path(".eigenvec"))
        assert list(iid) == list(s.iid)
        out[mode] = (vec, read_eigenval(r.path(".eigenval")))
    return d, out


def test_exact_matches_plink2_pca_default_and_meanimpute(plink_pcs):
    d, pl = plink_pcs
    g = d.study.genotypes[d.thinned]
    for mode, missing in (("default", "pairwise"), ("meanimpute", "meanimpute")):
        tw = pca.pca_exact(g, K, missing=missing)
        vec, val = pl[mode]
        assert np.all(abs_corr(tw.eigenvectors, vec) >= 0.9999), mode
        np.testing.assert_allclose(tw.eigenvalues, val, rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(tw.eigenvectors, axis=0), 1.0)
    # three populations -> two axes of structure, well above the noise eigenvalues
    assert pl["default"][1][1] > 5 * pl["default"][1][2]


def test_randomized_matches_plink2(plink_pcs):
    d, pl = plink_pcs
    g = d.study.genotypes[d.thinned]
    rz = pca.pca_randomized(g, K, oversample=10, n_iter=4, seed=1)
    for mode in ("approx", "meanimpute"):
        vec, val = pl[mode]
        assert np.all(abs_corr(rz.eigenvectors[:, :2], vec[:, :2]) >= 0.999), mode
        np.testing.assert_allclose(rz.eigenvalues[:2], val[:2], rtol=1e-4)
    # against PLINK 2's default (pairwise-complete) matrix: same axes, eigenvalues ~2% apart
    vec, val = pl["default"]
    assert np.all(abs_corr(rz.eigenvectors[:, :2], vec[:, :2]) >= 0.99)
    rel = np.abs(rz.eigenvalues[:2] / val[:2] - 1)
    assert np.all(rel < 0.05)
    assert np.all(rel > 1e-3)  # mean imputation shrinks the matrix by ~the missing-pair rate


def test_sorting_pitfall(plink_pcs):
    """LAPACK returns eigenpairs ascending: its first column is not PC1."""
    d, pl = plink_pcs
    krm = pca.relationship_matrix(d.study.genotypes[d.thinned])
    # the first column LAPACK's ascending order gives is the smallest eigenpair, not PC1
    lo_val, lo_vec = scipy.linalg.eigh(krm, subset_by_index=[0, 0])
    assert lo_val[0] < pl["default"][1][-1]
    assert abs(np.corrcoef(lo_vec[:, 0], pl["default"][0][:, 0])[0, 1]) < 0.2
    top = pca.pca_exact(d.study.genotypes[d.thinned], 1).eigenvectors[:, 0]
    assert abs(np.corrcoef(top, pl["default"][0][:, 0])[0, 1]) > 0.9999


def test_distance_thinning_matches_bp_space():
    d = pca_data()
    s = d.study
    keep = d.qc.variant_keep
    extract = d.dir / "pass.txt"
    extract.write_text("\n".join(s.variant_id[keep]) + "\n")
    r = run_plink(["--bfile", d.bfile, "--extract", extract, "--bp-space", 20000, "--write-snplist"],
                  d.dir / "thin", out="bp")
    mine = pca.thin_by_distance(s.chrom, s.pos, 20000, keep)
    assert list(read_snplist(r.path(".snplist"))) == list(s.variant_id[mine])
    assert 0 < mine.size < keep.sum()


def test_thinning_is_deterministic_so_pcs_are_reproducible():
    """Pitfall: PCs change with the thinned subset, so the subset must be a deterministic function
    of public data (positions, QC pass set) -- identical on every site and every rerun."""
    d = pca_data()
    keep = d.qc.variant_keep
    a = pca.thin_by_count(1000, keep)
    np.testing.assert_array_equal(a, pca.thin_by_count(1000, keep))
    assert keep[a].all() and np.all(np.diff(a) > 0) and a.size == 1000
    g = d.study.genotypes
    p1 = pca.pca_exact(g[a], 2).eigenvectors
    np.testing.assert_array_equal(p1, pca.pca_exact(g[pca.thin_by_count(1000, keep)], 2).eigenvectors)
    # another subset of the same size gives the same axes, but not the same numbers
    idx = np.flatnonzero(keep)
    other = np.setdiff1d(idx, a)[:1000]
    p2 = pca.pca_exact(g[other], 2).eigenvectors
    canon = np.linalg.svd(p1.T @ p2, compute_uv=False)
    assert canon.min() > 0.95
    assert np.abs(np.abs(p1) - np.abs(p2)).max() > 1e-3


def test_orient_signs():
    v = np.array([[0.1, -0.9], [-0.5, 0.2], [0.2, 0.1]])
    o = pca.orient_signs(v)
    np.testing.assert_array_equal(o, np.array([[-0.1, 0.9], [0.5, -0.2], [-0.2, -0.1]]))


@pytest.mark.slow
def test_randomized_matches_plink2_approx_above_5000_samples():
    cfg = pca_config().replace(n_samples=6000, n_variants=3000, seed=12)
    s = simulate_study(cfg)
    d = scratch_dir() / "pca6000"
    bfile = str(write_study(s, d, prefix="p", sites=False, vcf=False)["pooled"]["bed"])[:-4]
    keep = qc_filter(s.genotypes, geno=0.05, hwe=1e-6, maf=0.05).variant_keep
    sel = pca.thin_by_count(2000, keep)
    (d / "thin.txt").write_text("\n".join(s.variant_id[sel]) + "\n")
    r = run_plink(["--bfile", bfile, "--extract", d / "thin.txt", "--pca", K, "approx"], d, out="approx")
    _, vec = read_eigenvec(r.path(".eigenvec"))
    val = read_eigenval(r.path(".eigenval"))
    rz = pca.pca_randomized(s.genotypes[sel], K, seed=3)
    assert np.all(abs_corr(rz.eigenvectors[:, :2], vec[:, :2]) >= 0.99)
    np.testing.assert_allclose(rz.eigenvalues[:2], val[:2], rtol=1e-3)
