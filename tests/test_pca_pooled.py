"""PCA with pooled products (``--pca-mode pooled``, in-process, 3 sites) against ``plink2 --pca 10``: all K PCs.

The study of tests/test_pca_secure.py (3 populations over 3 sites, noise eigenvalues 0.1-0.5% apart,
1% missing calls). The pooled mode runs the same Krylov iteration on the sites' plaintext rows; it
must reach the same accuracy, open only its documented labels, and refuse to run unless every site's
policy allows it.
"""
import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.gwas.pca import DISCLOSURES, PCAParams, secure_pca
from cipherome.genomics.gwas.pca_pooled import product_parts
from cipherome.genomics.reference import pca as rp
from cipherome.mpc.local import run_local
from tests.conftest_sim import pca_small_data
from tests.test_pca_secure import K, _plink, _pooled, _setup, subspace_cosines

ALLOW = {"pca_pooled_products": True}


def _run(data, pp, policies=(ALLOW, ALLOW, ALLOW)):
    s, sites, sv, passed = _setup(data)
    for site, pol in zip(sites, policies):
        site.policy = dict(pol)
    return run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool), pp),
                     3, frac=24, timeout=1800)


@pytest.fixture(scope="module")
def pooled_run():
    d = pca_small_data()
    return d, _run(d, PCAParams(k=K, min_maf=0.01, mode="pooled"))


def test_all_k_pcs_match_plink2_default(pooled_run):
    d, run = pooled_run
    vec, val = _plink(d, "")
    u = _pooled(d.study, run.results)
    cos = subspace_cosines(u, vec)
    print("pooled: passes", run.results[0].passes, "bound", run.results[0].bound, "cosines", cos[:3])
    assert cos.min() >= 0.999, cos
    np.testing.assert_allclose(run.results[0].eigenvalues, val, rtol=0.005)
    assert np.all(np.abs(np.sum(u * vec, axis=0)) >= 0.99)  # each PC on its own too (signs are arbitrary)
    np.testing.assert_allclose(np.linalg.norm(u, axis=0), 1.0, atol=1e-5)  # PLINK's unit-norm scale
    r0 = run.results[0]
    assert r0.history[-1]["rel_residual"] <= 2e-3 and r0.passes < 40  # the residual stop, not the cap
    for r in run.results[1:]:
        np.testing.assert_array_equal(r.eigenvalues, run.results[0].eigenvalues)


def test_pooled_mode_opens_only_its_documented_labels(pooled_run):
    d, run = pooled_run
    M = run.results[0].variants.size
    b = K + PCAParams(mode="pooled").oversample
    for name, rep in run.reports.items():
        if name == "dealer":
            assert not rep["ledger"] or all(e["kind"] != "disclosed" for e in rep["ledger"])
            continue
        disclosed = {e["label"]: e for e in rep["ledger"] if e["kind"] == "disclosed"}
        assert set(disclosed) == {"pca.pooled_counts", "pca.start_gram", "pca.pooled_products", "pca.gram"}
        assert set(disclosed) <= {k for k, v in DISCLOSURES.items() if v[0] == "disclosed"}
        assert disclosed["pca.pooled_counts"]["elements"] == 2 * M
        prods = disclosed["pca.pooled_products"]
        parts = len(product_parts(M))  # the pass's ranges of variants, opened in one round
        assert parts > 1 and prods["openings"] == run.results[0].passes * parts
        assert prods["elements"] == run.results[0].passes * M * b
        assert all(sorted(e["recipients"]) == ["p0", "p1", "p2"] for e in disclosed.values())
        assert "pca.scores" not in disclosed  # scores never leave their site
    for i, r in enumerate(run.results):
        assert r.scores_own.shape == (d.study.site_samples(i).size, K)


def test_approx_matrix_in_pooled_mode():
    d = pca_small_data()
    pp = PCAParams(k=5, approx=True, oversample=10, thin_count=800, mode="pooled")
    run = _run(d, pp)
    u = _pooled(d.study, run.results)
    ex = rp.pca_exact(d.study.genotypes[run.results[0].variants], 5, missing="meanimpute")
    assert subspace_cosines(u, ex.eigenvectors).min() >= 0.999
    np.testing.assert_allclose(run.results[0].eigenvalues, ex.eigenvalues, rtol=0.005)


def test_pooled_mode_needs_every_sites_consent():
    d = pca_small_data()
    with pytest.raises(InputError, match="p1.*pca_pooled_products = false"):
        _run(d, PCAParams(k=2, thin_count=400, mode="pooled"), policies=(ALLOW, {}, ALLOW))
    with pytest.raises(ValueError, match="--pca-mode"):
        PCAParams(mode="open")


def test_local_gram_reuses_only_an_equal_prefix():
    from cipherome.protocols.krylov import LocalRows

    rows = LocalRows(None, 7, 20)
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal((7, 6))
    x2 = np.hstack([x1[:, :4], rng.standard_normal((7, 5))])  # the basis grew: 4 columns reused
    x3 = x2.copy()
    x3[3, 0] += 1e-9  # same shape, first column changed: nothing may be reused
    for x in (x1, x2, x2[:, :3], x3, rng.standard_normal((5, 4))):
        np.testing.assert_allclose(rows.local_gram(x), x.T @ x, rtol=1e-12, atol=1e-12)


def test_call_counts_match_numpy():
    from cipherome.genomics.gwas.pca_pooled import call_counts

    rng = np.random.default_rng(3)
    g = rng.integers(-1, 3, size=(50, 37)).astype(np.int8)
    for x, called in ((g, g >= 0), (np.where(g < 0, np.nan, g + rng.uniform(0, 0.3, g.shape)), g >= 0)):
        alt, obs, miss = call_counts(x)
        np.testing.assert_allclose(alt, np.where(called, x, 0).sum(axis=1))
        np.testing.assert_array_equal(obs, called.sum(axis=1))
        np.testing.assert_array_equal(miss, (~called).sum(axis=0))


@pytest.mark.parametrize("kernel", ["tables", "float"])
def test_every_product_kernel_gives_the_same_pcs(pooled_run, monkeypatch, kernel):
    """The base-3 table sums (a CPU without AVX-512 VNNI) and the float32 SGEMMs (dosages), forced here for
    hard calls: the same PCs as plink2."""
    from cipherome.genomics.gwas.pca_operator import KERNEL_ENV, kernel_for

    d, run = pooled_run
    monkeypatch.setenv(KERNEL_ENV, kernel)
    assert kernel_for(True) == kernel
    flt = _run(d, PCAParams(k=K, min_maf=0.01, mode="pooled"))
    vec, val = _plink(d, "")
    cos = subspace_cosines(_pooled(d.study, flt.results), vec)
    assert cos.min() >= 0.999, cos
    np.testing.assert_allclose(flt.results[0].eigenvalues, val, rtol=0.005)
    assert flt.results[0].history[-1]["rel_residual"] <= 2e-3


def test_opened_products_fit_their_ring_width():
    """||z_j||^2 <= 2 c_j for every variant (``_product_bits``), at extreme frequencies and with missing calls,
    so |U_jk| = |z_j' D v_k| stays below the width the opening promises."""
    from cipherome.genomics.gwas.pca_operator import standardised_rows
    from cipherome.genomics.gwas.pca_pooled import _D_MAX, _PRODUCT_FRAC, _product_bits, call_counts

    rng = np.random.default_rng(5)
    m, n = 400, 3000
    q = np.concatenate([rng.uniform(0.0005, 0.01, m // 2), rng.uniform(0.01, 0.9995, m // 2)])
    g = (rng.random((m, n)) < q[:, None]).astype(np.int8) + (rng.random((m, n)) < q[:, None]).astype(np.int8)
    g[rng.random((m, n)) < 0.2] = -1
    g[:5, :] = np.where(g[:5, :] >= 0, 2, -1)  # monomorphic rows are dropped (weight 0)
    g[5, :] = np.where(np.arange(n) % 3 == 0, 2, 0)  # a variant of homozygotes only: ||z||^2 = 2 c exactly
    alt, called, _ = call_counts(g)
    p = alt / (2.0 * called)
    keep = (p > 0) & (p < 1)
    z = standardised_rows(g, p, keep).astype(np.float64)
    norms = (z ** 2).sum(axis=1)
    assert np.all(norms <= 2.0 * called * (1 + 1e-6)) and norms[5] == pytest.approx(2.0 * called[5], rel=1e-5)
    v = np.zeros(n)
    j = int(np.argmax(norms))
    v[:] = z[j] / np.linalg.norm(z[j])  # the worst unit column: aligned with the largest z_j
    u = _D_MAX * abs(z[j] @ v)
    assert u * 2.0 ** _PRODUCT_FRAC < 2.0 ** (_product_bits(n, _D_MAX, _PRODUCT_FRAC) - 2)
    assert _product_bits(10_000, _D_MAX, _PRODUCT_FRAC) == 31 and _product_bits(131_000, _D_MAX, _PRODUCT_FRAC) == 32


def test_product_parts_partition_the_variants_at_multiples_of_64():
    for m in (0, 1, 511, 512, 1000, 96_040):
        parts = product_parts(m)
        assert parts[0].start == 0 and parts[-1].stop == m
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
        assert all(p.start % 64 == 0 for p in parts) and len(parts) <= 4
        assert len(parts) == 1 or all(p.stop - p.start >= 192 for p in parts)
    assert len(product_parts(96_040)) == 4 and len(product_parts(511)) == 1


def test_prefault_only_for_the_pooled_int8_operator_a_site_allows():
    from types import SimpleNamespace

    from cipherome.genomics.gwas.pca import prefault_operator
    from cipherome.genomics.local import vnni

    site = SimpleNamespace(policy=ALLOW, read_dosage=None)
    assert prefault_operator(site, PCAParams(k=10), 1000, 50) is None  # shared mode: no int8 matrices
    assert prefault_operator(SimpleNamespace(policy={}, read_dosage=None), PCAParams(k=10, mode="pooled"), 1000,
                             50) is None  # the site does not allow the pooled products
    big = prefault_operator(site, PCAParams(k=10, mode="pooled"), 10 ** 7, 10 ** 5)  # 2 TB: over any budget
    assert big is None
    warm = prefault_operator(site, PCAParams(k=10, mode="pooled"), 1000, 50)
    assert (warm is not None) == vnni.available()
    if warm is not None:
        warm.release()
