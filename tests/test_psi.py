"""The prime-field kernels and the per-bin set intersection of protocols/psi.py."""
import numpy as np
import pytest

from cipherome.mpc.local import run_local
from cipherome.protocols import field
from cipherome.protocols.psi import TAG_BITS, common_bins

P = (1 << 61) - 1


def test_field_kernels_match_python_integers():
    rng = np.random.default_rng(1)
    x = rng.integers(0, P, 500, dtype=np.uint64)
    y = rng.integers(0, P, 500, dtype=np.uint64)
    x[:3], y[:3] = [0, P - 1, P - 1], [P - 1, P - 1, 1]
    assert [int(v) for v in field.row_dot(x[:, None], y[:, None])] == [int(a) * int(b) % P for a, b in zip(x, y)]
    assert [int(v) for v in field.sub(x, y)] == [(int(a) - int(b)) % P for a, b in zip(x, y)]
    assert [int(v) for v in field.add(x, y)] == [(int(a) + int(b)) % P for a, b in zip(x, y)]
    ring = np.concatenate([rng.integers(0, 1 << 64, 500, dtype=np.uint64, endpoint=False),
                           np.array([0, P - 1, P, P + 1, 2 * P, 2 * P + 1, (1 << 64) - 1], dtype=np.uint64)])
    assert [int(v) for v in field.to_field(ring.reshape(-1, 1))[:, 0]] == [int(a) % P for a in ring]
    pw = field.powers(x[:40], 6)
    assert all(int(pw[i, k]) == pow(int(x[i]), k + 1, P) for i in range(40) for k in range(6))
    d = field.row_dot(pw, pw[::-1])
    assert all(int(d[i]) == sum(int(a) * int(b) for a, b in zip(pw[i], pw[39 - i])) % P for i in range(40))


def test_polynomial_vanishes_exactly_at_its_roots():
    rng = np.random.default_rng(2)
    roots = rng.integers(0, P, (30, 7), dtype=np.uint64)
    scale = rng.integers(1, P, 30, dtype=np.uint64)
    c = field.poly_from_roots(roots, scale)
    for i in range(30):
        def at(t):
            return sum(int(c[i, k]) * pow(t, k, P) for k in range(8)) % P
        assert all(at(int(r)) == 0 for r in roots[i])
        t = int(rng.integers(0, P))
        want = int(scale[i])
        for r in roots[i]:
            want = want * (t - int(r)) % P
        assert at(t) == want != 0


def _tables(n, T, L, seed):
    rng = np.random.default_rng(seed)
    lead = rng.integers(1, 1 << TAG_BITS, T, dtype=np.uint64)
    lead[rng.random(T) < 0.2] = 0
    tabs = [lead]
    for _ in range(1, n):
        t = rng.integers(1, 1 << TAG_BITS, (T, L), dtype=np.uint64)
        t[rng.random((T, L)) < 0.3] = 0
        has = rng.random(T) < 0.8
        t[np.flatnonzero(has), rng.integers(0, L, T)[has]] = lead[has]
        tabs.append(t)
    expect = (lead > 0) & np.all([np.any(t == lead[:, None], axis=1) for t in tabs[1:]], axis=0)
    return tabs, expect


@pytest.mark.parametrize("n", [2, 3, 4])
def test_the_lead_learns_exactly_which_bins_every_site_shares(n):
    T, L = 600, 5
    tabs, expect = _tables(n, T, L, n)
    assert 50 < expect.sum() < T
    run = run_local(lambda ctx: common_bins(ctx, tabs[ctx.index], L, "psi.test"), n)
    np.testing.assert_array_equal(run.results[0], expect)
    assert all(r is None for r in run.results[1:])
    assert run.reports["dealer"]["ledger"] == []
    for name, rep in run.reports.items():
        if name == "dealer":
            continue
        kinds = {(e["label"], e["kind"]) for e in rep["ledger"]}
        want = {("psi.test.operands", "masked")} | (set() if name == "p0" else {("psi.test", "disclosed")})
        assert kinds == want, name
        assert rep["rounds"] <= 3  # the pairwise seeds, then the protocol's two rounds


def test_the_lead_cannot_evaluate_one_site_s_polynomial(monkeypatch):
    """Everything the lead holds for site j - its share alpha_j = pi . f_j + zeta'_j (recomputed here from
    the lead's messages and the dealer's zeta'_j) and j's second-round message m_j - sums to
    Q_j(a) + z_j: the zero-sharing z_j hides whether site j alone holds a. Without it, alpha_1 + m_1
    would be 0 on every bin where p1 holds the lead's tag."""
    from cipherome.mpc import correlated
    from cipherome.mpc.runtime import Context

    T, L = 2000, 3
    rng = np.random.default_rng(7)
    lead = rng.integers(1, 1 << TAG_BITS, T, dtype=np.uint64)
    t1 = rng.integers(1, 1 << TAG_BITS, (T, L), dtype=np.uint64)
    t2 = rng.integers(1, 1 << TAG_BITS, (T, L), dtype=np.uint64)
    t1[:, 0] = lead  # p1 holds every lead tag, p2 none
    seen, zeta = {}, {}
    exchange, recipe = Context.exchange, correlated.RECIPES["psi_pair"]

    def spy(self, outgoing, incoming, label, *, kind):
        res = exchange(self, outgoing, incoming, label, kind=kind)
        if self.is_lead:
            seen[label] = res
        return res

    def dealer_spy(gen, bins, lanes, site):
        items = recipe(gen, bins, lanes, site)
        if gen.dealer_side:
            zeta[f"p{site}"] = np.array(items[3])
        return items

    monkeypatch.setattr(Context, "exchange", spy)
    monkeypatch.setitem(correlated.RECIPES, "psi_pair", dealer_spy)
    run = run_local(lambda ctx: common_bins(ctx, [lead, t1, t2][ctx.index], L, "psi.test"), 3)
    assert not run.results[0].any()  # p2 lacks them all
    pw = field.powers(lead, L)
    alpha = {p: field.add(field.row_dot(pw, seen["psi.test.operands"][p]), zeta[p]) for p in ("p1", "p2")}
    whole = {p: field.add(alpha[p], seen["psi.test"][p]) for p in ("p1", "p2")}
    total = field.add(whole["p1"], whole["p2"])
    assert np.all(total != 0)  # S = Q_1(a) + Q_2(a) != 0: the protocol's sum, recomputed
    assert np.count_nonzero(whole["p1"] == 0) == 0  # Q_1(a) = 0 everywhere, yet hidden by z_1
    assert 0.45 < float(np.mean(whole["p1"] >> np.uint64(60) & np.uint64(1))) < 0.55


def test_polynomial_over_a_rows_non_zero_roots_only():
    """0 marks an empty place: the row's polynomial is scale times the product over its other roots."""
    rng = np.random.default_rng(3)
    roots = rng.integers(1, P, (4, 6), dtype=np.uint64)
    roots[0] = 0
    roots[1, [0, 3, 5]] = 0
    roots[2, 1:] = 0
    scale = rng.integers(1, P, 4, dtype=np.uint64)
    c = field.poly_from_roots(roots, scale)
    for i in range(4):
        nz = [int(r) for r in roots[i] if r]
        assert all(int(v) == 0 for v in c[i, len(nz) + 1:])  # degree = number of roots
        want = [int(scale[i])]  # scale * prod (X - r), coefficients from the constant up
        for r in nz:
            want = [(-r * want[0]) % P] + [(want[k - 1] - r * want[k]) % P for k in range(1, len(want))] + [want[-1]]
        assert [int(v) for v in c[i, :len(nz) + 1]] == want
