"""Compound-het matching: cuckoo against simple hashing versus the gene-partitioned lane table, same study.

Three in-process parties on the scale benchmark's synthetic trio study (``filter_bench_jobs``),
every gene of the study listed, one job per table design; both answers are checked against the
plaintext twin. Prints, per design, the equality tests fed to the matching (counted at
``align.eqz``), job seconds, MB sent by p0, rounds and the candidate rows. Usage:
  python -m bench.comphet_tables 30 10000 600 4 1.0   # trios, variants per site, max_member_variants, gene-table
                                                      # lanes, budget GB
"""
from __future__ import annotations

import sys
import time

from cipherome.genomics.filtering import align
from cipherome.genomics.filtering.job import run_filter
from cipherome.genomics.filtering.params import FilterParams
from cipherome.genomics.reference.filtering import reference_filter
from cipherome.mpc.local import run_local

from bench.filter_bench_jobs import synthetic_trio_site

GENES = 20000


def main(trios: int, variants: int, member: int, lanes: int, gb: float) -> None:
    sites = [synthetic_trio_site(1, s, 3, trios, variants) for s in range(3)]
    genes = [f"G{i}" for i in range(GENES)]
    want = reference_filter(sites, {"model": "comphet", "genes": genes})["rows"]
    counted = []
    real = align.eqz

    def counting(x, bits):
        counted.append(x.size)
        return real(x, bits)

    align.eqz = counting
    for name, extra in (("cuckoo", {"max_member_variants": member}), ("gene table", {"lanes": lanes})):
        counted.clear()
        p = FilterParams.from_dict({"model": "comphet", "genes": genes, **extra})
        t0 = time.perf_counter()
        run = run_local(lambda ctx, i: run_filter(ctx, p, sites[i], {"max_job_memory_gb": gb}), 3,
                        args=lambda i: {"i": i})
        sec = time.perf_counter() - t0
        rep = run.reports["p0"]
        rows = run.results[0]["rows"]
        print(f"{name}: {sum(counted) // 3} equality tests, {sec:.1f} s, {rep['bytes_sent'] / 1e6:.1f} MB sent by p0, "
              f"{rep['rounds']} rounds, {len(rows)} rows, equal to the twin: {rows == want}, "
              f"table {run.results[0].get('table')}", flush=True)
    align.eqz = real


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]), int(a[1]), int(a[2]), int(a[3]), float(a[4]))
