"""The study's common variant list: which variants every site has, in one agreed order.

Each site publishes, for every variant of its file, a 64-bit hash of the
normalised key chrom:pos:{allele pair} and whether its ALT is the larger allele
of the pair; within a study the variant list is public (as in secure-gwas and
SF-GWAS), so this is documented study metadata, not a disclosure of genotypes.
The common variants are taken in the lead site's file order and oriented as the
lead's REF/ALT; a site whose REF/ALT are swapped flips its dosages (2 - g).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.io.variants import flip_dosage, normalize_chroms

__all__ = ["variant_hashes", "StudyVariants", "intersect_variants"]


def variant_hashes(variants: VariantTable) -> tuple[np.ndarray, np.ndarray]:
    """(hash (m,) uint64, alt_is_larger (m,) bool) of the orientation-free keys chrom:pos:lo:hi."""
    chrom = normalize_chroms(variants.chrom)
    m = len(variants)
    hashes = np.empty(m, dtype=np.uint64)
    alt_larger = np.empty(m, dtype=bool)
    for i in range(m):
        ref, alt = str(variants.ref[i]).upper(), str(variants.alt[i]).upper()
        lo, hi = (ref, alt) if ref <= alt else (alt, ref)
        key = f"{chrom[i]}:{int(variants.pos[i])}:{lo}:{hi}"
        hashes[i] = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        alt_larger[i] = alt > ref
    return hashes, alt_larger


@dataclass
class StudyVariants:
    """The agreed common variants, from one party's point of view.

    local_index (V,) int64: row of each study variant in this site's file;
    flip (V,) bool: this site's dosage must be flipped to the study orientation;
    lead_index (V,) int64: the row in the lead's file (for CHROM/POS/ID/REF/ALT output);
    dropped_duplicates: keys seen more than once in some site (excluded).
    """

    local_index: np.ndarray
    flip: np.ndarray
    lead_index: np.ndarray
    dropped_duplicates: int

    def __len__(self) -> int:
        return len(self.local_index)

    def read(self, site, idx: np.ndarray, mask: np.ndarray):
        """Dosages of study variants ``idx`` (positions in the study list) at ``site``, for the
        samples in ``mask``, in study orientation (rows flipped where this site's REF/ALT are swapped)."""
        g = site.read(self.local_index[idx], mask)
        flip = self.flip[idx]
        return flip_dosage(g, flip) if flip.any() else g


def _unique_rows(h: np.ndarray) -> tuple[dict, set]:
    first, dups = {}, set()
    for i, v in enumerate(h.tolist()):
        if v in first:
            dups.add(v)
        else:
            first[v] = i
    return first, dups


def intersect_variants(all_hashes: list[np.ndarray], all_orient: list[np.ndarray], me: int) -> StudyVariants:
    """Common variants of all sites (lists in party order; party 0 is the lead)."""
    maps, dups = [], set()
    for h in all_hashes:
        first, d = _unique_rows(np.asarray(h, dtype=np.uint64))
        maps.append(first)
        dups |= d
    lead = all_hashes[0]
    keep = [i for i, v in enumerate(np.asarray(lead).tolist()) if v not in dups and all(v in m for m in maps[1:])]
    lead_index = np.array(keep, dtype=np.int64)
    keys = np.asarray(lead, dtype=np.uint64)[lead_index].tolist()
    local = np.array([maps[me][v] for v in keys], dtype=np.int64)
    lead_orient = np.asarray(all_orient[0], bool)[lead_index]
    mine = np.asarray(all_orient[me], bool)[local] if len(local) else np.zeros(0, bool)
    return StudyVariants(local, mine != lead_orient, lead_index, len(dups))
