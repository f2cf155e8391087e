"""The GWAS's secure variant intersection (``genomics/gwas/variants.py``, ``protocols/psi.py``) alone.

3 sites with m variants each, 90% of them common, 20% of the other sites' records
with REF/ALT swapped; in process (the protocol's real messages over the in-process
transport, so time is the parties' work on this machine's cores, without TLS).
Reports seconds, MB sent per party and rounds in ``extra_info``. Through daemons the
same step is the GWAS's ``variant_intersection`` stage (bench/test_bench_gwas.py).
"""
import os

import numpy as np
import pytest

from cipherome.genomics.gwas.variants import common_variants
from cipherome.genomics.io.blocks import VariantTable
from cipherome.mpc.local import run_local

SIZES = [20000, 100000] + ([1000000] if os.environ.get("CIPHEROME_BENCH_LARGE") else [])


def _site_tables(m: int, n: int = 3, seed: int = 0) -> list[VariantTable]:
    rng = np.random.default_rng(seed)
    shared = int(0.9 * m)
    tables = []
    for s in range(n):
        idx = np.concatenate([np.arange(shared), 10**8 + s * 10**7 + np.arange(m - shared)])
        swap = rng.random(m) < 0.2 if s else np.zeros(m, bool)
        tables.append(VariantTable.from_columns(
            np.full(m, "1", dtype=object), 1000 + 10 * idx, np.array([f"v{i}" for i in idx], dtype=object),
            np.where(swap, "G", "A").astype(object), np.where(swap, "A", "G").astype(object)))
    return tables


@pytest.mark.parametrize("m", SIZES)
def test_secure_variant_intersection(benchmark, m):
    sites = _site_tables(m)
    runs = []
    benchmark.pedantic(lambda: runs.append(run_local(
        lambda ctx: common_variants(ctx, sites[ctx.index], None, f"site{ctx.index}"), 3, timeout=3600)),
        rounds=1, iterations=1, warmup_rounds=0)
    run = runs[-1]
    assert len(run.results[0]) == int(0.9 * m)
    assert all(len(r) == int(0.9 * m) for r in run.results)
    benchmark.extra_info["mb_sent_per_party"] = {p: round(r["bytes_sent"] / 1e6, 2) for p, r in run.reports.items()}
    benchmark.extra_info["rounds_lead"] = run.reports["p0"]["rounds"]
