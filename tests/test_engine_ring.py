"""Ring, fixed-point encoding, PRG and the numba matmul kernel against numpy."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cipherome.mpc.kernels import beaver_combine, pack_upper, ring_matmul, ring_matmul_sym, unpack_upper
from cipherome.mpc.prg import PRG, derive_seed
from cipherome.mpc.ring import decode, encode, ring_scalar, signed, to_ring

FRAC = 20
LIMIT = 2.0 ** (62 - FRAC)

reals = st.floats(min_value=-LIMIT * 0.999, max_value=LIMIT * 0.999, allow_nan=False)


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5), elements=reals))
def test_encode_decode_roundtrip(x):
    got = decode(encode(x, FRAC), FRAC)
    assert got.shape == x.shape
    assert np.all(np.abs(got - x) <= 2.0 ** -(FRAC + 1) + 1e-12 * np.abs(x))


def test_encode_rejects_out_of_range():
    with pytest.raises(OverflowError):
        encode(np.array([LIMIT * 1.01]), FRAC)
    with pytest.raises(OverflowError):
        encode(np.array([-LIMIT * 1.01]), FRAC)


@given(hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=6)))
def test_integers_are_exact_and_wrap(x):
    u = to_ring(x)
    assert u.dtype == np.uint64
    np.testing.assert_array_equal(signed(u), x)
    np.testing.assert_array_equal(decode(u, 0), x)
    # ring arithmetic is numpy uint64 arithmetic: (x + y) - y == x always, even on overflow
    y = to_ring(np.full(x.shape, 2**62 + 12345))
    np.testing.assert_array_equal(signed((u + y) - y), x)


def test_ring_scalar_negative_and_large():
    assert ring_scalar(-1) == np.uint64(2**64 - 1)
    assert ring_scalar(2**64 + 5) == np.uint64(5)


def test_prg_is_deterministic_and_seed_separated():
    a, b, c = PRG(b"s" * 16), PRG(b"s" * 16), PRG(derive_seed(b"s" * 16, "other"))
    x, y, z = a.ring((3, 4)), b.ring((3, 4)), c.ring((3, 4))
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)
    # successive draws continue the stream
    np.testing.assert_array_equal(a.ring(5), b.ring(5))
    assert a.ring(0).shape == (0,)


def test_prg_bits_are_balanced():
    bits = PRG(b"k" * 16).bits(200_000)
    assert set(np.unique(bits)) == {0, 1}
    assert abs(bits.mean() - 0.5) < 0.01
    words = PRG(b"k" * 16).ring(100_000)
    top = (words >> np.uint64(63)).astype(float)
    assert abs(top.mean() - 0.5) < 0.01


@given(
    st.integers(0, 6), st.integers(0, 6), st.integers(0, 6), st.integers(0, 3),
)
def test_ring_matmul_matches_numpy(p, q, r, batch):
    rng = np.random.default_rng(p * 100 + q * 10 + r)
    if batch:
        a = rng.integers(0, 2**64, (batch, p, q), dtype=np.uint64)
        b = rng.integers(0, 2**64, (batch, q, r), dtype=np.uint64)
    else:
        a = rng.integers(0, 2**64, (p, q), dtype=np.uint64)
        b = rng.integers(0, 2**64, (q, r), dtype=np.uint64)
    np.testing.assert_array_equal(ring_matmul(a, b), a @ b)


def test_ring_matmul_vectors_and_errors():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**64, (4, 3), dtype=np.uint64)
    v = rng.integers(0, 2**64, 3, dtype=np.uint64)
    np.testing.assert_array_equal(ring_matmul(a, v), a @ v)
    np.testing.assert_array_equal(ring_matmul(v, a.T), v @ a.T)
    with pytest.raises(ValueError):
        ring_matmul(a, a)


def test_beaver_combine_matches_formula():
    rng = np.random.default_rng(2)
    c, a, b, e, f = (rng.integers(0, 2**64, (2, 3), dtype=np.uint64) for _ in range(5))
    np.testing.assert_array_equal(beaver_combine(c, a, b, e, f, False), c + e * b + a * f)
    np.testing.assert_array_equal(beaver_combine(c, a, b, e, f, True), c + e * b + a * f + e * f)


def test_product_with_packed_symmetric_matrices_wraps_like_the_unpacked_product():
    """ring_matmul_sym(a, s) = a @ unpack_upper(s) modulo 2^64 (full-range values, so products wrap)."""
    rng = np.random.default_rng(7)
    t, p, k = 9, 2, 6
    a = rng.integers(0, 2**64, (t, p, k), dtype=np.uint64)
    s = rng.integers(0, 2**64, (t, k * (k + 1) // 2), dtype=np.uint64)
    np.testing.assert_array_equal(ring_matmul_sym(a, s), ring_matmul(a, unpack_upper(s, k)))
    with pytest.raises(ValueError, match="incompatible"):
        ring_matmul_sym(a, s[:, 1:])


@pytest.mark.parametrize("dtype", [np.uint64, np.int64, np.float64])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_upper_triangles_pack_and_unpack_in_triu_order(dtype, lead):
    """pack_upper is x[..., iu, ju] with np.triu_indices; unpack_upper its symmetric inverse (ring shares included)."""
    k = 4
    rng = np.random.default_rng(len(lead))
    x = rng.integers(0, 2**63, (*lead, k, k)).astype(dtype)
    x = np.triu(x) + np.swapaxes(np.triu(x, 1), -1, -2)
    iu, ju = np.triu_indices(k)
    packed = pack_upper(x)
    np.testing.assert_array_equal(packed, x[..., iu, ju])
    assert packed.dtype == x.dtype
    np.testing.assert_array_equal(unpack_upper(packed, k), x)
    with pytest.raises(ValueError, match="10 elements"):
        unpack_upper(packed[..., :-1], k)


@pytest.mark.parametrize("nb", range(1, 8))
def test_low_bytes_round_trip_into_a_sum_or_xor(nb):
    from cipherome.mpc.kernels import add_low_bytes, low_bytes

    rng = np.random.default_rng(nb)
    x = rng.integers(0, 2**63, 1001, dtype=np.int64).view(np.uint64) & np.uint64((1 << (8 * nb)) - 1)
    wire = low_bytes(x, nb)
    assert wire.dtype == np.uint8 and np.array_equal(wire, x.view(np.uint8).reshape(-1, 8)[:, :nb].ravel())
    base = rng.integers(0, 2**63, x.size, dtype=np.int64).view(np.uint64)
    for xor in (False, True):
        total = base.copy()
        add_low_bytes(total, np.concatenate([np.zeros(3, np.uint8), wire])[3:], nb, xor)  # an unaligned slice
        assert np.array_equal(total, (base ^ x) if xor else (base + x))
    with pytest.raises(ValueError, match="add_low_bytes"):
        add_low_bytes(base.copy(), wire[:-1], nb)
