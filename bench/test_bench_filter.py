"""Variant-filtering benchmarks over the network path: 3 sites and a dealer as daemons (mutual TLS) on loopback.

Each benchmark times whole jobs as the submitter sees them and attaches, from
inside the daemons, the job's seconds (slowest party), MB sent per compute party
and rounds. Data are synthetic and made inside each daemon from public sizes
(``filter_bench_jobs``, loaded as a plugin), so only the secure work is measured.
Targets (issue 8): max-shared gene over 1,000 patients x 20,000 genes < 2 s;
cohort filter over 10^6 hashed slots < 10 s; trio de novo over 10^5 slots < 1 s;
Jagadeesh et al. 2017 demo sizes (20,000 genes x 2-bit counts max; 50,000-element
intersection), which Akguen et al. 2020 report beating by 2.5x (max), 1122x (set
difference) and 341x (intersection).
Run: python -m pytest bench/test_bench_filter.py --benchmark-only -p no:cacheprovider -o addopts=''
"""
from __future__ import annotations

from pathlib import Path

import pytest

from cipherome.mpc.client import JobFailed
from bench.cluster_jobs import time_jobs
from cipherome.mpc.launcher import LocalCluster

BENCH = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, plugins=["filter_bench_jobs"], pythonpath=[str(BENCH)], log_level="WARNING",
                      round_timeout=600) as c:
        yield c


def _run(cluster, job: str, params: dict):
    """One job; a table with one lane per slot can overflow by chance (a clear job failure): draw a new key."""
    for attempt in range(5):
        try:
            return cluster.run(job, params)
        except JobFailed as exc:
            if "fall into one slot" not in str(exc) or attempt == 4:
                raise


def _bench(benchmark, cluster, job: str, params: dict, rounds: int = 3):
    return time_jobs(benchmark, cluster, lambda: _run(cluster, job, params), rounds, "job")


@pytest.mark.benchmark(group="filter max-gene 1000 patients x 20000 genes")
def test_max_gene_1000x20000(benchmark, cluster):
    last = _bench(benchmark, cluster, "filter.bench.genes", {"op": "max", "genes": 20000, "patients": 1000})
    assert last[0]["result"] >= 1


@pytest.mark.benchmark(group="filter cohort 1e6 slots")
def test_cohort_filter_1e6_slots(benchmark, cluster):
    params = {"variants": 100, "individuals": 300,
              "filter": {"model": "carrier", "table_size": 10**6, "lanes": 1, "max_cohort_af": "0.05"}}
    _bench(benchmark, cluster, "filter.bench.model", params)


@pytest.mark.benchmark(group="filter cohort 10^4 variants per site")
def test_cohort_filter_10k_variants_per_site(benchmark, cluster):
    from cipherome.genomics.filtering.keys import suggest_table

    t, lanes = suggest_table(10_000)
    params = {"variants": 10_000, "individuals": 300,
              "filter": {"model": "carrier", "table_size": t, "lanes": lanes, "max_cohort_af": "0.05"}}
    _bench(benchmark, cluster, "filter.bench.model", params, rounds=2)


@pytest.mark.benchmark(group="filter trio de novo 1e5 slots")
def test_denovo_1e5_slots(benchmark, cluster):
    params = {"variants": 40, "trio": True, "filter": {"model": "denovo", "table_size": 10**5, "lanes": 1}}
    _bench(benchmark, cluster, "filter.bench.model", params)


@pytest.mark.benchmark(group="filter trio de novo 1e5 slots x 2 lanes")
def test_denovo_1e5_slots_2_lanes(benchmark, cluster):
    params = {"variants": 500, "trio": True, "filter": {"model": "denovo", "table_size": 10**5, "lanes": 2}}
    _bench(benchmark, cluster, "filter.bench.model", params)


@pytest.mark.benchmark(group="filter Jagadeesh max 20000 genes x 2 bits")
def test_jagadeesh_max_20000x2bits(benchmark, cluster):
    _bench(benchmark, cluster, "filter.bench.genes", {"op": "max", "genes": 20000, "patients": 3, "bits": 2})


@pytest.mark.benchmark(group="filter Jagadeesh intersection 50000")
def test_jagadeesh_intersection_50000(benchmark, cluster):
    _bench(benchmark, cluster, "filter.bench.genes", {"op": "intersect", "genes": 50000, "patients": 3})
