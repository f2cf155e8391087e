"""The secure projection off covariates with per-variant sample drop, against direct least squares."""
import numpy as np
import pytest

from cipherome.genomics.gwas.assoc import (neumann_terms, packed_congruence, pool_terms, project_off_covariates,
                                          shifted_series, site_spectral_bound, site_terms, study_series_terms, whiten)
from cipherome.genomics.local.stats import SiteDesign, variant_sums
from cipherome.mpc.local import run_local

FRAC = 24


def _site_data(rng, n_sites=3, n=(120, 90, 150), V=40, k_cov=3, miss=0.03):
    sites = []
    for s in range(n_sites):
        cov = rng.normal(size=(n[s], k_cov)) + 0.3 * s  # sites differ in covariate means
        x = np.column_stack([np.ones(n[s]), cov])
        p = rng.uniform(0.05, 0.5, V)
        g = rng.binomial(2, p[:, None], (V, n[s])).astype(np.int8)
        g[rng.random((V, n[s])) < miss] = -1
        y = cov @ rng.normal(size=k_cov) + 0.2 * np.where(g[0] >= 0, g[0], 0) + rng.normal(size=n[s])
        sites.append((g, x, y))
    return sites


def _public_ainv(sites, rounding=2.0**-24):
    """A^-1 of the pooled X'X/N, from values rounded as an opening would round them."""
    x = np.concatenate([s[1] for s in sites])
    a = np.round(x.T @ x / len(x) / rounding) * rounding
    return np.linalg.inv(a)


def _direct(sites):
    g = np.concatenate([s[0] for s in sites], axis=1)
    x = np.concatenate([s[1] for s in sites])
    y = np.concatenate([s[2] for s in sites])
    N = y.size
    out = []
    for j in range(g.shape[0]):
        S = g[j] >= 0
        xs, gs, ys = x[S], g[j, S].astype(float), y[S]
        proj = lambda v: v - xs @ np.linalg.lstsq(xs, v, rcond=None)[0]
        rg, ry = proj(gs), proj(ys)
        out.append([rg @ rg / N, rg @ ry / N, ry @ ry / N])
    return np.array(out)


@pytest.mark.parametrize("n_parties,whitened", [(2, False), (3, False), (3, True)])
def test_projection_matches_least_squares_with_sample_drop(n_parties, whitened):
    """Sums of the design as it is and A^-1, or of the whitened design X A^-1/2 (no per-variant congruence)."""
    rng = np.random.default_rng(42)
    sites = _site_data(rng, n_sites=n_parties, n=(120, 90, 150)[:n_parties])
    N = sum(s[2].size for s in sites)
    ainv = _public_ainv(sites)

    def job(ctx):
        g, x, y = sites[ctx.index]
        if whitened:
            design = SiteDesign(whiten(x, ainv), y)
            terms = site_terms(design.sums, variant_sums(g, design), None, N)
        else:
            design = SiteDesign(x, y)
            terms = site_terms(design.sums, variant_sums(g, design), ainv, N)
        pm = project_off_covariates(pool_terms(ctx, terms), neumann_terms(0.1))
        return [ctx.open(v, "test") for v in (pm.gmg, pm.gmy, pm.ymy)]

    run = run_local(job, n_parties, frac=FRAC)
    got = np.column_stack(run.results[0])
    want = _direct(sites)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    # correlation r per variant agrees to ~1e-5 (what the t statistic depends on)
    r_got = got[:, 1] / np.sqrt(got[:, 0] * got[:, 2])
    r_want = want[:, 1] / np.sqrt(want[:, 0] * want[:, 2])
    assert np.max(np.abs(r_got - r_want)) < 2e-5


def test_without_missing_calls_no_neumann_terms_needed():
    rng = np.random.default_rng(1)
    sites = _site_data(rng, n_sites=2, n=(80, 70), miss=0.0)
    N = sum(s[2].size for s in sites)
    ainv = _public_ainv(sites)

    def job(ctx):
        g, x, y = sites[ctx.index]
        design = SiteDesign(x, y)
        pm = project_off_covariates(pool_terms(ctx, site_terms(design.sums, variant_sums(g, design), ainv, N)), 0)
        return ctx.open(pm.gmy, "t")

    got = run_local(job, 2, frac=FRAC).results[0]
    np.testing.assert_allclose(got, _direct(sites)[:, 1], atol=2e-6)


def test_packed_congruence_is_c_transpose_d_c():
    """C' D_j C for D_j = scale unpack(packed_j) - base, against numpy on unpacked matrices, as upper triangles."""
    rng = np.random.default_rng(4)
    V, k = 300, 6
    d = rng.normal(size=(V, k, k))
    d = d + d.transpose(0, 2, 1)
    iu, ju = np.triu_indices(k)
    base = rng.normal(size=(k, k))
    base = base + base.T
    c = rng.normal(size=(k, k))
    got = packed_congruence(d[:, iu, ju], 0.5, base, c)
    want = np.einsum("ea,jeb,bf->jaf", c, 0.5 * d - base, c)
    assert got.shape == (V, k * (k + 1) // 2)
    np.testing.assert_allclose(got, want[:, iu, ju], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="expected"):
        packed_congruence(d[:, iu, ju][:, 1:], 0.5, base, c)


@pytest.mark.parametrize("k", [1, 4, 13])
def test_site_spectral_bound_is_the_grid_point_above_the_largest_eigenvalue(k):
    """The Cholesky search returns 2^(ceil(4 log2 lambda)/4) for lambda = max_j eig_max(D_j A^-1), against
    eigvalsh; a variant moved just past a grid point moves the bound one grid step up."""
    rng = np.random.default_rng(k)
    n, V = 400, 300
    x = np.column_stack([np.ones(n), rng.normal(size=(n, k - 1)) * rng.uniform(0.5, 3, k - 1)])
    a = x.T @ x / n
    ainv = np.linalg.inv(a)
    iu, ju = np.triu_indices(k)
    miss = np.zeros((V, iu.size))
    for j in range(V):
        rows = rng.choice(n, size=rng.integers(0, 15), replace=False)
        miss[j] = (x[rows].T @ x[rows])[iu, ju]
    sq = np.linalg.cholesky(ainv)

    def top(m):
        d = np.zeros((m.shape[0], k, k))
        d[:, iu, ju] = m
        d[:, ju, iu] = m
        return np.linalg.eigvalsh(np.einsum("ea,jef,fb->jab", sq, d / n, sq))[:, -1].max()

    lam = top(miss)
    want = 2.0 ** (np.ceil(4 * np.log2(lam)) / 4)
    assert site_spectral_bound(miss, ainv, n) == pytest.approx(want, rel=1e-12)
    # scale the worst variant just past the grid point: the bound is the next grid point
    worst = int(np.argmax([top(miss[j:j + 1]) for j in range(V)]))
    miss[worst] *= want * 1.01 / lam
    assert site_spectral_bound(miss, ainv, n) == pytest.approx(want * 2 ** 0.25, rel=1e-12)
    assert site_spectral_bound(np.zeros((5, iu.size)), ainv, n) == 0.0
    rows = np.setdiff1d([1, 7, 42, 199], [worst])  # a group of rows, read in place: as the same rows copied out
    assert site_spectral_bound(miss, ainv, n, rows=rows) == site_spectral_bound(miss[rows], ainv, n)
    assert site_spectral_bound(miss, ainv, n, rows=rows) < site_spectral_bound(miss, ainv, n)  # the pushed variant is not in it
    miss[3, 0] = np.nan  # a broken sum is refused, not looped on
    with pytest.raises(ValueError, match="non-finite"):
        site_spectral_bound(miss, ainv, n)


def test_whitening_a_standardised_design_keeps_the_intercept_column():
    """A = [[1, 0], [0, corr]] (intercept and centred covariates): X S has an exact column of ones and
    X S's Gram is I; the local sums then take the intercept's sums from the counts, as unwhitened."""
    rng = np.random.default_rng(5)
    c = rng.normal(size=(200, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    c = (c - c.mean(0)) / c.std(0)
    a = np.eye(4)
    a[1:, 1:] = np.corrcoef(c.T)
    x = np.column_stack([np.ones(200), c])
    ainv = np.linalg.inv(a)
    w = whiten(x, ainv)
    assert np.all(w[:, 0] == 1.0)
    np.testing.assert_allclose(w.T @ w / 200, np.eye(4), atol=1e-12)
    # the local sums of X S are S' (sums of X) S: what site_terms(..., ainv=None) relies on
    g = rng.binomial(2, 0.3, (30, 200)).astype(np.int8)
    g[rng.random(g.shape) < 0.05] = -1
    y = rng.normal(size=200)
    plain, white = variant_sums(g, SiteDesign(x, y)), variant_sums(g, SiteDesign(w, y))
    s = np.linalg.lstsq(x, w, rcond=None)[0]  # the S of X S
    np.testing.assert_allclose(white.xtg, plain.xtg @ s, atol=1e-9)
    iu, ju = np.triu_indices(4)
    full = np.zeros((30, 4, 4))
    full[:, iu, ju] = plain.miss_xx
    full[:, ju, iu] = plain.miss_xx
    np.testing.assert_allclose(white.miss_xx, np.einsum("ea,jef,fb->jab", s, full, s)[:, iu, ju], atol=1e-9)


@pytest.mark.parametrize("bound", [0.01, 0.2, 0.6])
def test_shifted_series_meets_its_tolerance(bound):
    """For symmetric B with eigenvalues anywhere in [-margin, bound + margin]: ||(I - B)^-1 - 1/(1-c)
    sum_(t<=T) ((B - cI)/(1-c))^t|| <= tol, with fewer terms than the unshifted series needs."""
    from cipherome.genomics.gwas.assoc import A_ROUNDING_MARGIN, SERIES_TOL, series_terms
    T, c = shifted_series(bound)
    assert T < series_terms(bound + A_ROUNDING_MARGIN)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q, _r = np.linalg.qr(rng.normal(size=(6, 6)))
        lam = rng.uniform(-A_ROUNDING_MARGIN, bound + A_ROUNDING_MARGIN, 6)
        lam[:2] = [-A_ROUNDING_MARGIN, bound + A_ROUNDING_MARGIN]  # both ends of the interval
        b = (q * lam) @ q.T
        bp = (b - c * np.eye(6)) / (1 - c)
        approx = sum(np.linalg.matrix_power(bp, t) for t in range(T + 1)) / (1 - c)
        assert np.linalg.norm(np.linalg.inv(np.eye(6) - b) - approx, 2) <= SERIES_TOL


def test_projection_with_the_studys_shifted_series_matches_least_squares():
    """The GWAS path: disclosed bounds -> per-variant (T, c) -> shifted pooled terms -> projection."""
    rng = np.random.default_rng(8)
    sites = _site_data(rng, n_sites=3, miss=0.08)
    N = sum(s[2].size for s in sites)
    ainv = _public_ainv(sites)
    k = sites[0][1].shape[1]

    def job(ctx):
        g, x, y = sites[ctx.index]
        design = SiteDesign(whiten(x, ainv), y)
        vs = variant_sums(g, design)
        obs = ctx.open(ctx.inputs_sum(vs.n_obs, shape=vs.n_obs.shape, frac=0), "obs").astype(np.int64)
        terms, shift = study_series_terms(ctx, vs.miss_xx, np.eye(k), N, N - obs, "bound")
        pm = project_off_covariates(pool_terms(ctx, site_terms(design.sums, vs, None, N), shift), terms)
        return [ctx.open(v, "test") for v in (pm.gmg, pm.gmy, pm.ymy)], terms, shift

    (got, terms, shift) = run_local(job, 3, frac=FRAC).results[0]
    assert np.all(shift > 0) and np.all(terms >= 1)
    np.testing.assert_allclose(np.column_stack(got), _direct(sites), atol=2e-6, rtol=1e-5)
