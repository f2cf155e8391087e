"""Chromosome ploidy as PLINK 2 counts it: which calls are diploid, haploid or not counted at all.

Autosomes, the pseudo-autosomal ``XY`` and unknown contigs are diploid; on ``X`` males
are haploid; on ``Y`` only males count, as haploid; ``MT`` is haploid for everyone.
A heterozygous haploid call counts as missing in genotype counts, as half an ALT
allele in allele frequencies, and as observed in missingness, exactly as
``plink2 --geno-counts``/``--freq``/``--missing`` report them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cipherome.genomics.io.variants import normalize_chroms

__all__ = ["AUTOSOMAL", "CHR_X", "CHR_Y", "CHR_MT", "ploidy_class", "PlinkCounts", "plink_counts", "dosage_freq"]

AUTOSOMAL, CHR_X, CHR_Y, CHR_MT = 0, 1, 2, 3
_CLASS = {"X": CHR_X, "Y": CHR_Y, "MT": CHR_MT}


def ploidy_class(chrom: np.ndarray) -> np.ndarray:
    """``(m,)`` int8 class per variant (AUTOSOMAL, CHR_X, CHR_Y, CHR_MT) from chromosome names."""
    names = chrom.tolist() if isinstance(chrom, np.ndarray) else list(chrom)
    distinct = sorted(set(names))
    codes = np.array([_CLASS.get(c, AUTOSOMAL) for c in normalize_chroms(distinct)], dtype=np.int8)
    lookup = dict(zip(distinct, codes.tolist()))
    return np.fromiter((lookup[c] for c in names), dtype=np.int8, count=len(names))


class PlinkCounts(NamedTuple):
    """PLINK 2 report columns, ``(m,)`` each.

    gcount: hom_ref, het, two_alt, hap_ref, hap_alt, missing (int64);
    afreq: alt_ct (float64 ALT allele observations, halves for het haploid calls),
    allele_obs (int64, OBS_CT); vmiss: miss_ct, sample_obs (int64).
    """

    hom_ref: np.ndarray
    het: np.ndarray
    two_alt: np.ndarray
    hap_ref: np.ndarray
    hap_alt: np.ndarray
    missing: np.ndarray
    alt_ct: np.ndarray
    allele_obs: np.ndarray
    miss_ct: np.ndarray
    sample_obs: np.ndarray


def _ploidy_groups(per_group: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(haploid, diploid) totals of per-sex-group statistics, by PLINK 2's ploidy rules.

    per_group: ``(m, 2, k)``, group 0 = males, group 1 = all other samples. Haploid are
    males on chrX and chrY and everyone on MT; diploid are everyone on autosomes and the
    non-males on chrX (non-males on chrY count nowhere).
    """
    cls = np.asarray(classes)
    male, other = per_group[:, 0, :], per_group[:, 1, :]
    both = male + other
    x = (cls == CHR_X)[:, None]
    hap = male * (x | (cls == CHR_Y)[:, None]) + both * (cls == CHR_MT)[:, None]
    dip = both * (cls == AUTOSOMAL)[:, None] + other * x
    return hap, dip


def plink_counts(counts: np.ndarray, classes: np.ndarray) -> PlinkCounts:
    """Apply PLINK 2's ploidy rules to dosage genotype counts.

    counts: ``(m, 2, 4)`` int64 counts (HOM_REF, HET, HOM_ALT, MISSING) for group 0 =
    males and group 1 = all other included samples (females and unknown sex);
    classes: ``(m,)`` from :func:`ploidy_class`.
    """
    c = np.asarray(counts, dtype=np.int64)
    hap_grp, dip_grp = _ploidy_groups(c, classes)
    hom_ref, het, two_alt, dmiss = dip_grp[:, 0], dip_grp[:, 1], dip_grp[:, 2], dip_grp[:, 3]
    hap_ref, hap_het, hap_alt, hmiss = hap_grp[:, 0], hap_grp[:, 1], hap_grp[:, 2], hap_grp[:, 3]
    alt_ct = 2.0 * two_alt + het + hap_alt + 0.5 * hap_het
    allele_obs = 2 * (hom_ref + het + two_alt) + hap_ref + hap_het + hap_alt
    counted = np.where(np.asarray(classes) == CHR_Y, c[:, 0, :].sum(axis=1), c.sum(axis=(1, 2)))
    miss_ct = dmiss + hmiss
    return PlinkCounts(hom_ref, het, two_alt, hap_ref, hap_alt, dmiss + hmiss + hap_het,
                       alt_ct, allele_obs, miss_ct, counted)


def dosage_freq(sums: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ALT allele count and OBS_CT of ``plink2 --freq`` on dosages, with the same ploidy rules.

    sums: ``(m, 2, 2)`` float64, for group 0 = males and group 1 = the others, the number
    of samples with a dosage and the sum of their ALT dosages (:func:`~cipherome.genomics.
    local.stats.dosage_sums`). A diploid sample adds its dosage and 2 observations; a
    haploid one (chrX males, chrY males, MT) half its dosage and 1 observation.
    Returns (alt_ct (m,) float64, allele_obs (m,) int64).
    """
    hap, dip = _ploidy_groups(np.asarray(sums, dtype=np.float64), classes)
    return dip[:, 1] + 0.5 * hap[:, 1], np.rint(2 * dip[:, 0] + hap[:, 0]).astype(np.int64)
