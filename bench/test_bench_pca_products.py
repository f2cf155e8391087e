"""The pooled PCA's two local products per Krylov pass: int8 (AVX-512 VNNI), float32 table sums over base-3
codes (``genomics.local.call_tables``, hard calls without VNNI) and float32 SGEMM (dosages).

One site of the 10,000 x 100,000 benchmark study: Z' (M x n_s) with M = 96,000 PCA variants and
n_s = 3,334 samples, hard calls with 1% missing, b = 20 Krylov columns (the job's default is b = 12 in
pooled mode; ``B`` here for comparison with the earlier figures).
Timed per product, one thread, with the columns quantised to 16 bits (the default) and to 24 bits (a site of a 3-site study on this 2-core machine has about one core):
``left`` = Z' Y (M x b), ``right`` = Z U (n_s x b), through ``pca_operator.StandardisedCalls``
exactly as ``pca_pooled`` calls them. The build (calls to G in
place, the transposed copy, the missing-call lists; or the float32 standardisation) is timed once.

Run: ``python -m pytest bench/test_bench_pca_products.py --benchmark-only -p no:cacheprovider -o addopts='' -s``
"""
from __future__ import annotations

import time

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from cipherome.genomics.gwas.pca_operator import DIGITS, KERNEL_ENV, StandardisedCalls
from cipherome.genomics.local import vnni

M, N_S, B = 96_000, 3_334, 20
_VNNI = pytest.mark.skipif(not vnni.available(), reason="no VNNI")
#: (kernel, digits per quantised column): int8 at the default 16 bits and at 24 bits, tables, float32
PATHS = [pytest.param("vnni", DIGITS, id=f"int8-vnni-{8 * DIGITS}bit", marks=_VNNI),
         pytest.param("vnni", 3, id="int8-vnni-24bit", marks=_VNNI), pytest.param("tables", DIGITS, id="float32-tables"),
         pytest.param("float", DIGITS, id="float32-sgemm")]


@pytest.fixture(scope="module")
def calls():
    rng = np.random.default_rng(2026)
    g = rng.integers(0, 3, (M, N_S)).astype(np.int8)
    g[rng.random((M, N_S)) < 0.01] = -1
    p = rng.uniform(0.01, 0.99, M)
    return g, p, rng.standard_normal((N_S, B)), rng.standard_normal((M, B))


@pytest.mark.parametrize("kernel,digits", PATHS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_pca_product(benchmark, calls, kernel, digits, side, monkeypatch):
    g, p, y, u = calls
    monkeypatch.setenv(KERNEL_ENV, "" if kernel == "vnni" else kernel)
    with threadpool_limits(1):
        old = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            t = time.perf_counter()
            op = StandardisedCalls(g.copy(), p, np.ones(M, bool), digits=digits)
            assert op.kernel == kernel
            build = time.perf_counter() - t
            f, x = (op.left, y) if side == "left" else (op.right, u)
            f(x)  # compilation (cached) and first allocation
            benchmark.pedantic(f, args=(x,), rounds=5, iterations=1)
        finally:
            numba.set_num_threads(old)
    path = f"int8 {8 * digits}-bit" if op.int8 else f"float32 {kernel}"
    benchmark.extra_info.update(build_s=round(build, 3), shape=f"{M}x{N_S}x{B}", path=path)
    print(f"\n{side} {path}: best {benchmark.stats['min']:.3f} s, build {build:.2f} s")
