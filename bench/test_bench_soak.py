"""Soak: many small GWAS jobs on one set of daemons; resources per daemon before and after.

3 sites and a dealer as real daemons (``LocalCluster``), a small simulated study
(300 samples, 200 variants, PLINK files per site). After one warm-up job the RSS,
threads and open file descriptors of every daemon are read from /proc; then
``SOAK_SEQ`` (default 200) jobs run one after another and ``SOAK_CONC`` (default
20) at once (two submitter threads each), and the same figures are read again.
Every job must end done with the same P values, no daemon may go down, threads
and descriptors must return to their level, and RSS may grow only within the
retention policy (finished results are kept up to ``keep_results_mb``).
Run: python -m pytest bench/test_bench_soak.py --benchmark-only -p no:cacheprovider -o addopts='' -s
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.simulate import demo_config, simulate_study, write_study
from cipherome.mpc.launcher import LocalCluster

SEQ = int(os.environ.get("SOAK_SEQ", "200"))
CONC = int(os.environ.get("SOAK_CONC", "20"))
PARAMS = GwasParams(pheno_name="quant_trait", maf=0.01, block=128).to_dict()


def usage(pid: int) -> dict:
    """RSS (MB), threads and open file descriptors of a process, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def snapshot(cluster) -> dict:
    return {name: usage(proc.pid) for name, proc in cluster.procs.items()}


@pytest.mark.timeout(7200)
def test_soak(benchmark, tmp_path):
    cfg = demo_config().replace(n_samples=300, n_variants=200, seed=5)
    files = write_study(simulate_study(cfg), tmp_path / "data", prefix="s", pooled=False, sites=True, vcf=False)
    data = [{"bfile": str(files[f"site{s + 1}"]["bed"].with_suffix("")), "pheno": str(files[f"site{s + 1}"]["pheno"]),
             "covar": str(files[f"site{s + 1}"]["covar"])} for s in range(cfg.n_sites)]
    policy = {"workloads": ["gwas"], "max_concurrent_jobs": CONC + 2}
    with LocalCluster(3, workdir=tmp_path / "cluster", data=data, policy=policy, log_level="WARNING",
                      round_timeout=120, start_timeout=300) as c:
        ref = np.asarray(c.run("gwas", PARAMS).results[0]["assoc"]["columns"]["P"], float)
        before = snapshot(c)

        def check(run):
            p = np.asarray(run.results[0]["assoc"]["columns"]["P"], float)
            np.testing.assert_allclose(-np.log10(p), -np.log10(ref), atol=1e-3, rtol=0)

        timing, mid = {}, {}

        def soak():
            t0 = time.perf_counter()
            for _ in range(SEQ):
                check(c.run("gwas", PARAMS))
            timing["sequential_s"] = time.perf_counter() - t0
            time.sleep(2.0)
            mid.update(snapshot(c))
            t0 = time.perf_counter()
            with ThreadPoolExecutor(CONC) as ex:
                for run in ex.map(lambda _: c.run("gwas", PARAMS), range(CONC)):
                    check(run)
            timing["concurrent_s"] = time.perf_counter() - t0

        benchmark.pedantic(soak, rounds=1, iterations=1)
        time.sleep(2.0)  # streams and job threads of the last jobs wind down
        after = snapshot(c)
        for name, proc in c.procs.items():
            assert proc.poll() is None, f"daemon {name} went down"
    print(f"\nsoak: {SEQ} sequential GWAS in {timing['sequential_s']:.1f} s, {CONC} concurrent in "
          f"{timing['concurrent_s']:.1f} s")
    print("daemon   RSS MB: before / after sequential / after concurrent; threads; fds (same three points)")
    for name in before:
        b, m, a = before[name], mid[name], after[name]
        print(f"{name:8} {b['rss_mb']:7.1f} {m['rss_mb']:7.1f} {a['rss_mb']:7.1f};  {b['threads']:4d} {m['threads']:4d} "
              f"{a['threads']:4d};  {b['fds']:4d} {m['fds']:4d} {a['fds']:4d}")
    benchmark.extra_info.update(seq=SEQ, conc=CONC, **timing, before=before, after_sequential=mid, after=after)
    for name in before:
        b, m, a = before[name], mid[name], after[name]
        # sequential jobs: nothing accumulates per job (a few gRPC pool threads may start once)
        assert m["fds"] <= b["fds"] + 8 and m["threads"] <= b["threads"] + 8, (name, b, m)
        # concurrent jobs: descriptors return; the gRPC server pool keeps its idle workers (at most 256)
        assert a["fds"] <= b["fds"] + 8 and a["threads"] <= b["threads"] + 256, (name, b, a)
        # memory: the retained results (keep_results_mb) and allocator slack, not growth per job
        assert m["rss_mb"] <= b["rss_mb"] + 100 and a["rss_mb"] <= b["rss_mb"] + 200, (name, b, m, a)
