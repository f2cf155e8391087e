"""sigmoid, exp, log and piecewise polynomials against numpy, with 2 and 3 parties.

Stated accuracy (f = 20, on the encoded inputs):
  sigmoid: |err| <= 1.5e-6 everywhere (fit 2.0e-8, arithmetic ~1e-8, output rounding 1 ulp);
           0 below -15.75 and 1 from 15.75 on (true values within 1.5e-7 there);
  exp on [-16, 16): |err| <= 2 ulp + 1e-6 e^x; 0 below -16, e^16 from 16 on;
  log on [2^-20, 2^24): |err| <= 2 ulp.
"""
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cipherome.mpc.shares import Shared
from cipherome.protocols import functions as FN
from tests.mpc_helpers import run_shared

PARTIES = st.sampled_from([2, 3])
ULP = 2.0**-20


def _enc(x, f=20):
    return np.rint(np.asarray(x) * 2.0**f) / 2.0**f


def _sig(x):
    return 0.5 * (1 + np.tanh(x / 2))


@given(PARTIES, hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(-40, 40)))
def test_sigmoid(n, x):
    x = np.concatenate([x, [-16 - ULP, -16, -ULP, 0, ULP, 16 - ULP, 16, 1e5, -1e5]])
    got, _ = run_shared(lambda ctx, a: FN.sigmoid(a), [x], n)
    xq = _enc(x)
    want = np.where(xq < -16, 0.0, np.where(xq >= 16, 1.0, _sig(xq)))
    assert np.all(np.abs(got - want) <= 1.5e-6)
    assert np.all(np.abs(got - _sig(xq)) <= 1.5e-6)


def test_sigmoid_in_ten_rounds():
    """The window split and the polynomial share their rounds with the two range checks: 10 rounds
    (16 with the borrow circuit of ``split`` before the polynomial), and fewer bytes than that version."""
    x = np.linspace(-20, 20, 501)
    got, run = run_shared(lambda ctx, a: FN.sigmoid(a), [x], 3)
    _, base = run_shared(lambda ctx, a: a + a, [x], 3)
    assert run.rounds() - base.rounds() == 10
    assert (run.sent_per_party() - base.sent_per_party()) / x.size < 410  # 419 with split (3 parties)
    assert np.abs(got - _sig(_enc(x))).max() <= 1.5e-6


def test_sigmoid_dense_grid():
    """Every 1/64 on [-16.5, 16.5]: error <= 1.5e-6, and monotone up to one ulp."""
    x = np.arange(-16.5, 16.5, 1 / 64)
    got, _ = run_shared(lambda ctx, a: FN.sigmoid(a), [x], 3)
    assert np.abs(got - _sig(x)).max() <= 1.5e-6
    assert np.all(np.diff(got) >= -ULP)


@given(PARTIES, hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-20, 20)))
def test_exp(n, x):
    x = np.concatenate([x, [-16, 0, 1, -1, 16 - ULP, 16, 30, -30]])
    got, _ = run_shared(lambda ctx, a: FN.exp(a), [x], n)
    xq = _enc(x)
    want = np.where(xq < -16, 0.0, np.exp(np.minimum(xq, 16)))
    assert np.all(np.abs(got - want) <= 2 * ULP + 1e-6 * want)


@given(PARTIES, hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(-20, 23.99)))
def test_log(n, e):
    x = np.concatenate([2.0**e, [2.0**-20, 1.0, 2.0, 0.25, math.e, 2.0**24 - ULP]])
    got, _ = run_shared(lambda ctx, a: FN.log(a), [x], n)
    assert np.all(np.abs(got - np.log(_enc(x))) <= 2 * ULP)


def test_split_and_piecewise_poly():
    """split gives the exact segment and offset; a piecewise linear table is reproduced exactly."""
    x = np.array([-8.0, -7.5, -0.25, 0.0, 0.75, 3.999, 7.75])

    def fn(ctx, a):
        oh, phi = FN.split(a, -8.0, 0, 4)
        return Shared(ctx, np.vstack([oh.O.T, phi.data[None, :]]), 0)

    got, _ = run_shared(fn, [x], 3)
    seg, phi = got[:16], got[16] / 2.0**20
    np.testing.assert_array_equal(seg.argmax(axis=0), np.floor(x + 8).astype(int))
    np.testing.assert_array_equal(seg.sum(axis=0), 1)
    xq = _enc(x) + 8
    np.testing.assert_array_equal(phi, xq - np.floor(xq))
    coefs = np.stack([np.arange(16.0), np.full(16, 0.5)], axis=1)  # k + phi/2 on segment k
    got, _ = run_shared(lambda ctx, a: FN.piecewise_poly(a, -8.0, 0, coefs, below=-1.0, above=99.0),
                        [np.r_[x, -9.0, 8.0]], 2)
    want = np.r_[np.floor(x + 8) + (x + 8 - np.floor(x + 8)) / 2, -1.0, 99.0]
    assert np.abs(got - want).max() <= 2 * ULP


def test_window_split_is_exact_and_one_segment_at_most_too_high():
    """x = lo + 2^w (m' + phi') exactly, m' one-hot, m' = floor((x - lo) / 2^w) or one more (then phi' < 0)."""
    rng = np.random.default_rng(7)
    x = np.r_[_enc(rng.uniform(-8.0, 6.99, 400)), -8.0, -7.0, -7.0 + ULP, -7.0 - ULP, 0.0, 6.5]

    def fn(ctx, a):
        oh, (phi,) = FN.window_split(a, -8.0, 0, 4, "split")
        return Shared(ctx, np.vstack([oh.O.T, phi.data[None, :]]), 0)

    for n in (2, 3):
        got, _ = run_shared(fn, [x], n)
        seg, raw = got[:16], got[16]
        np.testing.assert_array_equal(seg.sum(axis=0), 1)
        np.testing.assert_array_equal(seg.max(axis=0), 1)
        m = seg.argmax(axis=0)
        phi = raw / 2.0**20
        np.testing.assert_array_equal(-8.0 + m + phi, x)  # exact: both sides are multiples of 2^-20
        fl = np.floor(x + 8.0)
        assert np.all((m == fl) & (phi >= 0) | (m == fl + 1) & (phi < 0))
        assert np.all((phi >= -1) & (phi < 1))


def test_fit_windows_hold_on_both_segments():
    """Window k's polynomial in phi' in [-1, 1) is f on [lo + (k-1) 2^w, lo + (k+1) 2^w)."""
    c = FN.fit_windows(np.log, 0.21875, -5, 32, 5)
    t = np.linspace(-1, 1, 2001)
    err = max(np.abs(np.polynomial.polynomial.polyval(t, c[k]) - np.log(0.21875 + (k + t) / 32)).max()
              for k in range(32))
    assert err < 6e-8


def test_log_of_counts_and_its_rounds():
    """The HWE test's logarithms: ln of integer counts 1..2^15 - 1 within 2 ulp, in 19 rounds: normalise
    15 bits (10, the bit decomposition), one opening for the windowed split (the split with a borrow
    circuit took 6), powers 6, products and truncation 2."""
    c = np.r_[np.arange(1, 900), np.geomspace(900, 2**15 - 1, 300).astype(np.int64)]
    got, run = run_shared(lambda ctx, a: FN.log(a, hi=15, frac=20), [c], 3)
    assert np.abs(got - np.log(c)).max() <= 2 * ULP
    _, base = run_shared(lambda ctx, a: a + a, [c], 3)  # sharing and opening alone
    assert run.rounds() - base.rounds() == 19


def test_log_int_of_counts_exact_powers_and_rounds():
    """log_int: ln of integer counts within 1 ulp + 1e-7 (zero gives a finite value, so count * ln count = 0),
    in 14 rounds (log: 19), and in a lean stage 16 (log: 23): the windowed split's offsets of an exact
    16-bit z have exact powers, so no power levels."""
    c = np.r_[np.arange(0, 1000), np.geomspace(1000, 2**15 - 1, 400).astype(np.int64)]

    def lean(fn):
        def run(ctx, a):
            with ctx.lean():
                return fn(ctx, a)
        return run

    got, run = run_shared(lambda ctx, a: FN.log_int(a, 15, frac=20), [c], 3)
    got_lean, run_lean = run_shared(lean(lambda ctx, a: FN.log_int(a, 15, frac=20)), [c], 3)
    _, base = run_shared(lambda ctx, a: a + a, [c], 3)
    for g in (got, got_lean):
        assert np.all(np.isfinite(g))
        assert np.abs(g[1:] - np.log(c[1:])).max() <= ULP + 1e-7
    assert run.rounds() - base.rounds() == 14
    assert run_lean.rounds() - base.rounds() == 16
    small, _ = run_shared(lambda ctx, a: FN.log_int(a, 4, frac=20), [np.arange(1, 16)], 3)
    assert np.abs(small - np.log(np.arange(1, 16))).max() <= ULP + 1e-7


def test_log_int_beyond_16_bits_is_log_and_refuses_fractions():
    """Above 16 bits the fifth power of an exact offset does not fit the ring: log_int is then log
    (the same rounds and values); a fixed-point input is refused."""
    import pytest

    c = np.r_[np.arange(1, 700), np.geomspace(700, 2**17 - 1, 400).astype(np.int64)]
    got, run = run_shared(lambda ctx, a: FN.log_int(a, 17, frac=20), [c], 3)
    want, run_log = run_shared(lambda ctx, a: FN.log(a, hi=17, frac=20), [c], 3)
    assert np.abs(got - np.log(c)).max() <= 2 * ULP
    assert run.rounds() == run_log.rounds()
    with pytest.raises(ValueError, match="frac 0"):
        run_shared(lambda ctx, a: FN.log_int(a, 15), [np.array([1.5, 2.0])], 2)


def test_logs_of_many_values_ask_the_one_hot_in_one_part_per_party():
    """From 12,288 values the windowed split's material comes in one request per party (each party's
    link carries a third of the one-hot); the parts join seamlessly."""
    c = np.arange(1, 16385)
    got, run = run_shared(lambda ctx, a: FN.log_int(a, 15, frac=20), [c], 3)
    assert np.abs(got - np.log(c)).max() <= ULP + 1e-7
    x = 2.0 ** np.linspace(-19.5, 23.5, 13000)
    got, run_log = run_shared(lambda ctx, a: FN.log(a), [x], 3)
    assert np.abs(got - np.log(_enc(x))).max() <= 2 * ULP
    # the dealer's corrections are spread over the three parties' links
    per_party = [run.reports["dealer"]["sent_to"][p] for p in ("p0", "p1", "p2")]
    assert min(per_party) > 0.25 * sum(per_party), per_party


def test_logs_of_no_values():
    """An empty input (e.g. no variant left for a filter) gives an empty result, not an error."""
    got, _ = run_shared(lambda ctx, a: FN.log_int(a, 15, frac=20), [np.zeros(0, dtype=np.int64)], 3)
    assert got.shape == (0,)
    got, _ = run_shared(lambda ctx, a: FN.log(a), [np.zeros(0)], 3)
    assert got.shape == (0,)
