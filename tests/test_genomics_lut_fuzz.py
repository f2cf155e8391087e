"""The byte-table kernels of ``genomics.local.lut`` (hand-written LLVM intrinsics) against plain numpy.

The kernels load unaligned 64-bit words, vector rows of tables and rows of weights by
pointer arithmetic; these property tests drive them with arbitrary shapes (row widths
that are and are not multiples of 8 bytes, padding samples, column counts around the
4-wide vectors, chunks smaller than a row) and compare every output with a direct
decoding of the 2-bit codes.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cipherome.genomics.local import lut

# code -> (hom-ref, het, hom-alt, missing) column of count_codes
_COUNT_COLUMN = np.array([2, 3, 1, 0])  # 0b00 hom-ALT, 0b01 missing, 0b10 het, 0b11 hom-REF


def _codes(packed: np.ndarray) -> np.ndarray:
    """(m, 4w) int: the 2-bit code of each sample, sample 4j + t in bits 2t of byte j."""
    p = packed.astype(np.int64)
    return np.stack([(p >> (2 * t)) & 3 for t in range(4)], axis=2).reshape(p.shape[0], 4 * p.shape[1])


@st.composite
def _blocks(draw):
    m = draw(st.integers(0, 9))
    w = draw(st.integers(1, 21))
    n = draw(st.integers(max(0, 4 * w - 3), 4 * w))  # the last byte may hold padding samples
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, size=(m, w), dtype=np.uint8)
    return rng, packed, n


@settings(max_examples=60, deadline=None)
@given(_blocks(), st.integers(1, 3))
def test_count_codes_matches_numpy(block, groups):
    rng, packed, n = block
    include = rng.random((groups, n)) < 0.7
    got = lut.count_codes(packed, include)
    codes = _codes(packed)[:, :n]
    want = np.zeros((packed.shape[0], groups, 4), dtype=np.int64)
    for g in range(groups):
        for code in range(4):
            want[:, g, _COUNT_COLUMN[code]] = ((codes == code) & include[g]).sum(axis=1)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(_blocks(), st.integers(1, 19), st.booleans())
def test_weighted_code_sums_matches_numpy(block, columns, own_fcode):
    rng, packed, n = block
    weights = rng.normal(size=(n, columns))
    weights[rng.random(n) < 0.2] = 0.0  # dropped samples
    fcode = rng.normal(size=(4, columns)) if own_fcode else None
    got = lut.weighted_code_sums(packed, weights, fcode)
    f = np.broadcast_to(lut.DOSAGE_OF_CODE[:, None], (4, columns)) if fcode is None else fcode
    codes = _codes(packed)[:, :n]
    want = np.einsum("vic,ic->vc", f[codes], weights) if codes.size else np.zeros((packed.shape[0], columns))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    if fcode is None:  # the kernel layout that callers keep (pad_rows): same sums, padding columns 0
        padded = lut.weighted_code_sums(packed, lut.pad_rows(weights, packed.shape[1]))
        np.testing.assert_array_equal(padded[:, :columns], got)
        assert not padded[:, columns:].any()


@settings(max_examples=60, deadline=None)
@given(_blocks(), st.integers(1, 13))
def test_missing_row_sums_matches_numpy(block, columns):
    rng, packed, n = block
    include = rng.random(n) < 0.8
    rows = rng.normal(size=(n, columns))
    sums, count = lut.missing_row_sums(packed, include, rows)
    miss = (_codes(packed)[:, :n] == 1) & include
    np.testing.assert_allclose(sums, miss.astype(float) @ rows, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(count, miss.sum(axis=1))
