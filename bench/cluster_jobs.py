"""Timing whole jobs on a ``LocalCluster`` for pytest-benchmark, with what the daemons measured inside."""
from __future__ import annotations

import numpy as np

__all__ = ["time_jobs"]


def time_jobs(benchmark, cluster, run, rounds: int, what: str = "job") -> list:
    """Time ``run()`` (one whole job on ``cluster``, as the submitter sees it) ``rounds`` times after one warm-up.

    Attaches as ``extra_info``: the parties, the in-daemon seconds of each run (the slowest
    party's) as ``{what}_seconds_min``/``_median``, the MB sent per compute party, the
    dealer's MB and the rounds, of the last run. Returns the last run's per-party results.
    """
    runs = []
    benchmark.pedantic(lambda: runs.append(run()), rounds=rounds, warmup_rounds=1, iterations=1)
    secs = [max(r["seconds"] for r in one.results) for one in runs]
    last = runs[-1].results
    benchmark.extra_info.update({
        "parties": cluster.n,
        f"{what}_seconds_min": min(secs),
        f"{what}_seconds_median": float(np.median(secs)),
        "mb_sent_per_party": float(np.mean([r["bytes_sent"] for r in last])) / 1e6,
        "dealer_mb_sent": runs[-1].reports["dealer"]["bytes_sent"] / 1e6,
        "rounds": max(r["rounds"] for r in last),
    })
    return last
