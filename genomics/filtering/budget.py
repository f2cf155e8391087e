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
chunks in flight hold memory at once, so the plan bounds their sum. Only one task
runs at a time; the others wait at their openings, each at a distinct round, holding
what that round keeps. Measured per round (``bench.filter_round_memory``, tracemalloc;
docs/filtering.md): the equality test's peak (its masked value, mask and bit rows)
lasts about its first round, then it holds its circuit's live rows, one AND layer's
material and at the end one daBit per element: :data:`EQ_HELD` of the peak at each of
its rounds, and the rule's comparisons on one value per anchor lane :data:`LOW_FRACTION`.
So ``window`` chunks in flight peak at ``in_flight(window, R)`` = 1 + the window - 1
largest fractions of ``held_profile(R)`` chunk peaks.

The plan: the chunk size and window with the least estimated time, ``plan_rounds`` x
:data:`ROUND_SECONDS` (a round between sites) + chunks x :data:`CHUNK_SECONDS` (the
fixed work of one chunk: its tasks' thread, dealer requests, tables and openings),
among those whose ``fixed + chunk x per_item x in_flight(window, R)`` fits the
budget: large chunks, pipelined, rather than many tiny ones.
"""
from __future__ import annotations

from cipherome.genomics import job_memory
from cipherome.genomics.errors import InputError

__all__ = ["BYTES_PER_TEST", "DEFAULT_FRACTION", "EQ_HELD", "PRODUCT_HELD", "LOW_FRACTION", "ROUND_SECONDS", "CHUNK_SECONDS",
           "site_budget", "chunk_items", "held_profile", "in_flight", "pipeline_plan", "plan_rounds", "plan_seconds",
           "GB"]

GB = job_memory.GB
BYTES_PER_TEST = 320
DEFAULT_FRACTION = 0.125
#: memory a chunk holds while it waits at each round of the 48-bit fingerprint equality test (the opening of c,
#: five AND layers, the B2A), as a fraction of its peak. Measured with ``bench.filter_round_memory`` (10-90 %
#: over chunks): de novo 0.09-0.51, 0.37-0.46, 0.23-0.31, 0.12-0.16, 0.04-0.07, 0.03-0.05, 0.16-0.18; carrier
#: 0.16-0.79, 0.39-0.58, 0.23-0.34, 0.11-0.14, 0.04-0.08, 0.03, 0.14-0.17; comphet 0.07-0.73, 0.14-0.37, 0-0.15,
#: then 0. (Before the test dropped its state early: 0.24, 0.86, 0.85, 0.82, 0.75, 0.73, 0.54 on de novo.)
EQ_HELD = (0.7, 0.5, 0.3, 0.15, 0.1, 0.1, 0.2)
#: the two rounds after the test where a model multiplies the match tensor (E @ F: carrier, comphet);
#: measured 0.33-0.56 and 0.01-0.45 (carrier), 0.20-0.72 and 0-0.06 (comphet)
PRODUCT_HELD = (0.6, 0.3)
LOW_FRACTION = 0.05  # a chunk's memory in its other rounds, / its peak (measured 0.01-0.09; one comphet round 0.19)
ROUND_SECONDS = 0.05  # the planner's cost of one round: sites 10-100 ms apart
CHUNK_SECONDS = 0.025  # the planner's cost of one more chunk (measured 22-25 ms per de novo chunk, in process)


def site_budget(policy: dict, default_fraction: float = DEFAULT_FRACTION) -> int:
    """This site's budget in bytes for a filtering job (``job_memory.site_budget``, default DEFAULT_FRACTION)."""
    return job_memory.site_budget(policy, default_fraction)


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


def held_profile(rounds: int, products: bool = False) -> tuple[float, ...]:
    """Per round of a chunk of ``rounds`` rounds: the memory it holds while waiting there, / its peak.

    ``products``: the chunk multiplies its match tensor right after the equality test (PRODUCT_HELD).
    """
    high = EQ_HELD + (PRODUCT_HELD if products else ())
    return tuple(high[:rounds]) + (LOW_FRACTION,) * max(0, rounds - len(high))


def in_flight(window: int, rounds: int, products: bool = False) -> float:
    """Peak memory of ``window`` chunks in flight, in units of one chunk's peak.

    Only one task runs at a time (at most its peak); the others wait at distinct rounds, so they hold at
    most the ``window - 1`` largest fractions of ``held_profile``.
    """
    held = sorted(held_profile(rounds, products), reverse=True)
    return 1.0 + sum(held[: max(0, int(window) - 1)])


def plan_rounds(chunks: int, window: int, rounds: int) -> int:
    """Rounds of ``chunks`` chunks of ``rounds`` rounds each in a wavefront of ``window`` (1: one after the other)."""
    if window >= rounds:
        return chunks + rounds - 1
    full, rest = divmod(chunks, window)
    return full * rounds + (rest + rounds - 1 if rest else window - 1)


def plan_seconds(chunks: int, window: int, rounds: int) -> float:
    """The planner's estimate of a plan's time: its rounds at ROUND_SECONDS plus CHUNK_SECONDS per chunk."""
    return plan_rounds(chunks, window, rounds) * ROUND_SECONDS + chunks * CHUNK_SECONDS


def pipeline_plan(items: int, per_item: int, fixed: int, budget: int, site: str, change: str,
                  rounds: int, products: bool = False) -> tuple[int, int]:
    """(items per chunk, chunks in flight) with the least ``plan_seconds`` whose memory fits the budget (see above).

    ``per_item``: one item's peak bytes; ``rounds``: the rounds of one chunk; ``products``: see
    ``held_profile``. Refuses like ``chunk_items``
    when one item does not fit; window 1 (chunks one after the other) is always a candidate.
    """
    chunk_items(items, per_item, fixed, budget, site, change)  # refuses a plan that cannot fit at all
    n = max(items, 1)
    best = None
    for w in range(1, max(1, rounds) + 1):
        c = min(n, int((budget - fixed) // (max(per_item, 1) * in_flight(w, rounds, products))))
        if c < 1:
            break
        k = -(-n // c)
        c = -(-n // k)  # the same number of chunks, evened out
        cand = (plan_seconds(k, min(w, k), rounds), plan_rounds(k, min(w, k), rounds), w, c)
        if best is None or cand < best:
            best = cand
    return best[3], best[2]
