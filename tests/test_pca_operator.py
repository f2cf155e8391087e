"""The pooled PCA's local products: exact int8 products by AVX-512 VNNI, and the standardised operator on them.

The kernels of ``StandardisedCalls`` (int8 with VNNI, float32 table sums over base-3 codes, float32
BLAS) are compared with the float64 product of plink2's standardised matrix written out densely, on
shapes that leave partial tiles, quads, code chunks and column groups, with missing calls and dropped
variants.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas.pca_calls import OperatorCalls
from cipherome.genomics.gwas.pca_operator import DIGITS, KERNEL_ENV, StandardisedCalls, quantise, standardised_rows
from cipherome.genomics.io.packed import PackedCalls, pack_dosage
from cipherome.genomics.local import call_tables, vnni

needs_vnni = pytest.mark.skipif(not vnni.available(), reason="CPU without AVX-512 VNNI")


@needs_vnni
@pytest.mark.parametrize("rows,k,c", [(1, 1, 1), (7, 5, 3), (13, 9, 70), (6, 4, 64), (25, 4 * vnni.CHUNK_QUADS + 7, 60),
                                      (100, 16, 129), (20, 33, 40), (19, 101, 8), (31, 64, 24), (6, 8, 17),
                                      (13, 4 * vnni.CHUNK_QUADS + 3, 44)])
def test_matmul_u8s8_is_exact(rows, k, c):
    rng = np.random.default_rng(rows * 1000 + k)
    a = rng.integers(0, 256, (rows, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (k, c), dtype=np.int8)
    assert np.array_equal(vnni.matmul_u8s8(a, b), a.astype(np.int64) @ b.astype(np.int64))


@needs_vnni
@pytest.mark.parametrize("lo,hi", [(0, 40), (3, 41), (64, 133), (7, 8), (100, 100)])
def test_matmul_u8s8_of_a_column_range_reads_the_view(lo, hi):
    """A column range of A (rows contiguous, further apart than their length) as used by the
    pooled PCA's right product per range of variants: exact, including ranges that start off a quad."""
    rng = np.random.default_rng(lo + hi)
    a = rng.integers(0, 256, (29, 140), dtype=np.uint8)
    b = rng.integers(-128, 128, (hi - lo, 24), dtype=np.int8)
    view = a[:, lo:hi]
    assert not view.flags.c_contiguous or hi - lo in (0, 140)
    assert np.array_equal(vnni.matmul_u8s8(view, b), view.astype(np.int64) @ b.astype(np.int64))


def test_matmul_u8s8_refuses_wrong_types():
    with pytest.raises(ValueError, match="matmul_u8s8"):
        vnni.matmul_u8s8(np.zeros((3, 4), np.int8), np.zeros((4, 2), np.int8))
    with pytest.raises(ValueError, match="matmul_u8s8"):
        vnni.matmul_u8s8(np.zeros((3, 4), np.uint8), np.zeros((5, 2), np.int8))


def test_available_honours_the_switch(monkeypatch):
    monkeypatch.setenv(vnni.DISABLE_ENV, "1")
    assert not vnni.available()


def test_group_width_follows_the_columns():
    assert [vnni.group_width(c) for c in (1, 8, 9, 40, 60, 64, 65, 200)] == [8, 8, 16, 40, 64, 64, 64, 64]
    assert vnni.packed_shape(12, 40) == (1, 3, 40, 4) and vnni.packed_shape(8, 130) == (3, 2, 64, 4)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_quantise_keeps_8d_bits_per_column(d):
    rng = np.random.default_rng(3)
    y = rng.standard_normal((500, 4)) * np.array([1.0, 1e-6, 1e6, 0.0])
    digits, scale = quantise(y, digits=d)
    assert digits.dtype == np.int8 and digits.shape == (500, 4 * d) and scale[3] == 0.0
    dd = digits.astype(np.int64)
    back = sum(256 ** t * dd[:, 4 * t:4 * t + 4] for t in range(d)) * scale
    assert np.all(np.abs(back - y) <= 0.5 * scale + 1e-300)
    assert np.all(np.abs(back - y).max(axis=0)[:3] / np.abs(y).max(axis=0)[:3] < 2.0 ** -(8 * d - 1))
    assert np.all(np.abs(back - y).max(axis=0)[:3] / np.abs(y).max(axis=0)[:3] > 2.0 ** -(8 * d + 4))  # not finer


def test_quantise_refuses_digit_counts_it_cannot_sum_exactly():
    for d in (0, 5):
        with pytest.raises(ValueError, match="digits"):
            quantise(np.ones((3, 2)), digits=d)


def _study(m, n, seed, missing=0.05):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, (m, n)).astype(np.int8)
    g[rng.random((m, n)) < missing] = -1
    p = np.clip(rng.random(m), 0.01, 0.99)
    keep = rng.random(m) > 0.1
    s = np.where(keep, 1.0 / np.sqrt(2.0 * p * (1.0 - p)), 0.0)
    dense = np.where(g >= 0, (g - 2.0 * p[:, None]) * s[:, None], 0.0)
    return g, p, keep, dense, rng


#: relative error of a product (largest |error| / largest |entry|) by kernel: float32 (SGEMM or tables),
#: and int8 with d digits
_REL = {None: 1e-6, 1: 2e-2, 2: 1e-4, 3: 1e-6, 4: 1e-6}
_KERNELS = [pytest.param("vnni", DIGITS, marks=needs_vnni), pytest.param("vnni", 1, marks=needs_vnni),
            pytest.param("vnni", 3, marks=needs_vnni), pytest.param("vnni", 4, marks=needs_vnni),
            ("tables", DIGITS), ("float", DIGITS)]


def _operator(monkeypatch, g, p, keep, kernel, digits=DIGITS):
    monkeypatch.setenv(KERNEL_ENV, "" if kernel == "vnni" else kernel)
    op = StandardisedCalls(g.copy(), p, keep, digits=digits)
    assert op.kernel == kernel and op.int8 == (kernel == "vnni")
    return op


@pytest.mark.parametrize("kernel,digits", _KERNELS)
@pytest.mark.parametrize("m,n,b", [(37, 23, 5), (500, 301, 20), (1201, 999, 21), (64, 70, 30), (3, 2, 1)])
def test_standardised_products_match_the_dense_matrix(monkeypatch, kernel, digits, m, n, b):
    g, p, keep, dense, rng = _study(m, n, m + n)
    op = _operator(monkeypatch, g, p, keep, kernel, digits)
    y, u = rng.standard_normal((n, b)), rng.standard_normal((m, b))
    for got, ref in [(op.left(y), dense @ y), (op.right(u), dense.T @ u)]:
        assert np.abs(got - ref).max() <= _REL[digits if kernel == "vnni" else None] * np.abs(ref).max()


@pytest.mark.parametrize("kernel", [pytest.param("vnni", marks=needs_vnni), "tables", "float"])
def test_products_by_ranges_of_variants_add_up_to_the_whole(monkeypatch, kernel):
    """``left_rows`` of a partition of the variants stack to ``left``; ``right_rows`` of it (each range
    quantised on its own; ranges that split a group of four calls) add up to ``right`` within the products'
    error (``pca_pooled.apply``)."""
    m, n, b = 1201, 333, 12
    g, p, keep, dense, rng = _study(m, n, 5)
    op = _operator(monkeypatch, g, p, keep, kernel)
    y, u = rng.standard_normal((n, b)), rng.standard_normal((m, b))
    ranges = [slice(0, 256), slice(256, 643), slice(643, 1200), slice(1200, 1201)]
    prep = op.left_input(y)
    stacked, left = np.vstack([op.left_rows(prep, r) for r in ranges]), op.left(y)
    if kernel != "float":  # the same sums row by row: the same numbers
        np.testing.assert_array_equal(stacked, left)
    else:  # SGEMM blocks a range differently from the whole: float32 rounding
        assert np.abs(stacked - left).max() <= 1e-6 * np.abs(left).max()
    whole = sum(op.right_rows(u[r], r) for r in ranges)
    ref = dense.T @ u
    tol = _REL[DIGITS if kernel == "vnni" else None] * np.abs(ref).max()
    assert np.abs(whole - ref).max() <= tol and np.abs(op.right(u) - ref).max() <= tol


@pytest.mark.parametrize("r,c,b,start,rows", [(1, 1, 1, 0, (0, 1)), (7, 13, 3, 0, (0, 7)), (50, 101, 12, 8, (2, 49)),
                                              (33, 164, 20, 5, (0, 33)), (5, 257, 32, 63, (1, 4)), (9, 64, 4, 64, (3, 3))])
def test_table_product_matches_numpy(r, c, b, start, rows):
    """``call_tables.product`` on calls from any start (a group split), row ranges and widths 4 to 32: G Y in
    float32, the padding columns zero."""
    rng = np.random.default_rng(r * c + b)
    g = rng.integers(0, 3, (r, c)).astype(np.uint8)
    y = rng.standard_normal((c - start, b)).astype(np.float32)
    got = call_tables.product(call_tables.pack(g), y, slice(*rows), start)
    ref = g[slice(*rows), start:].astype(np.float64) @ y.astype(np.float64)
    assert got.shape == (ref.shape[0], -(-b // 4) * 4) and not got[:, b:].any()
    assert np.abs(got[:, :b] - ref).max(initial=0.0) <= 1e-6 * max(1.0, np.abs(ref).max(initial=0.0))


def test_table_product_refuses_what_it_cannot_sum():
    codes = call_tables.pack(np.zeros((3, 10), np.uint8))
    with pytest.raises(ValueError, match="at most 32 columns"):
        call_tables.product(codes, np.zeros((10, 33), np.float32))
    with pytest.raises(ValueError, match="codes from pack"):
        call_tables.product(codes[0], np.zeros((10, 3), np.float32))


def test_dosages_use_the_float_path():
    g, p, keep, dense, rng = _study(40, 30, 7)
    dos = np.where(g >= 0, g.astype(np.float64), np.nan)
    op = StandardisedCalls(dos, p, keep, int8_products=True)
    assert not op.int8 and op.kernel == "float"
    y = rng.standard_normal((30, 4))
    assert np.abs(op.left(y) - dense @ y).max() <= 1e-5 * np.abs(dense @ y).max()
    assert np.allclose(standardised_rows(dos, p, keep), dense, atol=1e-6)


@pytest.mark.parametrize("m,n", [(1, 1), (7, 3), (64, 8), (65, 9), (130, 13), (999, 333), (128, 129), (257, 4),
                                 (200, 1030)])
@pytest.mark.parametrize("missing", [0.0, 0.05, 1.0])
def test_operator_calls_from_packed_and_int8_match_numpy(m, n, missing):
    """G, G', the missing-call CSR and the counts, from packed .bed rows and from int8 calls (in place),
    on shapes that leave partial bands, words and bytes (the .bed padding codes decode as ALT homozygotes)."""
    rng = np.random.default_rng(m * 7 + n)
    g = rng.integers(0, 3, (m, n)).astype(np.int8)
    g[rng.random((m, n)) < missing] = -1
    called = g >= 0
    want_g = np.where(called, g, 0).astype(np.uint8)
    rows, cols = np.nonzero(~called)
    want_ptr = np.concatenate([[0], np.cumsum((~called).sum(axis=1))])
    for calls, codes in [(PackedCalls(pack_dosage(g), n), False), (g.copy(), False),
                         (PackedCalls(pack_dosage(g), n), True), (g.copy(), True)]:
        got = OperatorCalls.build(calls, codes=codes)
        if codes:  # base-3 codes of G and G', built band by band
            assert got.codes_layout
            assert np.array_equal(got.g, call_tables.pack(want_g)) and np.array_equal(got.gt, call_tables.pack(want_g.T))
        else:
            assert np.array_equal(got.g, want_g) and np.array_equal(got.gt, want_g.T)
        assert np.array_equal(got.miss_ptr, want_ptr) and np.array_equal(got.miss_idx, cols)
        assert np.array_equal(got.alt, want_g.sum(axis=1)) and np.array_equal(got.obs, called.sum(axis=1))
        assert np.array_equal(got.missing, (~called).sum(axis=0))
    with pytest.raises(ValueError, match="int8"):
        OperatorCalls.build(g.astype(np.float32))


def test_pca_calls_of_a_bed_site_match_its_int8_read(tmp_path):
    """The pooled PCA reads a .bed site through ``read_calls`` (packed rows, REF/ALT swapped where the study
    orientation differs, samples masked): the same operator calls as from its int8 ``read``."""
    from types import SimpleNamespace

    from cipherome.genomics.gwas.variants import StudyVariants
    from cipherome.genomics.io.bed import BedRows
    from cipherome.genomics.io.site_files import BedCalls

    rng = np.random.default_rng(3)
    m, n = 150, 37
    g = rng.integers(0, 3, (m, n)).astype(np.int8)
    g[rng.random((m, n)) < 0.05] = -1
    packed = pack_dosage(g)
    path = tmp_path / "s.bed"
    path.write_bytes(bytes([0x6C, 0x1B, 0x01]) + packed.tobytes())
    site = SimpleNamespace(read=BedCalls(BedRows(path, m, packed.shape[1]), n), read_dosage=None)
    sv = StudyVariants(local_index=rng.permutation(m)[:120], flip=rng.random(120) < 0.4,
                       lead_index=np.full(120, -1), dropped_duplicates=0)
    idx = np.sort(rng.choice(120, 90, replace=False))
    for mask in (np.ones(n, bool), rng.random(n) < 0.7):
        packed_calls, int8_calls = sv.read_calls(site, idx, mask), sv.read(site, idx, mask)
        assert isinstance(packed_calls, PackedCalls)
        a, b = OperatorCalls.build(packed_calls), OperatorCalls.build(int8_calls)
        for name in ("g", "gt", "miss_ptr", "miss_idx", "alt", "obs", "missing"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
