"""Local statistics kernels against plain numpy on the same samples (per-variant drop of missing calls)."""
from __future__ import annotations

import threading
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cipherome.genomics.io.blocks import GenotypeBlock, VariantTable
from cipherome.genomics.local.stats import (
    HET, HOM_ALT, HOM_REF, MISSING, SiteDesign, case_control_counts, concat_variant_sums,
    covariate_sums, genotype_counts, group_genotype_counts, packed_upper, unpack_upper, variant_sums)
from cipherome.genomics.local.lut import weighted_code_sums
from cipherome.genomics.io.packed import pack_dosage


def _data(seed, m=37, n=203, k=6, missing=0.05):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 3, size=(m, n)).astype(np.int8)
    g[rng.random((m, n)) < missing] = -1
    g[0] = -1  # all missing
    g[1] = 0  # monomorphic
    X = np.column_stack([np.ones(n), rng.normal(size=(n, k - 1))])
    y = rng.normal(size=n)
    mask = rng.random(n) < 0.85
    X[~mask, 2] = np.nan  # excluded samples may carry NaN
    return g, X, y, mask


def _numpy_counts(g, mask):
    s = g[:, mask]
    return np.stack([(s == 0).sum(1), (s == 1).sum(1), (s == 2).sum(1), (s == -1).sum(1)], axis=1)


@given(st.integers(0, 2**32 - 1), st.integers(1, 70), st.integers(1, 40))
def test_counts_match_numpy(seed, n, m):
    g, _, _, mask = _data(seed, m=max(m, 2), n=n, k=3)
    assert (genotype_counts(g) == _numpy_counts(g, np.ones(n, bool))).all()
    assert (genotype_counts(g, mask) == _numpy_counts(g, mask)).all()
    case = np.random.default_rng(seed).random(n) < 0.4
    cc = case_control_counts(g, case, mask)
    assert (cc[:, 1] == _numpy_counts(g, mask & case)).all()
    assert (cc[:, 0] == _numpy_counts(g, mask & ~case)).all()
    grp = np.random.default_rng(seed + 1).integers(-1, 3, size=n)
    gc = group_genotype_counts(g, grp, 3)
    for k in range(3):
        assert (gc[:, k] == _numpy_counts(g, grp == k)).all()


def test_count_columns_named():
    g = np.array([[0, 1, 2, -1, 2]], dtype=np.int8)
    c = genotype_counts(g)[0]
    assert (c[HOM_REF], c[HET], c[HOM_ALT], c[MISSING]) == (1, 1, 2, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_sums_match_numpy_on_subsets(seed):
    """Every sum equals the numpy computation over S_j (non-missing) or M_j (missing) exactly (fp tolerance)."""
    g, X, y, mask = _data(seed)
    k = X.shape[1]
    design = SiteDesign(X, y, mask)
    vs = variant_sums(g, design)
    cs = covariate_sums(X, y, mask)
    Xm, ym = X[mask], y[mask]
    assert cs.n == mask.sum()
    np.testing.assert_allclose(cs.xtx, Xm.T @ Xm, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(cs.xty, Xm.T @ ym, rtol=1e-12, atol=1e-9)
    assert cs.yty == pytest.approx(ym @ ym, rel=1e-12)
    iu, ju = packed_upper(k)
    for j in range(g.shape[0]):
        S = mask & (g[j] >= 0)
        M = mask & (g[j] < 0)
        gs, Xs, ys = g[j, S].astype(float), X[S], y[S]
        assert vs.n_obs[j] == S.sum() and vs.miss_n[j] == M.sum()
        assert vs.sum_g[j] == gs.sum() and vs.sum_gg[j] == gs @ gs
        assert vs.sum_gy[j] == pytest.approx(gs @ ys, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(vs.xtg[j], Xs.T @ gs, rtol=1e-12, atol=1e-9)
        XM = X[M]
        np.testing.assert_allclose(vs.miss_xx[j], (XM.T @ XM)[iu, ju], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(vs.miss_xy[j], XM.T @ y[M], rtol=1e-12, atol=1e-9)
        assert vs.miss_yy[j] == pytest.approx(y[M] @ y[M], rel=1e-12, abs=1e-12)
        # the per-variant design X_S'X_S recovered from the global sums and the corrections
        np.testing.assert_allclose(cs.xtx - unpack_upper(vs.miss_xx[j], k), Xs.T @ Xs, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(cs.xty - vs.miss_xy[j], Xs.T @ ys, rtol=1e-10, atol=1e-8)


def test_no_intercept_and_wide_design():
    """No all-ones column and k > 16 (several 16-column passes) still match numpy."""
    g, X, y, mask = _data(5, m=20, n=150, k=22)
    X = X[:, 1:] + 3.0
    X[~mask] = 0.0
    design = SiteDesign(X, y, mask)
    vs = variant_sums(g, design)
    gz = np.where(g < 0, 0, g).astype(float) * mask
    np.testing.assert_allclose(vs.xtg, gz @ X, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(vs.sum_gy, gz @ y, rtol=1e-12, atol=1e-9)


def test_block_input_and_concatenation():
    g, X, y, mask = _data(9, m=50)
    design = SiteDesign(X, y, mask)
    whole = variant_sums(g, design)
    parts = []
    for s in range(0, 50, 16):
        v = VariantTable.from_columns(["1"] * len(g[s:s + 16]), np.arange(len(g[s:s + 16])), ["."] * len(g[s:s + 16]),
                                      ["A"] * len(g[s:s + 16]), ["C"] * len(g[s:s + 16]))
        blk = GenotypeBlock(v, s, packed=pack_dosage(g[s:s + 16]), n_samples=g.shape[1])
        parts.append(variant_sums(blk, design))
        assert (genotype_counts(blk, mask) == _numpy_counts(g[s:s + 16], mask)).all()
    joined = concat_variant_sums(parts)
    for a, b in zip(joined, whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)


def test_weighted_sums_any_code_function():
    rng = np.random.default_rng(3)
    g = rng.integers(-1, 3, size=(30, 41)).astype(np.int8)
    w = rng.normal(size=(41, 5))
    f = rng.normal(size=(4, 5))  # value per code (0b00 hom ALT, 0b01 missing, 0b10 het, 0b11 hom REF)
    code = np.select([g == 2, g == -1, g == 1], [0, 1, 2], 3)
    exp = np.stack([(f[code, c] * w[:, c]).sum(axis=1) for c in range(5)], axis=1)
    np.testing.assert_allclose(weighted_code_sums(pack_dosage(g), w, f), exp, rtol=1e-12, atol=1e-12)


def test_concurrent_sites_in_threads():
    """Simulated sites in threads of one process: kernels stay safe (no workqueue abort) and exact."""
    datasets = [_data(s, m=64, n=400) for s in range(4)]
    expected = [variant_sums(g, SiteDesign(X, y, mk)) for g, X, y, mk in datasets]
    results = [None] * 4
    errors = []

    def run(i):
        try:
            g, X, y, mk = datasets[i]
            for _ in range(3):
                results[i] = variant_sums(g, SiteDesign(X, y, mk))
                genotype_counts(g, mk)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for a, b in zip(results, expected):
        for x, z in zip(a, b):
            np.testing.assert_allclose(x, z, rtol=1e-12, atol=1e-9)


def test_design_rejects_nan_inside_mask():
    g, X, y, mask = _data(1)
    with pytest.raises(ValueError, match="finite"):
        SiteDesign(X, y)  # the NaNs of excluded samples are now inside


def test_workqueue_layer_threads_subprocess(tmp_path):
    """Under numba's non-thread-safe "workqueue" layer, worker threads fall back to the serial kernels."""
    import subprocess
    import sys

    code = (
        "import threading, numpy as np, numba\n"
        "from cipherome.genomics.local.stats import SiteDesign, variant_sums, genotype_counts\n"
        "from cipherome.genomics.local import threads\n"
        "from cipherome.genomics.local.threads import threading_layer\n"
        "threads.SMALL_BYTES = 0  # every call of the main thread takes the parallel build\n"
        "rng = np.random.default_rng(0)\n"
        "g = rng.integers(-1, 3, size=(3000, 800)).astype(np.int8)\n"
        "X = np.column_stack([np.ones(800), rng.normal(size=(800, 3))]); y = rng.normal(size=800)\n"
        "ref = variant_sums(g, SiteDesign(X, y))\n"
        "assert threading_layer() == 'workqueue', threading_layer()\n"
        "out = []\n"
        "def run():\n"
        "    for _ in range(3):\n"
        "        out.append(variant_sums(g, SiteDesign(X, y)).xtg); genotype_counts(g)\n"
        "ts = [threading.Thread(target=run) for _ in range(4)]\n"
        "[t.start() for t in ts]; run(); [t.join() for t in ts]\n"
        "assert len(out) == 15 and all(np.allclose(o, ref.xtg) for o in out)\n"
        "print('ok')\n"
    )
    env = dict(__import__("os").environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_forked_child_uses_serial_kernels(monkeypatch):
    """After a parallel kernel ran, a fork()ed child (GNU OpenMP is not fork-safe) still computes."""
    import multiprocessing as mp

    from cipherome.genomics.local import threads

    monkeypatch.setattr(threads, "SMALL_BYTES", 0)  # the parent's calls take the parallel build
    g, X, y, mask = _data(4)
    expected = genotype_counts(g, mask)  # the parent has now launched parallel kernels
    with mp.get_context("fork").Pool(2) as pool:
        got = pool.starmap(genotype_counts, [(g, mask), (g, mask)])
    for c in got:
        assert (c == expected).all()


def test_threading_layer_known_before_any_kernel():
    """``threading_layer`` starts numba's layer by public API (no private initialiser) when no kernel ran yet."""
    import os
    import subprocess
    import sys

    code = "from cipherome.genomics.local.threads import threading_layer; print(threading_layer())"
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "workqueue", r.stdout + r.stderr


def test_openmp_workers_sleep_unless_the_environment_chose():
    """Importing the kernels' module sets OMP_WAIT_POLICY=PASSIVE before numba starts libgomp; a choice
    already in the environment is kept."""
    import os
    import subprocess
    import sys

    code = ("import os\n"
            "from cipherome.genomics.local.stats import genotype_counts\n"
            "import numpy as np, numba\n"
            "from cipherome.genomics.local import threads\n"
            "threads.SMALL_BYTES = 0  # a parallel build runs, which starts libgomp\n"
            "genotype_counts(np.zeros((64, 32), np.int8))\n"
            "print(os.environ['OMP_WAIT_POLICY'], numba.threading_layer())\n")
    for given, want in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if given:
            env["OMP_WAIT_POLICY"] = given
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and r.stdout.split()[0] == want, r.stdout + r.stderr


def test_packed_subset_and_bed_calls_give_the_same_sums_as_decoded_calls(tmp_path):
    """``subset_packed`` equals packing the decoded subset; a .bed site's packed reads (``BedCalls.packed``,
    ``StudyVariants.read_calls`` with flipped rows) give the counting kernels exactly the sums of its int8 reads."""
    from cipherome.genomics.gwas.variants import StudyVariants
    from cipherome.genomics.io.packed import subset_packed
    from cipherome.genomics.io.site_files import load_genotypes
    from cipherome.genomics.io.writers import Variants, write_bed
    from cipherome.genomics.local.stats import SiteDesign, genotype_counts, variant_sums

    rng = np.random.default_rng(4)
    for n in (1, 5, 8, 103):
        g = rng.integers(-1, 3, size=(7, n)).astype(np.int8)
        for sel in (np.arange(n), np.flatnonzero(rng.random(n) < 0.5), np.arange(n)[::-1]):
            assert np.array_equal(subset_packed(pack_dosage(g), n, sel), pack_dosage(g[:, sel]))
    n, m = 61, 40
    g = rng.integers(-1, 3, size=(m, n)).astype(np.int8)
    prefix = tmp_path / "b"
    vt = Variants(["1"] * m, np.arange(1, m + 1) * 100, [f"v{j}" for j in range(m)], ["A"] * m, ["G"] * m)
    ids = [f"s{i}" for i in range(n)]
    write_bed(prefix, g, vt, ids, ids)
    # padding bits that another writer may leave non-zero (61 samples: 3 padding codes per row, set to 01)
    bed = prefix.with_name(prefix.name + ".bed")
    raw = bytearray(bed.read_bytes())
    w = (n + 3) // 4
    for v in range(m):
        raw[3 + v * w + w - 1] |= 0b01010100
    bed.write_bytes(bytes(raw))
    _, _, read, _ = load_genotypes({"data": {"bfile": str(prefix)}})
    site = types.SimpleNamespace(read=read, read_dosage=None)
    sv = StudyVariants(np.arange(m)[::-1].copy(), rng.random(m) < 0.5, np.full(m, -1), 0)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    for mask in (rng.random(n) < 0.7, np.ones(n, bool)):  # a subset (repacked), every sample (the file's bytes)
        design = SiteDesign(X[mask], rng.normal(size=mask.sum()))
        np.testing.assert_array_equal(read(np.array([5, 0, 39]), mask), g[[5, 0, 39]][:, mask])
        for idx in (np.arange(m), np.array([3, 1, 30])):
            dense, packed = sv.read(site, idx, mask), sv.read_calls(site, idx, mask)
            assert not isinstance(packed, np.ndarray)
            np.testing.assert_array_equal(genotype_counts(packed), genotype_counts(dense))
            a, b = variant_sums(packed, design), variant_sums(dense, design)
            for name in a._fields:
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_small_inputs_take_the_serial_build(monkeypatch):
    """A call whose arrays are all under ``SMALL_BYTES`` runs the single-threaded build, even on the main thread."""
    from cipherome.genomics.local import threads

    calls = []
    run = threads.pick(lambda *a: calls.append("parallel"), lambda *a: calls.append("serial"))
    run(np.zeros(10), 3)
    monkeypatch.setattr(threads, "SMALL_BYTES", 0)
    run(np.zeros(10), 3)
    assert calls == ["serial", "parallel"]
