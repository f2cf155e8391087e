"""Row sums picked by a sparse 0/1 matrix (``genomics.local.sparse_rows``) against a dense reference."""
from __future__ import annotations

import numpy as np
import pytest

from cipherome.genomics.local import sparse_rows as sr


def _csr(rng, m, n, density):
    """A random m x n 0/1 matrix in CSR form with some empty rows, and its dense copy."""
    dense = rng.random((m, n)) < density
    dense[::7] = False
    ptr = np.concatenate([[0], np.cumsum(dense.sum(axis=1))]).astype(np.int64)
    idx = np.nonzero(dense)[1].astype(np.int32)
    return dense.astype(np.float64), ptr, idx


@pytest.mark.parametrize("b", [1, 12, 16, 20, 40])
def test_gather_and_scatter_match_dense_products(b):
    rng = np.random.default_rng(b)
    s, ptr, idx = _csr(rng, 300, 90, 0.05)
    w = sr.padded_width(b)
    assert w % sr.LANES == 0 and w >= b
    x = np.zeros((90, w), np.float32)
    x[:, :b] = rng.standard_normal((90, b))
    got = sr.gather_rows(x, ptr, idx)
    assert got.shape == (300, w)
    np.testing.assert_allclose(got, s @ x.astype(np.float64), rtol=1e-5, atol=1e-5)
    assert not got[::7].any()  # empty rows sum to zero
    v = np.zeros((300, w), np.float32)
    v[:, :b] = rng.standard_normal((300, b))
    out = np.ones((90, w), np.float32)
    sr.scatter_rows(v, ptr, idx, out)
    np.testing.assert_allclose(out, 1.0 + s.T @ v.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_a_range_of_rows_reads_the_shared_index():
    """ptr[lo:hi + 1] (offsets into the whole idx) gives rows lo..hi, as the PCA's variant ranges use it."""
    rng = np.random.default_rng(3)
    s, ptr, idx = _csr(rng, 200, 50, 0.1)
    x = rng.standard_normal((50, 16)).astype(np.float32)
    whole = sr.gather_rows(x, ptr, idx)
    np.testing.assert_array_equal(sr.gather_rows(x, ptr[60:141], idx), whole[60:140])
    out = np.zeros((50, 16), np.float32)
    sr.scatter_rows(np.ones((80, 16), np.float32), ptr[60:141], idx, out)
    np.testing.assert_allclose(out[:, 0], s[60:140].sum(axis=0))


def test_bad_layouts_are_refused():
    ptr, idx = np.zeros(3, np.int64), np.zeros(0, np.int32)
    with pytest.raises(ValueError, match="multiple of 16"):
        sr.gather_rows(np.zeros((4, 12), np.float32), ptr, idx)
    with pytest.raises(ValueError, match="float32"):
        sr.gather_rows(np.zeros((4, 16)), ptr, idx)
    with pytest.raises(ValueError, match="int64"):
        sr.gather_rows(np.zeros((4, 16), np.float32), ptr.astype(np.int32), idx)
    with pytest.raises(ValueError, match="rows of V"):
        sr.scatter_rows(np.zeros((3, 16), np.float32), ptr, idx, np.zeros((4, 16), np.float32))
