"""Reciprocal, division, square root and inverse square root against numpy, with 2 and 3 parties.

Stated accuracy (checked here on the encoded inputs, over the stated ranges):
  reciprocal(x), 2^-f <= x < 2^hi:  |err| <= 4 ulp + 1e-7 |1/x|
  div(x, y), 2^-f <= |y| < 2^hi, |x| < 2^x_hi, |x/y| < 2^q_hi:  |err| <= 5 ulp + 1e-6 |x/y|
  sqrt(x), invsqrt(x), 2^-f <= x < 2^hi: |err| <= 3 ulp + 1e-7 |result|
so the relative error is below 1e-5 wherever the result is at least 0.5 (f = 20),
i.e. at least 0.5 * 2^(20 - f) in general; frac = 26 is tested as well.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cipherome.protocols import division as D
from cipherome.protocols import roots as RT
from cipherome.protocols.normalize import pow2_plan
from tests.mpc_helpers import run_shared

PARTIES = st.sampled_from([2, 3])


def _loguniform(lo_exp, hi_exp):
    return hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(lo_exp, hi_exp)).map(lambda e: 2.0**e)


def _enc(x, f):
    return np.rint(np.asarray(x) * 2.0**f) / 2.0**f


@given(PARTIES, _loguniform(-20, 23.99))
def test_reciprocal(n, x):
    x = np.concatenate([x, [2.0**-20, 2.0**24 - 2.0**-20, 1.0, 0.5, 3.0]])
    got, _ = run_shared(lambda ctx, a: D.reciprocal(a), [x], n)
    want = 1.0 / _enc(x, 20)
    assert np.all(np.abs(got - want) <= 4 * 2.0**-20 + 1e-7 * want)
    big = want >= 0.5
    assert np.all(np.abs(got - want)[big] <= 1e-5 * want[big])


@given(PARTIES, _loguniform(-20, 11.99), st.booleans())
def test_reciprocal_signed_and_frac26(n, x, neg):
    f = 26
    x = np.concatenate([x, [2.0**-f, 1.0]]) * (-1.0 if neg else 1.0)
    got, _ = run_shared(lambda ctx, a: D.reciprocal(a, hi=12, signed=True), [x], n, frac=f)
    want = 1.0 / _enc(x, f)
    assert np.all(np.abs(got - want) <= 4 * 2.0**-f + 1e-7 * np.abs(want))


@given(PARTIES, _loguniform(-10, 19.99), hnp.arrays(np.float64, 40, elements=st.floats(-2.0**15, 2.0**15)),
       st.booleans())
def test_div(n, y, x, neg):
    y = np.resize(y, 40) * (-1.0 if neg else 1.0)
    xq, yq = _enc(x, 20), _enc(y, 20)
    q = xq / yq
    keep = np.abs(q) < 2.0**20
    x, y, q = x[keep], y[keep], q[keep]
    if x.size == 0:
        return
    got, _ = run_shared(lambda ctx, a, b: D.div(a, b, signed=True), [x, y], n)
    assert np.all(np.abs(got - q) <= 5 * 2.0**-20 + 1e-6 * np.abs(q))
    big = np.abs(q) >= 0.5
    assert np.all(np.abs(got - q)[big] <= 1e-5 * np.abs(q)[big])


@given(PARTIES, _loguniform(-20, 23.99))
def test_sqrt_invsqrt(n, x):
    x = np.concatenate([x, [2.0**-20, 2.0**24 - 2.0**-20, 1.0, 0.25, 2.0]])

    def fn(ctx, a):
        s, i = RT.sqrt_invsqrt(a)
        from cipherome.mpc.shares import stack
        return stack([s, i])

    got, _ = run_shared(fn, [x], n)
    xq = _enc(x, 20)
    for g, want in ((got[0], np.sqrt(xq)), (got[1], 1 / np.sqrt(xq))):
        assert np.all(np.abs(g - want) <= 3 * 2.0**-20 + 1e-7 * want)
        big = want >= 0.5
        assert np.all(np.abs(g - want)[big] <= 1e-5 * want[big])


@given(PARTIES, _loguniform(-21, 11.99))
def test_invsqrt_odd_frac(n, x):
    f = 21
    x = np.concatenate([x, [2.0**-f, 1.0]])
    got, _ = run_shared(lambda ctx, a: RT.invsqrt(a, hi=12), [x], n, frac=f)
    want = 1 / np.sqrt(_enc(x, f))
    assert np.all(np.abs(got - want) <= 3 * 2.0**-f + 1e-7 * want)


def test_sqrt_of_zero_and_output_scale():
    x = np.array([0.0, 1.0, 4.0, 1e6])
    got, _ = run_shared(lambda ctx, a: RT.sqrt(a), [x], 3)
    np.testing.assert_allclose(got, np.sqrt(x), atol=3 * 2.0**-20, rtol=1e-7)
    got, _ = run_shared(lambda ctx, a: RT.invsqrt(a, frac=30), [np.array([1e4, 2.0])], 2)
    np.testing.assert_allclose(got, [0.01, 2**-0.5], atol=4 * 2.0**-30, rtol=1e-7)


def test_rounds_independent_of_length():
    r = []
    for size in (3, 5000):
        x = np.random.default_rng(size).uniform(0.1, 100, size)
        _, run = run_shared(lambda ctx, a: RT.invsqrt(a), [x], 3)
        r.append(run.rounds())
    # the compare-based normalisation of tiny inputs saves rounds; never more for long vectors
    assert r[1] <= 36 and r[0] <= r[1]


def test_pow2_plan_never_overflows():
    """Each stage's product stays below 2^62 and no truncation error is amplified (rem_d <= rem_t)."""
    for e, a_bits, out_bits in [([10 - 2 * j for j in range(22)], 31, 41),
                                ([-5 - 2 * j for j in range(22)], 62, 41),
                                ([j - 17 for j in range(24)], 29, 40)]:
        plan = pow2_plan(e, a_bits, out_bits)
        total_t = sum(t for _, t in plan)
        for j, ej in enumerate(e):
            rem_d = sum(d[j] for d, _ in plan)
            rem_t = total_t
            assert rem_d - rem_t == ej
            cur = min(a_bits, out_bits + rem_t - rem_d)  # |A 2^(shift so far)| bound, in bits
            for d, t in plan:
                assert cur + d[j] <= 62
                rem_d -= d[j]
                rem_t -= t
                assert rem_d <= rem_t
                cur = min(cur + d[j] - t, out_bits + rem_t - rem_d)


def test_div_range_error():
    with pytest.raises(ValueError):
        pow2_plan([40 - 2 * j for j in range(30)], 62, 62)


@given(PARTIES, _loguniform(-20, 11.99))
def test_invsqrt_table_rough(n, x):
    """The one-round-trip table 1/sqrt (used for QR pivots): relative error <= 0.3% plus rounding."""
    x = np.concatenate([x[:5], [2.0**-20, 1.0, 4095.0]])
    got, run = run_shared(lambda ctx, a: RT.invsqrt_table(a, hi=12), [x], n)
    want = 1 / np.sqrt(_enc(x, 20))
    assert np.all(np.abs(got - want) <= 0.003 * want + 2.0**-20)
    assert run.rounds() == 1 + 7 + 1
