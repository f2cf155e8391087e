"""Study-wide disclosure policy: settings of the sites' ``[policy]`` tables where the strictest site's value applies.

``min_sites`` (default 3): a site takes part in releasing pooled aggregates (sums,
counts, moments, association statistics) only when the study has at least this
many compute sites. With two sites, each site subtracts its own contribution from a
pooled aggregate and obtains the other site's aggregate exactly (two-site
subtraction, docs/threat_model.md); a two-site study is possible only when every
site's policy sets ``min_sites = 2`` explicitly.
"""
from __future__ import annotations

from cipherome.genomics.errors import InputError

__all__ = ["DEFAULT_MIN_SITES", "min_sites", "require_sites"]

DEFAULT_MIN_SITES = 3


def min_sites(policy: dict | None) -> int:
    """This site's ``min_sites`` (an integer >= 2; default 3)."""
    v = int((policy or {}).get("min_sites", DEFAULT_MIN_SITES))
    if v < 2:
        raise InputError(f"[policy] min_sites must be at least 2 (got {v})")
    return v


def require_sites(n_sites: int, required: list[int], workload: str) -> int:
    """Refuse (``InputError``) if the study has fewer sites than the strictest ``min_sites``; returns it."""
    need = max(required)
    if n_sites < need:
        raise InputError(f"{workload}: the study has {n_sites} compute sites, and a site's policy requires at "
                         f"least min_sites = {need} before pooled aggregates are released (with fewer sites a "
                         "site can subtract its own data from a pooled aggregate); see docs/threat_model.md")
    return need
