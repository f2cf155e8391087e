"""Site-owned matrices masked once (``genomics.owned``): exact products in both orientations and the
messages each party sends; the PCA's standardisation weights and its Gram opening."""
import numpy as np
import pytest

from cipherome.protocols.owned import mask_owned, owned_products, ring_matmul_tn
from cipherome.genomics.gwas.pca import standardisation_weights
from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.local import run_local


def test_ring_matmul_tn_equals_transposed_product():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size=(37, 11), dtype=np.uint64)
    b = rng.integers(0, 2**63, size=(37, 5), dtype=np.uint64)
    np.testing.assert_array_equal(ring_matmul_tn(a, b), ring_matmul(np.ascontiguousarray(a.T), b))


@pytest.mark.parametrize("n", [2, 3])
def test_owned_products_exact_both_orientations(n):
    rng = np.random.default_rng(n)
    rows, cols, L = 9, [5, 7, 4][:n], 3
    mats = [rng.integers(-1, 3, size=(rows, c)) for c in cols]
    ys = rng.normal(size=(rows, L))
    qs = [rng.normal(size=(c, L)) for c in cols]

    def job(ctx):
        shapes = {p: (rows, c) for p, c in zip(ctx.parties, cols)}
        om = mask_owned(ctx, mats[ctx.index], shapes, "test.mask")
        y = ctx.input(ctx.parties[0], ys if ctx.index == 0 else None, shape=ys.shape, frac=ctx.frac)
        qsh = [ctx.input(p, qs[i] if ctx.index == i else None, shape=qs[i].shape, frac=ctx.frac)
               for i, p in enumerate(ctx.parties)]
        t = owned_products([(om[p], y) for p in ctx.parties], transpose=True, label="test.t")
        m = owned_products([(om[p], qsh[i]) for i, p in enumerate(ctx.parties)], transpose=False, label="test.n")
        return [ctx.open(v, "test.out") for v in t + m]

    run = run_local(job, n, frac=20)
    got = run.results[0]
    for i in range(n):
        np.testing.assert_allclose(got[i], mats[i].T @ ys, atol=1e-4)
        np.testing.assert_allclose(got[n + i], mats[i] @ qs[i], atol=1e-4)
    # each mask goes once to every other party; every product message to its owner only, masked
    for i, p in enumerate([f"p{j}" for j in range(n)]):
        led = {(e["label"], tuple(e["recipients"])): e for e in run.reports[p]["ledger"]}
        for q in range(n):
            if q != i:
                assert led[("test.mask", (f"p{q}",))]["kind"] == "masked"
                assert led[("test.mask", (f"p{q}",))]["elements"] == rows * cols[i]
                assert led[("test.t", (f"p{q}",))]["elements"] == rows * L
                assert led[("test.n", (f"p{q}",))]["elements"] == cols[q] * L
        assert not [e for e in run.reports[p]["ledger"] if e["kind"] == "disclosed" and e["label"] != "test.out"]
    # products cost O(|Y|): nothing of the size of the matrices after the mask
    sent = run.reports["p0"]["bytes_sent"]
    assert sent < 8 * ((n - 1) * rows * cols[0] + 4 * n * (rows + sum(cols)) * L + 200)


def test_standardisation_weights_match_plaintext_and_drop_rare():
    rng = np.random.default_rng(3)
    V, n_site = 40, [60, 50, 70]
    N = sum(n_site)
    g = rng.integers(0, 3, size=(V, N)).astype(np.int8)
    g[0] = 0  # monomorphic -> weight 0
    g[1] = 0
    g[1, :2] = 1  # MAF 2/360 < 0.01 -> weight 0
    g[2, :5] = -1  # missing calls
    alt = np.where(g >= 0, g, 0).sum(1)
    called = (g >= 0).sum(1)
    bounds = np.concatenate([[0], np.cumsum(n_site)])

    def job(ctx):
        s = slice(bounds[ctx.index], bounds[ctx.index + 1])
        loc = np.stack([np.where(g[:, s] >= 0, g[:, s], 0).sum(1), (g[:, s] >= 0).sum(1)]).astype(np.int64)
        cnt = ctx.inputs_sum(loc, shape=(2, V), frac=0)
        return ctx.open(standardisation_weights(ctx, cnt[0], cnt[1], N, 0.01, 24), "test.x")

    x = run_local(job, 3, frac=24).results[0]
    p = alt / (2.0 * called)
    sd = np.sqrt(2 * p * (1 - p))
    a, c = 1 / sd[2:], 2 * p[2:] / sd[2:]
    np.testing.assert_allclose(x[2:, 0, 0], a * a, rtol=1e-6)
    np.testing.assert_allclose(x[2:, 0, 1], a * c, rtol=1e-6)
    np.testing.assert_allclose(x[2:, 1, 1], c * c, rtol=1e-6)
    np.testing.assert_array_equal(x[:2], 0.0)


def test_open_gram_equals_plaintext_gram():
    from cipherome.genomics.gwas.pca import open_gram

    rng = np.random.default_rng(5)
    p = rng.normal(size=(50, 6)) * 3

    def job(ctx):
        sh = ctx.input(ctx.parties[1], p if ctx.index == 1 else None, shape=p.shape, frac=ctx.frac)
        return open_gram(ctx, sh, "test.gram")

    run = run_local(job, 3, frac=24)
    for r in run.results:
        np.testing.assert_allclose(r, p.T @ p, atol=1e-5)
    led = {e["label"]: e for e in run.reports["p0"]["ledger"]}
    assert led["test.gram"]["kind"] == "disclosed" and led["test.gram"]["elements"] == 36
    assert led["pca.gram_mask"]["kind"] == "masked" and led["pca.gram_mask"]["elements"] == 300
