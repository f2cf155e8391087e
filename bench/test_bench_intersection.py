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


GWAS_SIZES = [(2000, 20000)] + ([(10000, 100000)] if os.environ.get("CIPHEROME_BENCH_LARGE") else [])


@pytest.mark.parametrize("shared", [False, True], ids=["secure", "consented_lists"])
@pytest.mark.parametrize("n,m", GWAS_SIZES, ids=[f"{n}x{m}" for n, m in GWAS_SIZES])
def test_gwas_with_and_without_the_secure_intersection(benchmark, tmp_path, n, m, shared):
    """The same GWAS (QC + linear, 12 covariates) through real daemons, with the secure intersection
    (default) and with every site consenting to exchange its keyed variant list (``share_variant_list``,
    one round): the difference is the secure intersection's cost; its stage is reported on its own."""
    from bench.gwas_data import gwas_site_tables
    from cipherome.genomics.gwas.params import GwasParams
    from cipherome.mpc.launcher import LocalCluster

    params = GwasParams(pheno_name="quant_trait", geno=0.05, maf=0.01, hwe=1e-6)
    policy = {"share_variant_list": True} if shared else None
    with LocalCluster(3, workdir=tmp_path / "c", data=gwas_site_tables(n, m), policy=policy,
                      log_level="WARNING") as cluster:
        runs = []
        benchmark.pedantic(lambda: runs.append(cluster.run("gwas", params.to_dict(), timeout=3600)),
                           rounds=1, iterations=1, warmup_rounds=1)
    lead = runs[-1].reports["p0"]
    stage = next(s for s in lead["stages"] if s["stage"] == "variant_intersection")
    benchmark.extra_info.update(
        intersection_s=round(stage["seconds"], 2), intersection_mb_lead=round(stage["bytes_sent"] / 1e6, 2),
        intersection_rounds=stage["rounds"], total_rounds_lead=lead["rounds"],
        total_mb_lead=round(lead["bytes_sent"] / 1e6, 1), tested=len(runs[-1].results[0]["tested"]),
        load_avg=os.getloadavg()[0])
