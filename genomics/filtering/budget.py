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
"""
from __future__ import annotations

import os

from cipherome.genomics.errors import InputError

__all__ = ["BYTES_PER_TEST", "DEFAULT_FRACTION", "site_budget", "chunk_items", "GB"]

GB = 1 << 30
BYTES_PER_TEST = 320
DEFAULT_FRACTION = 0.125


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
