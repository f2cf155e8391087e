"""Arithmetic protocols on shares against numpy, with 2, 3 and 5 compute parties.

Fixed-point results may differ from the exact product by the encoding of the
inputs (half an ulp each, scaled by the other operand) and by at most one ulp
of truncation; integer results are exact.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cipherome import protocols as P
from cipherome.mpc.shares import concat, stack
from tests.mpc_helpers import run_shared

FRAC = 20
ULP = 2.0**-FRAC
PARTIES = st.sampled_from([2, 3, 5])
# products of fixed-point values must stay below 2^(62 - 2*FRAC) = 2^22 in magnitude
BOUND = 2.0**10
vals = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False)
shapes = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=6)


def _tol(x, y):
    """Error bound of a fixed-point product: input encodings and one truncation ulp."""
    return (np.abs(x) + np.abs(y) + 2) * ULP


@given(PARTIES, shapes.flatmap(lambda s: st.tuples(hnp.arrays(np.float64, s, elements=vals), hnp.arrays(np.float64, s, elements=vals))))
def test_mul_fixed_point(n, xy):
    x, y = xy
    got, _ = run_shared(lambda ctx, a, b: P.mul(a, b), [x, y], n)
    assert got.shape == x.shape
    assert np.all(np.abs(got - x * y) <= _tol(x, y))


@given(PARTIES, hnp.arrays(np.int64, shapes, elements=st.integers(-(2**31), 2**31)))
def test_mul_integers_exact(n, x):
    y = x[::-1].copy() if x.ndim == 1 else x.copy()
    got, _ = run_shared(lambda ctx, a, b: P.mul(a, b), [x, y], n)
    np.testing.assert_array_equal(got, x * y)


@given(PARTIES, hnp.arrays(np.float64, shapes, elements=vals))
def test_square(n, x):
    got, _ = run_shared(lambda ctx, a: P.square(a), [x], n)
    assert np.all(np.abs(got - x * x) <= _tol(x, x))


@given(PARTIES, st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 10**6))
def test_matmul(n, p, q, r, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-30, 30, (p, q))
    y = rng.uniform(-30, 30, (q, r))
    got, _ = run_shared(lambda ctx, a, b: P.matmul(a, b), [x, y], n)
    assert got.shape == (p, r)
    bound = (np.abs(x) @ np.ones((q, r)) + np.ones((p, q)) @ np.abs(y) + 2) * ULP
    assert np.all(np.abs(got - x @ y) <= bound)


def test_matmul_batched_and_vectors():
    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 5, (4, 3, 2))
    y = rng.uniform(-5, 5, (4, 2, 5))
    got, _ = run_shared(lambda ctx, a, b: P.matmul(a, b), [x, y], 3)
    np.testing.assert_allclose(got, x @ y, atol=1e-4)
    m = rng.uniform(-5, 5, (3, 4))
    v = rng.uniform(-5, 5, 4)
    got, _ = run_shared(lambda ctx, a, b: P.matmul(a, b), [m, v], 2)
    np.testing.assert_allclose(got, m @ v, atol=1e-4)


@given(PARTIES, st.integers(0, 8), st.integers(0, 10**6))
def test_dot_truncates_once(n, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-100, 100, (3, k))
    y = rng.uniform(-100, 100, (3, k))
    got, _ = run_shared(lambda ctx, a, b: P.dot(a, b), [x, y], n)
    bound = ((np.abs(x) + np.abs(y)).sum(axis=1) + 2) * ULP
    assert np.all(np.abs(got - (x * y).sum(axis=1)) <= bound)


@given(PARTIES, hnp.arrays(np.float64, shapes, elements=vals), st.floats(-100, 100))
def test_mul_public_real(n, x, c):
    got, _ = run_shared(lambda ctx, a: P.mul_public(a, c), [x], n)
    assert np.all(np.abs(got - x * c) <= (np.abs(x) + abs(c) + 2) * ULP)


@given(PARTIES, st.integers(1, 40), st.integers(0, 10**6), st.booleans(), st.integers(1, 200))
def test_truncate_error_at_most_one_ulp_over_full_range(n, bits, seed, lean, size):
    rng = np.random.default_rng(seed)
    # ring integers anywhere in the valid range |x| < 2^62, including the extremes
    x = rng.integers(-(2**62) + 1, 2**62 - 1, size + 3, dtype=np.int64)
    x[:4] = [-(2**62) + 1, 2**62 - 1, 0, -1]

    def fn(ctx, a):
        if not lean:
            return P.truncate(a, bits, frac=0)
        with ctx.lean():  # the opening split among the parties: each opens a block, returns its top bits
            return P.truncate(a.reshape(-1, 1), bits, frac=0).reshape(-1)

    got, run = run_shared(fn, [x], n, fracs=[0])
    exact = x >> bits  # floor division by 2^bits
    diff = got - exact
    assert np.all((diff == 0) | (diff == 1)), diff
    if lean:  # the blocks of c and their top bits, both masked openings in the ledger
        assert {(e["label"], e["kind"]) for e in run.reports["p0"]["ledger"]} >= {("trunc", "masked"),
                                                                                 ("trunc.msb", "masked")}


def test_lean_truncation_sends_a_third_of_the_bytes():
    x = np.arange(-3000, 3000, dtype=np.int64) << 20

    def cost(lean):
        def fn(ctx, a):
            if not lean:
                return P.truncate(a, 20, frac=0)
            with ctx.lean():
                return P.truncate(a, 20, frac=0)
        got, run = run_shared(fn, [x], 3, fracs=[0])
        assert np.all(np.abs(got - (x >> 20)) <= 1)
        rep = run.reports["p0"]
        return rep["bytes_sent"], rep["rounds"]

    (plain_b, plain_r), (lean_b, lean_r) = cost(False), cost(True)
    assert lean_r == plain_r + 1
    # 6,000 elements: 16 B each at the lead, against 8 * 2/3 + 2/64 * ... ~5.4 B (the opening of the result is common)
    saved = plain_b - lean_b
    assert 6000 * 10 < saved < 6000 * 11


def test_local_ops_and_public_constants():
    x = np.array([[1.5, -2.0], [0.25, 3.0]])
    y = np.array([[0.5, 0.5], [-1.0, 2.0]])

    def fn(ctx, a, b):
        s = (a + b) - 1.25 + 3 * a - (-b) + a.sum(axis=0).reshape(1, 2) + np.array([[1.0, 2.0]])
        t = concat([s, stack([a[0], b[1]])], axis=0)
        return t.T

    got, _ = run_shared(fn, [x, y], 3)
    s = (x + y) - 1.25 + 3 * x + y + x.sum(axis=0).reshape(1, 2) + np.array([[1.0, 2.0]])
    want = np.concatenate([s, np.stack([x[0], y[1]])]).T
    np.testing.assert_allclose(got, want, atol=4 * ULP)


def test_integer_and_fixed_mix_aligns_scales():
    x = np.array([3, -7, 0])
    y = np.array([0.5, 0.25, -1.5])
    got, _ = run_shared(lambda ctx, a, b: P.mul(a, b) + a, [x, y], 2)
    np.testing.assert_allclose(got, x * y + x, atol=ULP)


def test_secret_times_secret_needs_protocol():
    def fn(ctx, a, b):
        with pytest.raises(TypeError):
            a * b
        with pytest.raises(TypeError):
            a * 0.5
        return a

    run_shared(fn, [np.ones(2), np.ones(2)], 2)


def test_open_to_one_party_and_ledger():
    from cipherome.mpc.local import run_local

    def job(ctx):
        x = ctx.input("p1", np.array([4.0, 5.0]) if ctx.me == "p1" else None, shape=(2,), frac=ctx.frac)
        got = ctx.open(x, "x to p2", to="p2")
        return None if got is None else got.tolist()

    run = run_local(job, 3)
    assert run.results == [None, None, [4.0, 5.0]]
    for name, rep in run.reports.items():
        if name == "dealer":
            continue
        disclosed = [e for e in rep["ledger"] if e["kind"] == "disclosed"]
        assert disclosed == [{"label": "x to p2", "kind": "disclosed", "recipients": ["p2"], "elements": 2, "openings": 1}]


def test_input_with_announced_shape():
    from cipherome.mpc.local import run_local

    def job(ctx):
        x = ctx.input("p0", np.arange(6).reshape(2, 3) if ctx.is_lead else None)
        assert x.shape == (2, 3) and x.frac == 0
        return ctx.open(x, "x").tolist()

    assert run_local(job, 3).results[2] == [[0, 1, 2], [3, 4, 5]]


def test_failing_party_aborts_everyone_quickly():
    import time

    from cipherome.mpc.local import run_local

    def job(ctx):
        x = ctx.input("p0", np.ones(3) if ctx.is_lead else None, shape=(3,), frac=ctx.frac)
        if ctx.me == "p1":
            raise RuntimeError("site p1 crashed")
        return P.mul(x, x)

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="site p1 crashed"):
        run_local(job, 3, timeout=30)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("n", [2, 3])
def test_fixed_operand_products_match_numpy_and_cost_less(n):
    from cipherome.protocols.reuse import fix

    rng = np.random.default_rng(5)
    d = rng.uniform(-1, 1, (50, 8, 8))
    v = rng.uniform(-1, 1, (50, 8, 1))
    w = rng.uniform(-1, 1, (50, 1, 8))

    def fn(ctx, dd, vv, ww):
        fixed = fix(dd)
        to_parties = lambda: sum(v for k, v in ctx.transport.stats.sent_to.items() if k in ctx.parties)
        before = to_parties()
        a = fixed.left_mul(vv)  # D @ V per batch
        b = fixed.left_mul(a)  # reuse: D @ (D @ V)
        c = fixed.right_mul(ww)  # W @ D
        per_product = (to_parties() - before) / 3
        assert per_product <= 8 * (n - 1) * 800  # |Y| + |result| elements, not |D| = 3200
        from cipherome.mpc.shares import concat
        return concat([a.reshape(-1), b.reshape(-1), c.reshape(-1)])

    got, _ = run_shared(fn, [d, v, w], n)
    want = np.concatenate([(d @ v).ravel(), (d @ d @ v).ravel(), (w @ d).ravel()])
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("n", [2, 3])
def test_spd_inverse_newton_schulz(n):
    from cipherome.protocols.spdinv import spd_inverse

    rng = np.random.default_rng(n)
    m = rng.normal(size=(3, 6, 6))
    a = m @ m.transpose(0, 2, 1) / 6 + np.eye(6)  # batched SPD, cond < 100
    got, _ = run_shared(lambda ctx, x: spd_inverse(x, lam_max_bound=30.0, cond_bound=100), [a], n, frac=24)
    np.testing.assert_allclose(got, np.linalg.inv(a), atol=1e-5)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_matmul_self_opens_x_once(n):
    """X [X | Y] as ``matmul`` would give it, with X opened once (fewer bytes than matmul of [X | Y])."""
    rng = np.random.default_rng(10 + n)
    x, y = rng.normal(size=(4, 5, 5)), rng.normal(size=(4, 5, 2))
    got, run = run_shared(lambda ctx, a, b: P.arith.matmul_self(a, b), [x, y], n)
    np.testing.assert_allclose(got, x @ np.concatenate([x, y], axis=2), atol=1e-4)
    _, ref = run_shared(lambda ctx, a, b: P.matmul(a, concat([a, b], axis=2)), [x, y], n)
    assert run.rounds() == ref.rounds()
    assert run.sent_per_party() < ref.sent_per_party() - 8 * (n - 1) * x.size * 0.9


@pytest.mark.parametrize("n", [2, 3])
def test_neumann_doubling_sums_two_to_the_levels_terms(n):
    """sum_(t < 2^L) B^t C in 2 rounds per level; it tends to (I - B)^-1 C for rho(B) < 1."""
    from cipherome.protocols.spdinv import neumann_doubling

    rng = np.random.default_rng(n)
    m = rng.normal(size=(3, 6, 6))
    b = 0.8 * m / np.abs(np.linalg.eigvals(m)).max(axis=1)[:, None, None]  # rho(B) = 0.8, not symmetric
    c = rng.normal(size=(3, 6, 2))
    want3 = sum(np.linalg.matrix_power(b, t) @ c for t in range(8))
    got3, run3 = run_shared(lambda ctx, bb, cc: neumann_doubling(bb, cc, 3), [b, c], n, frac=24)
    np.testing.assert_allclose(got3, want3, atol=1e-5)
    got7, run7 = run_shared(lambda ctx, bb, cc: neumann_doubling(bb, cc, 7), [b, c], n, frac=24)
    np.testing.assert_allclose(got7, np.linalg.solve(np.eye(6) - b, c), atol=1e-4)  # 0.8^128: 4e-13
    assert run7.rounds() - run3.rounds() == 8  # 2 rounds per level


@pytest.mark.parametrize("n", [2, 3])
def test_neumann_inverse_is_newton_schulz_in_fewer_rounds(n):
    """t Newton-Schulz steps from X_0 (shared, or a public array) and X_t v, as t Neumann levels: the same
    values in 2 + 2t rounds where the steps take 4t."""
    from cipherome.mpc.shares import Shared
    from cipherome.protocols.spdinv import neumann_inverse, newton_schulz

    rng = np.random.default_rng(20 + n)
    m = rng.normal(size=(2, 5, 5))
    a = m @ m.transpose(0, 2, 1) / 5 + np.eye(5)
    v = rng.normal(size=(2, 5, 1))
    x0 = np.broadcast_to(np.eye(5) / 12.0, a.shape)  # rho(I - x0 a) < 1 for lambda_max(a) < 24
    want = x0.copy()
    for _ in range(3):
        want = want @ (2 * np.eye(5) - a @ want)
    ns, run_ns = run_shared(lambda ctx, aa: newton_schulz(aa, Shared.public(ctx, x0, 24), 3), [a], n, frac=24)
    shared, run_sh = run_shared(lambda ctx, aa, vv: concat(list(neumann_inverse(aa, Shared.public(ctx, x0, 24), 3,
                                                                                 rhs=vv)), axis=2), [a, v], n, frac=24)
    public, run_pu = run_shared(lambda ctx, aa: neumann_inverse(aa, x0, 3), [a], n, frac=24)
    only, _ = run_shared(lambda ctx, aa, vv: neumann_inverse(aa, x0, 3, rhs=vv, inverse=False), [a, v], n, frac=24)
    for got in (ns, shared[:, :, :5], public):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(shared[:, :, 5:], want @ v, atol=1e-5)
    np.testing.assert_allclose(only, want @ v, atol=1e-5)
    _, base = run_shared(lambda ctx, aa: aa + aa, [a], n, frac=24)
    assert run_ns.rounds() - base.rounds() == 12
    assert run_sh.rounds() - base.rounds() == 8
    assert run_pu.rounds() - base.rounds() == 7  # the public start's product needs only its truncation


@pytest.mark.parametrize("n", [2, 3])
def test_dealer_random_bits_are_shared_bits(n):
    from cipherome.mpc.local import run_local
    from cipherome.mpc.shares import Shared

    def job(ctx):
        b = Shared(ctx, ctx.provider.random_bits(4000), 0)
        return ctx.open(b, "bits")

    got = run_local(job, n).results[0]
    assert set(np.unique(got)) == {0, 1}
    assert abs(got.mean() - 0.5) < 0.05


def test_exchange_records_each_message_and_needs_a_kind():
    """Point-to-point rounds go through ``Context.exchange``: each message is in the ledger, with its kind."""
    from cipherome.mpc.ledger import DISCLOSED, MASKED
    from cipherome.mpc.local import run_local

    def job(ctx):
        with pytest.raises(ValueError):
            ctx.exchange({}, {}, "x", kind="public")
        nxt = ctx.parties[(ctx.index + 1) % ctx.n]
        prv = ctx.parties[(ctx.index - 1) % ctx.n]
        got = ctx.exchange({nxt: np.full(3, ctx.index, np.uint64)}, {prv: (3,)}, "ring", kind=MASKED)
        ctx.exchange({nxt: np.zeros(1, np.uint64)}, {prv: (1,)}, "told", kind=DISCLOSED)
        return int(got[prv][0])

    run = run_local(job, 3)
    assert run.results == [2, 0, 1]
    for name in ("p0", "p1", "p2"):
        led = {(e["label"], e["kind"]): e for e in run.reports[name]["ledger"]}
        nxt = f"p{(int(name[1]) + 1) % 3}"
        assert led[("ring", "masked")]["recipients"] == [nxt] and led[("ring", "masked")]["elements"] == 3
        assert led[("told", "disclosed")]["recipients"] == [nxt]
    setup_rounds = run_local(lambda ctx: None, 3).reports["p0"]["rounds"]
    assert run.reports["p0"]["rounds"] == setup_rounds + 2


def test_open_masked_and_disclose_are_separate_ledger_kinds():
    from cipherome.mpc.local import run_local

    def job(ctx):
        x = ctx.input("p0", np.arange(4) if ctx.is_lead else None, shape=(4,), frac=0)
        ctx.open_masked([x.data], "looks random")
        return ctx.disclose([x.data], "the values")[0].tolist()

    run = run_local(job, 2)
    assert run.results == [[0, 1, 2, 3]] * 2
    kinds = {e["label"]: e["kind"] for e in run.reports["p1"]["ledger"]}
    assert kinds == {"looks random": "masked", "the values": "disclosed"}


def test_parties_run_with_one_blas_thread_and_the_caller_gets_its_pool_back():
    """run_local limits BLAS to one thread while the parties run (mpc/blas.py), then restores the caller's."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from cipherome.mpc.local import run_local

    def blas():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas()
        run = run_local(lambda ctx: blas(), 2)
        assert before and set(before) == {2}
        assert all(set(r) == {1} for r in run.results)
        assert blas() == before


@pytest.mark.parametrize("n", [2, 3, 4])
def test_inputs_sum_pools_every_partys_array_and_keeps_the_streams_in_step(n):
    """inputs_sum (masks added in place, in chunks) opens to the sum of the parties' arrays, for floats (fixed
    point), ring integers (uint64 wraps), an array of several mask chunks and an empty one, and each later
    pooling still opens right (the pairwise PRG streams advanced as every party expects); a value whose
    shape is not the public one is refused."""
    from cipherome.mpc.local import run_local
    from cipherome.mpc.runtime import _MASK_CHUNK

    rng = np.random.default_rng(n)
    floats = [rng.normal(size=(4, 3)) for _ in range(n)]
    ints = [rng.integers(0, 2**64, 5, dtype=np.uint64) for _ in range(n)]
    before = [x.copy() for x in ints]
    big = [rng.integers(-1000, 1000, (3, _MASK_CHUNK // 2 + 7)) for _ in range(n)]  # masks in several chunks

    def job(ctx):
        a = ctx.open(ctx.inputs_sum(floats[ctx.index], shape=(4, 3), frac=20), "test.a")
        c = ctx.open(ctx.inputs_sum(big[ctx.index], shape=big[0].shape, frac=0), "test.c")
        e = ctx.open(ctx.inputs_sum(np.zeros((0, 3)), shape=(0, 3), frac=20), "test.e")
        b = ctx.open(ctx.inputs_sum(ints[ctx.index], shape=5, frac=0), "test.b")
        with pytest.raises(ValueError, match="public shape"):
            ctx.inputs_sum(floats[ctx.index], shape=(3, 4), frac=20)
        return a, b, c, e

    run = run_local(job, n)
    for a, b, c, e in run.results:
        np.testing.assert_allclose(a, sum(floats), atol=n * 2.0**-20)
        np.testing.assert_array_equal(np.asarray(b).view(np.uint64), sum(ints, np.zeros(5, np.uint64)))
        np.testing.assert_array_equal(c, sum(big))
        assert np.shape(e) == (0, 3)
    for x, y in zip(ints, before):  # a uint64 value is the ring element itself: not changed in place
        np.testing.assert_array_equal(x, y)
