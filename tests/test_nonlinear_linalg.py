"""QR of tall shared matrices and eigenpairs of small symmetric ones, against numpy, with 2 and 3 parties.

QR (Cholesky-QR2): |Q^T Q - I| <= 1e-4 and |QR - A| <= 1e-4 max|A|, R upper triangular.
eigh_top: for spectra with gaps lambda_(i+1)/lambda_i <= 0.7 the top eigenvectors have
|corr| >= 0.999 with numpy's and the eigenvalues are within 1e-4 relative; order decreasing.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cipherome.mpc.local import run_local
from cipherome.protocols import linalg as L

PARTIES = st.sampled_from([2, 3])


def _matrix(seed, n, k, mix=0.5):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, k)) @ (np.eye(k) + mix * rng.standard_normal((k, k)))
    return a / a.std(axis=0)


def _run_qr(a, n_parties):
    def job(ctx):
        x = ctx.input("p0", a if ctx.me == "p0" else None, shape=a.shape, frac=20)
        q, r = L.qr(x)
        return ctx.open(q, "q"), ctx.open(r, "r")

    return run_local(job, n_parties).results[0]


def _check_qr(a, q, r):
    k = a.shape[1]
    assert np.abs(q.T @ q - np.eye(k)).max() <= 1e-4
    assert np.abs(q @ r - a).max() <= 1e-4 * np.abs(a).max()
    assert np.all(np.tril(r, -1) == 0)
    # same factorisation as numpy up to column signs
    q0, r0 = np.linalg.qr(a)
    s = np.sign(np.diag(r0)) * np.sign(np.diag(r))
    assert np.abs(q0 * s - q).max() <= 1e-3


@settings(max_examples=8)
@given(PARTIES, st.integers(0, 10**6), st.integers(1, 8), st.integers(0, 400))
def test_qr_small(n_parties, seed, k, extra):
    a = _matrix(seed, k + 20 + extra, k)
    assume(np.linalg.cond(a) <= 300)  # the stated range at f = 20 (kappa^2 2^-20 < 0.1)
    q, r = _run_qr(a, n_parties)
    _check_qr(a, q, r)


def test_qr_ill_conditioned():
    """kappa(A) ~ 300: pass 1 alone loses orthogonality, the correction pass restores it."""
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.standard_normal((2000, 6)))
    v, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = (u * np.geomspace(1, 1 / 300, 6)) @ v.T * np.sqrt(2000)
    q, r = _run_qr(a, 3)
    _check_qr(a, q, r)


@pytest.mark.slow
def test_qr_10000_by_20():
    a = _matrix(1, 10000, 20)
    q, r = _run_qr(a, 3)
    _check_qr(a, q, r)


def _spectrum(seed, k, K, ratio):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((k, k)))
    lam = np.r_[50 * ratio ** np.arange(K + 1), rng.uniform(0, 50 * ratio ** (K + 1), k - K - 1)]
    return (u * lam) @ u.T, lam, u


@settings(max_examples=6)
@given(PARTIES, st.integers(0, 10**6), st.integers(6, 16), st.sampled_from([0.5, 0.7]))
def test_eigh_top(n_parties, seed, k, ratio):
    K = 4
    c, lam, u = _spectrum(seed, k, K, ratio)

    def job(ctx):
        x = ctx.input("p0", c if ctx.me == "p0" else None, shape=c.shape, frac=20)
        vals, vecs = L.eigh_top(x, K)
        return ctx.open(vals, "vals"), ctx.open(vecs, "vecs")

    vals, vecs = run_local(job, n_parties).results[0]
    np.testing.assert_allclose(vals, lam[:K], rtol=1e-4)
    assert np.all(np.diff(vals) < 0)
    for i in range(K):
        assert abs(vecs[:, i] @ u[:, i]) >= 0.999
        assert abs(np.linalg.norm(vecs[:, i]) - 1) <= 1e-4


def test_eigh_top_30():
    c, lam, u = _spectrum(11, 30, 10, 0.7)

    def job(ctx):
        x = ctx.input("p0", c if ctx.me == "p0" else None, shape=c.shape, frac=20)
        vals, vecs = L.eigh_top(x, 10)
        return ctx.open(vals, "vals"), ctx.open(vecs, "vecs")

    vals, vecs = run_local(job, 3).results[0]
    corr = np.abs(np.sum(vecs * u[:, :10], axis=0))
    assert corr.min() >= 0.999
    np.testing.assert_allclose(vals, lam[:10], rtol=1e-4)
