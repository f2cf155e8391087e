"""Comparison, equality, selection and bit decomposition against numpy, with 2 and 3 parties.

Comparisons are exact: over the whole ring for bits=64 (including 0, +-1, and the
extremes -2^63 and 2^63 - 1) and inside [-2^(k-1), 2^(k-1)) for the cheaper
small-range variants. Fixed-point comparisons are exact on the encoded values
(differences of one unit in the last place included).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cipherome.mpc.local import run_local
from cipherome.mpc.shares import Shared
from cipherome.protocols import bits as B
from cipherome.protocols import compare as C
from tests.mpc_helpers import run_shared

PARTIES = st.sampled_from([2, 3])
I64 = st.integers(-(2**63), 2**63 - 1)
EDGES = np.array([0, 1, -1, 2, -2, -(2**63), 2**63 - 1, -(2**63) + 1, 2**62, -(2**62)], dtype=np.int64)
ULP = 2.0**-20


def _ints(draw_arr):
    return np.concatenate([EDGES, draw_arr])


@given(PARTIES, hnp.arrays(np.int64, st.integers(0, 40), elements=I64))
def test_ltz_full_ring_exact(n, x):
    x = _ints(x)
    got, _ = run_shared(lambda ctx, a: C.ltz(a), [x], n)
    np.testing.assert_array_equal(got, (x < 0).astype(np.int64))


@given(PARTIES, hnp.arrays(np.int64, st.integers(0, 40), elements=I64))
def test_eqz_full_ring_exact(n, x):
    x = _ints(np.where(np.arange(x.size) % 3 == 0, 0, x))
    got, _ = run_shared(lambda ctx, a: C.eqz(a), [x], n)
    np.testing.assert_array_equal(got, (x == 0).astype(np.int64))


@given(PARTIES, st.integers(2, 64), st.data())
def test_small_range_exact(n, k, data):
    lo, hi = -(2 ** (k - 1)), 2 ** (k - 1) - 1
    x = data.draw(hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(lo, hi)))
    x = np.concatenate([[lo, hi, 0, max(lo, -1), min(hi, 1)], x]).astype(np.int64)
    lt, _ = run_shared(lambda ctx, a: C.ltz(a, k), [x], n)
    eq, _ = run_shared(lambda ctx, a: C.eqz(a, k), [x], n)
    np.testing.assert_array_equal(lt, (x < 0).astype(np.int64))
    np.testing.assert_array_equal(eq, (x == 0).astype(np.int64))


@given(PARTIES, hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e6, 1e6)), st.integers(-3, 3))
def test_fixed_point_relations(n, x, delta):
    """lt/le/gt/ge/eq of shared x and y = x + delta ulp (shared and public), exact on the encodings."""
    y = x + delta * ULP
    xe, ye = np.rint(x * 2**20), np.rint(y * 2**20)

    def fn(ctx, a, b):
        return Shared(ctx, np.stack([C.lt(a, b).data, C.le(a, b).data, C.gt(a, b).data, C.ge(a, b).data,
                                     C.eq(a, b).data, C.lt(a, y).data, C.ge(x, b).data]), 0)

    got, _ = run_shared(fn, [x, y], n)
    want = np.stack([xe < ye, xe <= ye, xe > ye, xe >= ye, xe == ye, xe < ye, xe >= ye]).astype(np.int64)
    np.testing.assert_array_equal(got, want)


@given(PARTIES, hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e5, 1e5)))
def test_sign_abs_select_min_max(n, x):
    x = np.concatenate([x, [0.0, ULP, -ULP]])
    y = x[::-1].copy()
    xe, ye = np.rint(x * 2**20) / 2**20, np.rint(y * 2**20) / 2**20

    def fn(ctx, a, b):
        c = C.lt(a, b)
        return Shared(ctx, np.stack([C.sign(a).with_frac(20).data, C.abs(a).data, C.select(c, b, a).data,
                                     C.minimum(a, b).data, C.maximum(a, b).data]), 20)

    got, _ = run_shared(fn, [x, y], n)
    np.testing.assert_array_equal(got[0], np.sign(xe))
    np.testing.assert_array_equal(got[1], np.abs(xe))
    np.testing.assert_array_equal(got[2], np.maximum(xe, ye))
    np.testing.assert_array_equal(got[3], np.minimum(xe, ye))
    np.testing.assert_array_equal(got[4], np.maximum(xe, ye))


@given(PARTIES, hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
                           elements=st.floats(-1e3, 1e3)), st.integers(0, 1))
def test_min_max_reduction(n, x, axis):
    xe = np.rint(x * 2**20) / 2**20
    got_min, _ = run_shared(lambda ctx, a: C.min(a, axis=axis, bits=40), [x], n)
    got_max, _ = run_shared(lambda ctx, a: C.max(a, axis=axis, bits=40), [x], n)
    np.testing.assert_array_equal(got_min, xe.min(axis=axis))
    np.testing.assert_array_equal(got_max, xe.max(axis=axis))


@given(PARTIES, hnp.arrays(np.int64, st.integers(1, 20), elements=I64), st.sampled_from([8, 33, 64]))
def test_bit_decompose(n, x, k):
    x = _ints(x)
    got, _ = run_shared(lambda ctx, a: B.bit_decompose(a, k), [x], n)
    want = (x.view(np.uint64)[:, None] >> np.arange(k, dtype=np.uint64)) & np.uint64(1)
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_five_parties_and_threshold_constant_rounds():
    """A threshold over a vector takes the same rounds for 10 and 10^4 values (5 parties too)."""
    rounds = []
    for size in (10, 10_000):
        x = np.random.default_rng(size).uniform(-10, 10, size)
        got, run = run_shared(lambda ctx, a: C.threshold(a, 0.5), [x], 5)
        np.testing.assert_array_equal(got, (np.rint(x * 2**20) >= 0.5 * 2**20).astype(np.int64))
        rounds.append(run.rounds())
    assert rounds[0] == rounds[1] == 1 + 7 + 1  # setup + ltz + the opening of the result


def test_comparison_openings_are_masked():
    """Inside a comparison only masked values are opened; the ledger's only disclosure is the result."""
    x = np.array([-3.0, 0.0, 2.5])
    _, run = run_shared(lambda ctx, a: C.ltz(a), [x], 3)
    for rep in run.reports.values():
        kinds = {(e["label"], e["kind"]) for e in rep["ledger"]}
        assert all(kind == "masked" for label, kind in kinds if label != "result")
        assert {label for label, _ in kinds} <= {"ltz", "ltz.and", "ltz.b2a", "result"}


def test_ltz_traffic_per_element():
    """Bytes per element of ltz (3 parties, 64 bits): the opening of c plus the packed circuit bits."""
    size = 3200
    x = np.random.default_rng(1).uniform(-1, 1, size)

    def job(ctx):
        a = ctx.input("p0", x if ctx.me == "p0" else None, shape=x.shape, frac=20)
        b0 = ctx.transport.stats.bytes_sent
        C.ltz(a)
        return ctx.transport.stats.bytes_sent - b0

    run = run_local(job, 3)
    per_elem = np.mean(run.results[1:]) / size  # non-leads (the lead also sends dealer requests)
    assert per_elem <= 2 * (8 + 89 / 32 * 8 + 1 / 32 * 8) + 0.5


@pytest.mark.parametrize("fn", [C.ltz, C.eqz])
def test_empty_and_nd_shapes(fn):
    x = np.zeros((2, 0))
    got, _ = run_shared(lambda ctx, a: fn(a), [x], 2)
    assert got.shape == (2, 0)
    x = np.array([[1.0, -2.0], [0.0, 3.0]])
    got, _ = run_shared(lambda ctx, a: fn(a), [x], 2)
    assert got.shape == (2, 2)


def test_dabits_agree():
    """daBits: the XOR-shared rows and the additive shares hold the same uniform bits."""
    def job(ctx):
        d_xor, d_add = B.dabits(ctx, 1000, rows=2)
        (o,) = B.open_bits(ctx, [d_xor], "test.dabits_xor")
        (a,) = ctx.open_masked([d_add], "test.dabits_add")
        return B.lanes(ctx.n).unslice(o, 1000), a

    for n in (2, 3, 5):
        (x, a), *_ = run_local(job, n).results
        np.testing.assert_array_equal(x, a)
        assert set(np.unique(a)) <= {0, 1} and 0.4 < a.mean() < 0.6


@given(PARTIES, hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=9),
                           elements=st.integers(-4, 4)), st.integers(0, 1))
def test_argmax_argmin_ties_lowest_index(n, x, axis):
    axis = min(axis, x.ndim - 1)
    xf = x.astype(np.float64)

    def fn(ctx, a):
        v, i = C.argmax(a, axis=axis, bits=40)
        v2, i2 = C.argmin(a, axis=axis, bits=40)
        return Shared(ctx, np.stack([v.data, i.data << np.uint64(20), v2.data, i2.data << np.uint64(20)]), 20)

    got, _ = run_shared(fn, [xf], n)
    np.testing.assert_array_equal(got[0], xf.max(axis=axis))
    np.testing.assert_array_equal(got[1], xf.argmax(axis=axis))
    np.testing.assert_array_equal(got[2], xf.min(axis=axis))
    np.testing.assert_array_equal(got[3], xf.argmin(axis=axis))


@pytest.mark.parametrize("which", ["ltz", "invsqrt", "sigmoid", "div"])
def test_no_secret_in_clear(monkeypatch, which):
    """No message any party receives (from peers or the dealer) holds the input's or the
    (unopened) result's ring encoding; only masked values travel."""
    from cipherome.mpc import inproc
    from cipherome.mpc.ring import encode
    from cipherome.protocols import division as D
    from cipherome.protocols import functions as FN
    from cipherome.protocols import roots as RT

    log = []
    orig = inproc.InProcTransport.recv

    def recv(self, frm, tag, timeout=None):
        data = orig(self, frm, tag, timeout)
        log.append(np.array(data, copy=True))
        return data

    monkeypatch.setattr(inproc.InProcTransport, "recv", recv)
    x = np.array([1234.5678, 77.125, 3.3335])
    fns = {"ltz": (lambda a: C.ltz(a - 100.0), (x < 100).astype(float) * 2.0**-20),
           "invsqrt": (RT.invsqrt, x**-0.5), "sigmoid": (FN.sigmoid, 1 / (1 + np.exp(-x / 1000))),
           "div": (lambda a: D.div(a, a * 2), np.full(3, 0.5))}
    fn, result = fns[which]

    def job(ctx):
        a = ctx.input("p0", x if ctx.me == "p0" else None, shape=x.shape, frac=20)
        if which == "sigmoid":
            from cipherome.protocols.arith import mul_public
            a = mul_public(a, 1e-3)
        fn(a)
        return True

    run_local(job, 3)
    secrets = set(encode(x, 20).tolist()) | set(encode(result, 20).tolist()) - {0, 1 << 19, 1 << 20}
    for arr in log:
        if arr.dtype == np.uint64:
            assert not secrets.intersection(arr.ravel().tolist())
