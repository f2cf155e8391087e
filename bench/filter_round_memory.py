"""Memory a filtering job holds at each of its rounds (the profile behind ``filtering.budget.pipeline_plan``).

Runs one filter job on the benchmark's synthetic sites with three in-process
parties and records, at every opening of party p0, the bytes tracemalloc traces
(numpy reports its buffers to it) now and at their peak since the previous
opening, for the whole process (all three parties). Usage:
  python -m bench.filter_round_memory denovo 60 5000 0.05    # model, trios (or individuals), variants, budget GB
  python -m bench.filter_round_memory comphet 60 5000 0.05
  python -m bench.filter_round_memory carrier 200 5000 0.02
Chunks run one after the other (the sequential plan) so that each round is one
chunk's; add ``pipelined`` as a fifth argument to see the pipelined plan's rounds.
Measured (docs/filtering.md, "Memory budget"): a chunk holds its peak through the
7 rounds of the fingerprint equality test and 5-12 % of it in its later rounds.
"""
from __future__ import annotations

import sys
import time
import tracemalloc

from cipherome.genomics.filtering import budget, job
from cipherome.genomics.filtering.job import run_filter
from cipherome.genomics.filtering.params import FilterParams
from cipherome.mpc.local import run_local
from cipherome.mpc.runtime import Context

from bench.filter_bench_jobs import synthetic_site, synthetic_trio_site


def main(model: str, size: int, variants: int, gb: float, pipelined: bool = False) -> None:
    rec = []
    if not pipelined:
        job.pipeline_plan = lambda items, per, fixed, b, site, change, rounds: (
            budget.chunk_items(items, per, fixed, b, site, change), 1)
    opened = Context._open

    def hook(self, shares, label, to, kind, *args, **kw):
        if self.me == "p0":
            cur, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            rec.append((self.rounds, label, cur / 1e6, peak / 1e6, self.progress))
        return opened(self, shares, label, to, kind, *args, **kw)

    Context._open = hook
    if model == "carrier":
        svs = [synthetic_site(1, i, 3, variants, size) for i in range(3)]
        fp = {"model": "carrier", "max_variants": variants, "max_cohort_af": "0.05"}
    else:
        svs = [synthetic_trio_site(1, i, 3, size, variants) for i in range(3)]
        fp = ({"model": "denovo", "max_member_variants": 600} if model == "denovo" else
              {"model": "comphet", "lanes": 3, "genes": [f"G{i}" for i in range(1000)]})
    p = FilterParams.from_dict(fp)
    tracemalloc.start()
    t0 = time.time()
    run = run_local(lambda ctx, i: run_filter(ctx, p, svs[i], {"max_job_memory_gb": gb}), 3,
                    args=lambda i: {"i": i}, timeout=3000)
    print(f"seconds {time.time() - t0:.1f} rounds {run.rounds()} MB sent per party {run.sent_per_party() / 1e6:.1f}")
    for s in run.reports["p0"]["stages"]:
        print(f"  stage {s['stage']}: {s['rounds']} rounds, {s['bytes_sent'] / 1e6:.1f} MB, {s['seconds']:.1f} s")
    for r in rec:
        if r[4] == "secure_filter":
            print("  round %4d %-22s traced %8.1f MB  peak since the previous opening %8.1f MB" % r[:4])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:] == ["pipelined"])
