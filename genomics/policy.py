"""Study-wide disclosure policy: settings of the sites' ``[policy]`` tables where the strictest site's value applies.

``min_sites`` (default 3): a site takes part in releasing pooled aggregates (sums,
counts, moments, association statistics) only when the study has at least this
many compute sites. With two sites, each site subtracts its own contribution from a
pooled aggregate and obtains the other site's aggregate exactly (two-site
subtraction, docs/threat_model.md); a two-site study is possible only when every
site's policy sets ``min_sites = 2`` explicitly.

``pca_allow_loadings`` (default false): with ``--pca``, a site that has at least as
many samples as PCA variants could solve its own PC scores for the PCA loadings;
the PCA then runs only if every other site allows it.

``share_variant_list`` (default false): the GWAS finds the common variants by a secure
intersection; if every site sets it (e.g. genotyping arrays, whose manifest is public),
the sites exchange their keyed variant hashes instead, which is far cheaper and shows
every site's whole variant list to the other sites.
"""
from __future__ import annotations

from cipherome.genomics.errors import InputError

__all__ = ["DEFAULT_MIN_SITES", "min_sites", "require_sites", "PCA_LOADINGS_KEY", "pca_allows_loadings",
           "check_pca_loadings", "shares_variant_list"]

DEFAULT_MIN_SITES = 3


def min_sites(policy: dict | None) -> int:
    """This site's ``min_sites`` (an integer >= 2; default 3)."""
    v = int((policy or {}).get("min_sites", DEFAULT_MIN_SITES))
    if v < 2:
        raise InputError(f"[policy] min_sites must be at least 2 (got {v})",
                         kind='its policy min_sites is below 2')
    return v


def require_sites(n_sites: int, required: list[int], workload: str) -> int:
    """Refuse (``InputError``) if the study has fewer sites than the strictest ``min_sites``; returns it."""
    need = max(required)
    if n_sites < need:
        msg = (f"{workload}: the study has {n_sites} compute sites, and a site's policy requires at "
               f"least min_sites = {need} before pooled aggregates are released (with fewer sites a "
               "site can subtract its own data from a pooled aggregate); see docs/threat_model.md")
        raise InputError(msg, kind=msg)  # public: computed from study-wide values
    return need


#: site policy key: may a site with at least as many PCA samples as PCA variants take part (default false)
PCA_LOADINGS_KEY = "pca_allow_loadings"


def pca_allows_loadings(policy: dict | None) -> bool:
    """This site's ``pca_allow_loadings`` (default false)."""
    return bool((policy or {}).get(PCA_LOADINGS_KEY, False))


def check_pca_loadings(parties: list[str], samples: list[int], allow: list[bool], n_variants: int) -> None:
    """Refuse the PCA when a site's own scores would determine the PCA loadings, unless the others allow it.

    Site s learns its scores U_s = X_s' V S^-1 (X_s: its M x n_s standardised genotypes, V: the
    M x K loadings, S public). With n_s >= M and X_s of rank M this solves for V, a pooled
    per-variant aggregate of every site's genotypes (docs/threat_model.md). Such a site may
    take part only if every other site's policy sets ``pca_allow_loadings = true``.
    """
    for i, (p, n) in enumerate(zip(parties, samples)):
        if n >= n_variants and not all(a for j, a in enumerate(allow) if j != i):
            msg = (f"--pca: {p} has at least as many samples in the PCA ({n}) as PCA variants "
                   f"({n_variants}), so its own PC scores would reveal the PCA loadings (a pooled "
                   f"per-variant aggregate); another site's policy does not allow this "
                   f"({PCA_LOADINGS_KEY} = false). Use --pca-variants above {n} or let every other "
                   f"site set {PCA_LOADINGS_KEY} = true")
            raise InputError(msg, kind=msg)  # public: computed from study-wide values


def shares_variant_list(policy: dict | None) -> bool:
    """This site's ``share_variant_list`` (default false)."""
    return bool((policy or {}).get("share_variant_list", False))
