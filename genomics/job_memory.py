"""A site's memory budget for a job, and the refusal of a job that cannot fit in it.

Each site's policy may set ``max_job_memory_gb``; without it a workload takes a fraction of the
machine's physical memory (filtering an eighth, the GWAS half). A job whose largest arrays, computed
from public sizes before they are allocated, exceed a site's budget is refused at every party with
the same public message, naming the site and what to change: a daemon must not be killed by the
kernel for want of memory, and the other jobs it serves go on.
"""
from __future__ import annotations

import os

from cipherome.genomics.errors import InputError

__all__ = ["GB", "site_budget", "refuse_over_budget"]

GB = 1 << 30


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GB


def site_budget(policy: dict, default_fraction: float) -> int:
    """This site's budget in bytes: ``[policy] max_job_memory_gb`` or ``default_fraction`` of physical memory."""
    v = (policy or {}).get("max_job_memory_gb")
    if v is None:
        return int(default_fraction * _physical_memory())
    gb = float(v)
    if not gb > 0:
        raise InputError("policy max_job_memory_gb must be a positive number of gigabytes",
                         kind='its policy max_job_memory_gb is not a positive number')
    return int(gb * GB)


def refuse_over_budget(parties: list, needs: list, budgets: list, what: str, change: str,
                       default_fraction: float) -> None:
    """Raise ``InputError`` (a public message: every party computes it from public sizes and the budgets the
    sites sent) if some party's need exceeds its budget (bytes): "{what} X GB at party p but its policy allows
    Y GB ...; {change}, or raise max_job_memory_gb at p" (``what`` ends e.g. in "need at least")."""
    for party, need, budget in zip(parties, needs, budgets):
        if need > budget:
            msg = (f"{what} {need / GB:.3g} GB at party {party} but its policy allows {budget / GB:.3g} "
                   f"GB (max_job_memory_gb; default {default_fraction:g} of the machine's memory); {change}, or "
                   f"raise max_job_memory_gb at {party}")
            raise InputError(msg, kind=msg)
