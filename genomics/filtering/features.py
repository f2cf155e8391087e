"""Per-variant numbers a site computes in plaintext from its own rows: cohort counts and family members' genotype classes.

Cohort counts (carriers among affected and unaffected, homozygotes, X-linked
genotypes, ALT alleles, alleles lost to missing calls) are sums over the site's
individuals, so the study-wide count of a variant is the sum over sites; member
classes (het, carrier, missing) describe one individual's call. Arrays in, arrays
out, no network.
"""
from __future__ import annotations

import numpy as np

from cipherome.genomics.filtering.local import SiteVariants, sample_ploidy
from cipherome.genomics.io.ploidy import AUTOSOMAL, CHR_MT, CHR_X, CHR_Y

__all__ = ["COUNTS", "cohort_counts", "allele_totals", "member_het", "PCLASSES"]

#: cohort count columns, in this order
COUNTS = ("ca", "cu", "ha", "hu", "xa", "xu", "ac", "miss")
PCLASSES = (AUTOSOMAL, CHR_X, CHR_Y, CHR_MT)
ROW_BLOCK = 2048


def cohort_counts(sv: SiteVariants, rows: np.ndarray | None = None) -> np.ndarray:
    """``(r, 8)`` int64 counts per row (columns :data:`COUNTS`) over the site's individuals.

    ca/cu: affected/unaffected carriers (dosage >= 1); ha/hu: affected/unaffected
    homozygous ALT (dosage 2, incl. haploid ALT calls); xa/xu: X-linked genotype
    (males dosage >= 1, others dosage 2); ac: ALT alleles among called genotypes
    (ploidy 2: the dosage, ploidy 1: 1 if ALT, ploidy 0: none); miss: alleles of
    missing calls (their ploidy). ``rows``: row indices (default all). Rows are
    taken in blocks of :data:`ROW_BLOCK`, so temporaries stay at ROW_BLOCK x
    individuals x 8 bytes whatever the site's size.
    """
    idx = np.arange(len(sv)) if rows is None else np.asarray(rows, dtype=np.int64)
    if idx.size > ROW_BLOCK:
        return np.concatenate([_counts(sv, idx[b:b + ROW_BLOCK]) for b in range(0, idx.size, ROW_BLOCK)])
    return _counts(sv, idx)


def _counts(sv: SiteVariants, idx: np.ndarray) -> np.ndarray:
    g = sv.dosage[idx].astype(np.int64)
    aff = sv.ped.affected
    male = sv.ped.sex == 1
    car, hom = g >= 1, g == 2
    xgen = np.where(male[None, :], car, hom)
    out = np.zeros((idx.size, len(COUNTS)), dtype=np.int64)
    a, u = aff == 1, aff == 0
    out[:, 0], out[:, 1] = car[:, a].sum(1), car[:, u].sum(1)
    out[:, 2], out[:, 3] = hom[:, a].sum(1), hom[:, u].sum(1)
    out[:, 4], out[:, 5] = xgen[:, a].sum(1), xgen[:, u].sum(1)
    pcl = sv.pclass[idx]
    for c in PCLASSES:
        sel = pcl == c
        if not sel.any():
            continue
        pl = sample_ploidy(c, sv.ped.sex)[None, :]
        gc = g[sel]
        alt = np.where(pl == 2, np.maximum(gc, 0), np.where(pl == 1, (gc >= 1).astype(np.int64), 0))
        out[sel, 6] = alt.sum(1)
        out[sel, 7] = np.where(gc < 0, pl, 0).sum(1)
    return out


def allele_totals(sex: np.ndarray) -> dict[int, int]:
    """Alleles per chromosome class over individuals of the given sexes (the AN of a variant no one misses)."""
    return {c: int(sample_ploidy(c, sex).sum()) for c in PCLASSES}


def member_het(g: np.ndarray, sex: int, pclass: np.ndarray) -> np.ndarray:
    """``(m,)`` bool: a child's call counts as heterozygous: dosage 1, or ALT on X/Y in a male (hemizygous)."""
    g = np.asarray(g)
    hemi = (sex == 1) & np.isin(pclass, (CHR_X, CHR_Y))
    return (g == 1) | (hemi & (g >= 1))
