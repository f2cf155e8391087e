"""Memory a filtering job holds at each of its rounds (the profile behind ``filtering.budget.pipeline_plan``).

Runs one filter job on the benchmark's synthetic sites with three in-process
parties and records, at every opening of party p0, the bytes tracemalloc traces
(numpy reports its buffers to it) now and at their peak since the previous
opening, for the whole process (all three parties and the dealer). Usage:
  python -m bench.filter_round_memory denovo 60 5000 0.05    # model, trios (or individuals), variants, budget GB
  python -m bench.filter_round_memory comphet 60 5000 0.05
  python -m bench.filter_round_memory carrier 200 5000 0.02
Chunks run one after the other (the sequential plan) so that each round is one
chunk's; add ``pipelined`` as a fifth argument to see the pipelined plan's rounds.
After the per-round lines it prints the chunk profile (``chunk_profile``): a
chunk's peak and, per round, the memory it holds while it waits at that round's
opening, as a fraction of the peak, next to the budget's model
(``budget.held_profile``). Measured: docs/filtering.md, "Memory budget".
"""
from __future__ import annotations

import sys
import threading
import time
import tracemalloc

import numpy as np

from cipherome.genomics.filtering import budget, job
from cipherome.genomics.filtering.job import run_filter
from cipherome.genomics.filtering.params import FilterParams
from cipherome.mpc.local import run_local
from cipherome.mpc.runtime import Context

from bench.filter_bench_jobs import synthetic_site, synthetic_trio_site

__all__ = ["record_openings", "chunk_profile", "profile_job"]

#: seconds a party waits at an opening for the others before the profile gives up (a party that failed)
_PHASE_TIMEOUT = 600.0


def record_openings(fn, parties: int = 3):
    """Run ``fn()`` under tracemalloc; returns (its value, [(round, label, traced, peak since the previous
    opening, stage)] at every opening of party p0). Bytes are the whole process's (all parties).

    tracemalloc cannot tell the party threads apart, so they are brought into phase instead: at every
    opening each of the ``parties`` compute parties waits for the others (a barrier) before p0 reads the
    counters, and again before any of them goes on. Every reading is then the parties' memory at the same
    opening of the same round, whatever the machine's load (without the barrier a party that ran ahead
    added its next round's arrays to p0's reading)."""
    rec = []
    opened = Context._open
    phase = threading.Barrier(parties, timeout=_PHASE_TIMEOUT)

    def hook(self, shares, label, to, kind, *args, **kw):
        phase.wait()
        if self.me == "p0":
            cur, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            rec.append((self.rounds, label, cur, peak, self.progress))
        phase.wait()
        return opened(self, shares, label, to, kind, *args, **kw)

    Context._open = hook
    tracemalloc.start()
    try:
        out = fn()
    finally:
        tracemalloc.stop()
        Context._open = opened
    return out, rec


def chunk_profile(rec: list, rounds: int, stage: str = "secure_filter", quantiles=None):
    """(a chunk's peak bytes, per round the fraction of it held at that round's opening): medians over chunks
    (with ``quantiles`` (q, ...): (peaks, fractions) at each of those quantiles instead).

    ``rec`` from ``record_openings`` of a run whose chunks ran one after the other, ``rounds``
    each. A chunk's baseline is the memory traced at the previous chunk's last opening (the
    first chunk is skipped); its peak is the largest peak over its rounds minus that baseline,
    and "held at round k" the memory traced at its k-th opening minus the baseline.
    """
    rows = [r for r in rec if r[4] == stage]
    chunks = [rows[i:i + rounds] for i in range(0, len(rows) - rounds + 1, rounds)]
    peaks, fracs = [], []
    for prev, ch in zip(chunks, chunks[1:]):
        base = prev[-1][2]
        peak = max(max(r[3] for r in ch), max(r[2] for r in ch)) - base
        if peak <= 0:
            continue
        peaks.append(peak)
        fracs.append([max(0.0, (r[2] - base) / peak) for r in ch])
    if not fracs:
        raise ValueError("chunk_profile needs at least two chunks")
    if quantiles is not None:
        return ([float(np.quantile(peaks, q)) for q in quantiles],
                [[float(x) for x in np.quantile(np.array(fracs), q, axis=0)] for q in quantiles])
    return float(np.median(peaks)), [float(x) for x in np.median(np.array(fracs), axis=0)]


def _sites(model: str, size: int, variants: int):
    if model == "carrier":
        svs = [synthetic_site(1, i, 3, variants, size) for i in range(3)]
        fp = {"model": "carrier", "max_variants": variants, "max_cohort_af": "0.05"}
    else:
        svs = [synthetic_trio_site(1, i, 3, size, variants) for i in range(3)]
        fp = ({"model": "denovo", "max_member_variants": 600} if model == "denovo" else
              {"model": "comphet", "lanes": 3, "genes": [f"G{i}" for i in range(1000)]})
    return svs, FilterParams.from_dict(fp)


def profile_job(model: str, size: int, variants: int, gb: float, pipelined: bool = False) -> dict:
    """Run ``model`` on the synthetic sites under a budget of ``gb`` per site with the openings recorded.

    Returns {"run", "records", "plan" (items per chunk, window, rounds per chunk, products), "seconds"}.
    Sequential (default): the budget's chunk size (``chunk_items``), chunks one after the other.
    """
    svs, p = _sites(model, size, variants)
    plans = []
    real = job.pipeline_plan

    def plan(items, per, fixed, b, site, change, rounds, products=False):
        if pipelined:
            got = real(items, per, fixed, b, site, change, rounds, products)
        else:
            got = (budget.chunk_items(items, per, fixed, b, site, change), 1)
        plans.append(got + (rounds, products))
        return got

    job.pipeline_plan = plan
    t0 = time.time()
    try:
        run, rec = record_openings(lambda: run_local(
            lambda ctx, i: run_filter(ctx, p, svs[i], {"max_job_memory_gb": gb}), 3, args=lambda i: {"i": i},
            timeout=3000))
    finally:
        job.pipeline_plan = real
    return {"run": run, "records": rec, "plan": plans[0] if plans else None, "seconds": time.time() - t0}


def main(model: str, size: int, variants: int, gb: float, pipelined: bool = False) -> None:
    got = profile_job(model, size, variants, gb, pipelined)
    run, rec = got["run"], got["records"]
    chunk, window, rounds, products = got["plan"]
    print(f"seconds {got['seconds']:.1f} rounds {run.rounds()} MB sent per party {run.sent_per_party() / 1e6:.1f}")
    print(f"plan: {chunk} item(s) per chunk, {window} in flight, {rounds} rounds per chunk")
    for s in run.reports["p0"]["stages"]:
        print(f"  stage {s['stage']}: {s['rounds']} rounds, {s['bytes_sent'] / 1e6:.1f} MB, {s['seconds']:.1f} s")
    for r in rec:
        if r[4] == "secure_filter":
            print("  round %4d %-22s traced %8.1f MB  peak since the previous opening %8.1f MB"
                  % (r[0], r[1], r[2] / 1e6, r[3] / 1e6))
    if not pipelined:
        try:
            peak, fr = chunk_profile(rec, rounds)
        except ValueError as exc:
            print(f"no chunk profile: {exc}")
            return
        model_fr = budget.held_profile(rounds, products)
        print(f"chunk profile (median over chunks): peak {peak / 1e6:.1f} MB above the baseline")
        print("  held at each round / peak: " + " ".join(f"{x:.2f}" for x in fr))
        lo, hi = chunk_profile(rec, rounds, quantiles=(0.1, 0.9))[1]
        print("  10-90 % over chunks: " + " ".join(f"{a:.2f}-{b:.2f}" for a, b in zip(lo, hi)))
        print("  budget model (held_profile): " + " ".join(f"{x:.2f}" for x in model_fr))
        print(f"  window {rounds}: measured 1 + sum of the others {1 + sum(sorted(fr)[::-1][:rounds - 1]):.2f}, "
              f"model in_flight {budget.in_flight(rounds, rounds, products):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:] == ["pipelined"])
