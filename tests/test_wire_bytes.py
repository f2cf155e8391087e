"""The byte savings of issue 16, each against its plain counterpart.

* narrow openings (``open_masked(bits=k)``) give the value mod 2^k and send ceil(k/8) bytes;
* packed XOR openings of boolean lane rows give the XOR of the parties' lane bits;
* the paired Neumann series (``FixedOperand.series_gram``) equals sum_(s <= 2h) Z B^s Z';
* variant QC's check width covers every check at the extremes of the counts, and the
  integer-count HWE test decides as the plaintext G test away from the threshold.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas import qc as gwas_qc
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.reference.qc import hwe_lrt
from cipherome.mpc.local import run_local
from cipherome.mpc.ring import decode, encode
from cipherome.mpc.shares import Shared
from cipherome.protocols.bits import lanes, open_bits, pack_lanes, unpack_lanes
from cipherome.protocols.reuse import fix

U64 = np.uint64


@pytest.mark.parametrize("s", [2, 3])
def test_pack_lanes_round_trip(s):
    rng = np.random.default_rng(s)
    mask = lanes((1 << s) - 1).mask
    for n in (1, 7, 64, 1001):
        w = rng.integers(0, 2**63, n, dtype=np.uint64) * U64(2) + rng.integers(0, 2, n, dtype=np.uint64)
        w &= mask
        packed = pack_lanes(w, s)
        assert packed.size == -(-n // (64 // (64 // s)))
        np.testing.assert_array_equal(unpack_lanes(packed, s, n), w)


def test_narrow_and_xor_openings():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**64, 500, dtype=np.uint64)
    rows = rng.integers(0, 2**64, (3, 4, 9), dtype=np.uint64)

    def job(ctx):
        share = x if ctx.is_lead else np.zeros_like(x)
        sent0 = ctx.transport.stats.bytes_sent
        (c,) = ctx.open_masked([share], "narrow", bits=20)
        narrow = ctx.transport.stats.bytes_sent - sent0
        (bits_rows,) = open_bits(ctx, [rows[ctx.index] & lanes(ctx.n).mask], "packed")
        return c, narrow, bits_rows

    run = run_local(job, 3)
    for c, narrow, got in run.results:
        np.testing.assert_array_equal(c, x & U64((1 << 20) - 1))
        assert narrow == 2 * 500 * 3  # 3 bytes per value to each of 2 peers
        want = (rows[0] ^ rows[1] ^ rows[2]) & lanes(3).mask
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("packed", [False, True])
def test_series_gram_matches_the_plain_series(packed):
    """B given as (V, k, k) with symmetric=True, or as its upper triangles with packed_k=k: the same Q."""
    rng = np.random.default_rng(2)
    V, p, k, frac = 7, 2, 5, 24
    z = rng.normal(size=(V, p, k))
    a = rng.normal(size=(V, k, k)) * 0.15
    b = (a + a.transpose(0, 2, 1)) / 2
    half = np.array([3, 2, 2, 1, 1, 0, 0])

    def job(ctx):
        zs = ctx.input("p0", z if ctx.is_lead else None, shape=z.shape, frac=frac)
        if packed:
            iu, ju = np.triu_indices(k)
            bs = ctx.input("p1", b[:, iu, ju] if ctx.index == 1 else None, shape=(V, len(iu)), frac=frac)
            with pytest.raises(ValueError, match="upper triangle"):
                fix(bs, "b", packed_k=k + 1)
            fixed = fix(bs, "b", packed_k=k)
        else:
            bs = ctx.input("p1", b if ctx.index == 1 else None, shape=b.shape, frac=frac)
            fixed = fix(bs, "b", symmetric=True)
        q = fixed.series_gram(zs, half, "series")
        return ctx.open(q, "q"), ctx.open(fixed.right_mul(zs, "product"), "zb")  # the product unpacks E and R

    got, zb = run_local(job, 3, frac=frac).results[0]
    for j in range(V):
        want = sum(z[j] @ np.linalg.matrix_power(b[j], s) @ z[j].T for s in range(2 * half[j] + 1))
        np.testing.assert_allclose(got[j], want, atol=1e-5)
    np.testing.assert_allclose(zb, z @ b, atol=1e-5)


def test_check_bits_cover_every_check():
    for n, geno, maf, mcs in [(10_000, "0.1", "0.01", 0), (300, "0.05", "0.2", 5), (2**22 - 1, "0.123457", "0.000001", 10)]:
        tg, dg = gwas_qc.rational(float(geno))
        tm, dm = gwas_qc.rational(float(maf))
        bits = gwas_qc.check_bits(n, 1, [(tg, dg), (tm, dm)], mcs)
        lim = 1 << (bits - 1)
        na = 2 * n
        extremes = [na, -na, tg * n, -n * dg, na * dm, -na * tm, na - 1, -mcs, na - 1]
        assert all(-lim <= v < lim for v in extremes), (n, bits)
    assert gwas_qc.check_bits(10_000, 1, [(1, 10), (1, 100)]) == 22


def test_hwe_from_integer_counts_decides_as_the_g_test():
    rng = np.random.default_rng(3)
    n = 2000
    p = rng.uniform(0.01, 0.5, 400)
    het_shift = rng.choice([0.0, 0.3, -0.3], 400)  # some variants far from HWE
    pa = np.clip(p**2 - het_shift * p * (1 - p) / 2, 0, 1)
    pb = np.clip((1 - p) ** 2 - het_shift * p * (1 - p) / 2, 0, 1)
    aa = rng.binomial(n, pa)
    bb = rng.binomial(n - aa, np.clip(pb / np.maximum(1 - pa, 1e-12), 0, 1))
    counts = np.column_stack([aa, n - aa - bb, bb, np.zeros(400, int)]).astype(np.int64)
    counts[:5, :3] = [[n, 0, 0], [0, n, 0], [0, 0, n], [n - 1, 1, 0], [0, 0, 0]]  # zero cells
    params = GwasParams(hwe=1e-6)
    split = [counts // 3, counts // 3, counts - 2 * (counts // 3)]
    res = run_local(lambda ctx: gwas_qc.secure_variant_qc(ctx, split[ctx.index], n, params), 3, frac=24).results[0]
    g2, pv = hwe_lrt(counts)
    far = np.abs(np.log10(np.maximum(pv, 1e-300)) + 6) > 0.05
    assert far.sum() > 300
    np.testing.assert_array_equal(res.passed[far], (pv >= 1e-6)[far])


def test_hwe_runs_last_on_the_variants_passing_the_other_filters():
    """--hwe is tested only where every other filter passes (opened as ``qc.prefilter``): the six
    logarithms' openings scale with that count, and the pass set is the same as testing all."""
    rng = np.random.default_rng(11)
    n, V = 1500, 300
    p = np.where(rng.random(V) < 0.5, rng.uniform(0.001, 0.02, V), rng.uniform(0.05, 0.5, V))  # half rare
    aa = rng.binomial(n, (1 - p) ** 2)
    bb = rng.binomial(n - aa, np.clip(p**2 / np.maximum(1 - (1 - p) ** 2, 1e-12), 0, 1))
    counts = np.column_stack([aa, n - aa - bb, bb, np.zeros(V, int)]).astype(np.int64)
    counts[:20, 1] -= counts[:20, 1] // 2  # some common variants far from HWE
    counts[:20, 0] += counts[:20, 1]
    split = [counts // 3, counts // 3, counts - 2 * (counts // 3)]

    def run(params):
        r = run_local(lambda ctx: gwas_qc.secure_variant_qc(ctx, split[ctx.index], n, params), 3, frac=24)
        led = {e["label"]: e["elements"] for e in r.reports["p0"]["ledger"]}
        return r.results[0], led

    both, led_both = run(GwasParams(hwe=1e-6, maf=0.03))
    maf_only, _ = run(GwasParams(maf=0.03))
    hwe_only, led_hwe = run(GwasParams(hwe=1e-6))
    pre = int(maf_only.passed.sum())
    assert 0.3 * V < pre < 0.7 * V
    assert led_both["qc.prefilter"] == V and "qc.prefilter" in led_hwe
    # the log's normalisation opens a fixed number of elements per input: 6 inputs per tested variant
    assert led_both["normalize"] * V == led_hwe["normalize"] * pre
    np.testing.assert_array_equal(both.passed, maf_only.passed & hwe_only.passed)
    assert 0 < both.failed_counts["hwe"] <= hwe_only.failed_counts["hwe"]
    assert (hwe_only.passed[:20] == 0).sum() >= 5
