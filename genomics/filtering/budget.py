"""The memory budget of a filtering job: plan chunk sizes from public sizes, refuse a plan that cannot fit.

Each site's policy may set ``max_job_memory_gb`` (default: an eighth of the
machine's physical memory); the job uses the smallest budget of the study, as
every party must cut the work into the same chunks. The secure matching is the
peak: a batched equality test holds about :data:`BYTES_PER_TEST` bytes per
compared lane pair at each party (shares, masks, AND layers; measured on the
de novo path, see docs/filtering.md), so a chunk of work items (trios, or
slots of a cohort table) holds ``tests per item x BYTES_PER_TEST``. Memory that
stays for the whole job (anchor tables and their results) is planned apart. A
plan whose fixed part plus one item exceeds the budget is refused before any
table is built, with a message saying what to change.

Chunks are pipelined (``mpc.pipeline``): up to ``window`` chunks are in flight,
chunk i running its round t - i at step t, and the openings of a step go in one
round, so k chunks of R rounds take about k + R - 1 rounds instead of k R. The
chunks in flight hold memory at once, so the plan bounds their sum. Measured per
round (tracemalloc, de novo, comphet and carrier; docs/filtering.md): a chunk
holds its peak through the :data:`HIGH_ROUNDS` rounds of the fingerprint
equality test (its dealer material, masks and bit-sliced state live until its
last AND layer) and about :data:`LOW_FRACTION` of it in its later rounds (the
rule's comparisons on one value per anchor lane). Chunks in flight are at
distinct rounds, so at most min(window, HIGH_ROUNDS) of them are at the peak:
``pipeline_plan`` picks the chunk size and window with the fewest rounds whose
``fixed + chunk x per_item x (min(w, H) + LOW_FRACTION x max(0, w - H))`` fits.
"""
from __future__ import annotations

import os

from cipherome.genomics.errors import InputError

__all__ = ["BYTES_PER_TEST", "DEFAULT_FRACTION", "HIGH_ROUNDS", "LOW_FRACTION", "site_budget", "chunk_items",
           "pipeline_plan", "plan_rounds", "GB"]

GB = 1 << 30
BYTES_PER_TEST = 320
DEFAULT_FRACTION = 0.125
HIGH_ROUNDS = 7  # rounds of the 48-bit fingerprint equality test (ceil(log2 48) + 1), each at the chunk's peak
LOW_FRACTION = 0.15  # a chunk's memory in its later rounds, as a fraction of its peak (measured 0.05-0.12)


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GB


def site_budget(policy: dict) -> int:
    """This site's budget in bytes: ``[policy] max_job_memory_gb`` or DEFAULT_FRACTION of physical memory."""
    v = policy.get("max_job_memory_gb")
    if v is None:
        return int(DEFAULT_FRACTION * _physical_memory())
    gb = float(v)
    if not gb > 0:
        raise InputError("policy max_job_memory_gb must be a positive number of gigabytes",
                         kind='its policy max_job_memory_gb is not a positive number')
    return int(gb * GB)


def chunk_items(items: int, per_item: int, fixed: int, budget: int, site: str, change: str) -> int:
    """Items per chunk so that fixed + chunk * per_item <= budget (all bytes); at least 1, at most ``items``.

    Raises :class:`InputError` (naming the site whose policy sets the budget and
    what to change) when even one item does not fit.
    """
    if fixed + per_item > budget:
        need = (fixed + per_item) / GB
        msg = (f"the job's plan needs at least {need:.2f} GB per party but site {site} allows "
               f"{budget / GB:.2f} GB (policy max_job_memory_gb); {change}, or raise max_job_memory_gb "
               f"at site {site}")
        raise InputError(msg, kind=msg)  # public: every party computes it from the plan and the shared policies
    return max(1, min(max(items, 1), (budget - fixed) // max(per_item, 1)))


def _in_flight(window: int) -> float:
    """Peak memory of ``window`` chunks in flight, in units of one chunk's peak."""
    return min(window, HIGH_ROUNDS) + LOW_FRACTION * max(0, window - HIGH_ROUNDS)


def plan_rounds(chunks: int, window: int, rounds: int) -> int:
    """Rounds of ``chunks`` chunks of ``rounds`` rounds each in a wavefront of ``window`` (1: one after the other)."""
    if window >= rounds:
        return chunks + rounds - 1
    full, rest = divmod(chunks, window)
    return full * rounds + (rest + rounds - 1 if rest else window - 1)


def pipeline_plan(items: int, per_item: int, fixed: int, budget: int, site: str, change: str,
                  rounds: int) -> tuple[int, int]:
    """(items per chunk, chunks in flight) with the fewest rounds whose memory fits the budget (see above).

    ``per_item``: one item's peak bytes; ``rounds``: the rounds of one chunk. Refuses like ``chunk_items``
    when one item does not fit; window 1 (chunks one after the other) is always a candidate.
    """
    chunk_items(items, per_item, fixed, budget, site, change)  # refuses a plan that cannot fit at all
    best = None
    for w in range(1, max(1, rounds) + 1):
        c = min(max(items, 1), int((budget - fixed) // (max(per_item, 1) * _in_flight(w))))
        if c < 1:
            break
        k = -(-max(items, 1) // c)
        cand = (plan_rounds(k, min(w, k), rounds), w, c)
        if best is None or cand < best:
            best = cand
    return best[2], best[1]
