"""The study's common variant list, found by a secure intersection: each site learns which of its variants are common to all sites, nothing else.

Steps (every compute party; the dealer never holds the key or any variant):

1. A public bound B on variants per site: ``--variant-bound``, or else
   2^max_s ceil(log2 m_s) computed in MPC (an OR of the sites' thermometer-coded
   exponents, :func:`public_variant_bound`); only the maximum is opened (``gwas.variant_bound``).
2. A study key agreed by the sites (``filtering.keys.agree_job_key``,
   ``gwas.study_key_contribution``: 32 random bytes from each site, fresh per job).
3. Each site maps the orientation-free key ``chrom:pos:lo:hi`` of each of its
   variants (duplicates dropped at the site) with HMAC-SHA256 under the study key to
   three candidate bins of a table of T = 1.27 B bins and a 60-bit tag
   (``filtering.keys.cuckoo_hashes``). The lead places each variant in one of its
   bins (cuckoo hashing, ``cuckoo_table``), every other site each variant in all
   three (simple hashing, ``simple_table``, at most L per bin). T and L come from B
   only (``cuckoo_geometry``: lane overflow below 1e-9): no shape reveals m_s.
4. ``protocols.psi.common_bins``: two rounds in which the lead learns, for each of
   its bins, whether its variant is in that bin at every other site
   (``gwas.common_variants``, to the lead only); the sites learn nothing and no
   party learns anything about another site's non-shared variants or their number.
5. The lead opens to the other sites, in its file order, each common variant's
   tag and whether its ALT is the larger allele, padded to T entries
   (``gwas.variant_order``; not the bin, which depends on the lead's cuckoo
   placement and so on its other variants): the study order is the lead's file
   order and its REF/ALT the study orientation (as in the output); each site finds
   the variant by its tag, and a site whose REF/ALT are swapped flips its dosages
   (2 - g). All of it is a function of the common variants only.

Cost: 4 rounds after the bound (key, 2 of ``common_bins``, the order); per other
site 8 T L bytes each way between it and the lead (L about 22), 8 T bytes of order,
8 T from the dealer. Measured: see bench/test_bench_intersection.py. Where every
site consents (policy ``share_variant_list``, e.g. genotyping arrays whose manifest
is public), the sites exchange their keyed hashes instead (``gwas.variant_list``:
one round, 16 bytes per variant, no MPC).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cipherome.mpc.shares import concat
from cipherome.mpc.ledger import DISCLOSED
from cipherome.protocols import arith
from cipherome.protocols.psi import TAG_BITS, common_bins

from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.keys import (agree_job_key, cuckoo_geometry, cuckoo_hashes, cuckoo_table,
                                               hash_keys, simple_table)
from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.io.packed import PackedCalls, swap_alleles
from cipherome.genomics.io.variants import flip_dosage, normalize_chroms

__all__ = ["orientation_free_keys", "StudyVariants", "public_variant_bound", "common_variants",
           "LANE_OVERFLOW", "MIN_BOUND_LOG2"]

#: the probability that some bin of a site's simple table overflows its L lanes (the job then
#: stops with an error saying so; a rerun draws a new study key)
LANE_OVERFLOW = 1e-9
#: the smallest public bound (2^10 variants), so that tiny studies do not reveal their size either
MIN_BOUND_LOG2 = 10
#: the largest bound the thermometer code covers (2^40 variants per site)
MAX_BOUND_LOG2 = 40


def orientation_free_keys(variants: VariantTable) -> tuple[np.ndarray, np.ndarray]:
    """(keys (m,) object array of 'chrom:pos:lo:hi', alt_is_larger (m,) bool), alleles upper-cased."""
    chrom = normalize_chroms(variants.chrom).tolist()

    def alleles(col) -> list[str]:  # each distinct allele upper-cased once, as normalize_chroms does
        vals = col.tolist() if isinstance(col, np.ndarray) else list(col)
        table = {a: str(a).upper() for a in set(vals)}
        return [table[a] for a in vals]

    ref, alt = alleles(variants.ref), alleles(variants.alt)
    pos = np.asarray(variants.pos, dtype=np.int64).tolist()
    keys = np.empty(len(pos), dtype=object)
    keys[:] = [f"{c}:{p}:{r}:{a}" if r <= a else f"{c}:{p}:{a}:{r}" for c, p, r, a in zip(chrom, pos, ref, alt)]
    alt_larger = np.array([a > r for r, a in zip(ref, alt)], dtype=bool)
    return keys, alt_larger


@dataclass
class StudyVariants:
    """The agreed common variants, from one party's point of view.

    local_index (V,) int64: row of each study variant in this site's file;
    flip (V,) bool: this site's dosage must be flipped to the study orientation;
    lead_index (V,) int64: the row in the lead's file (for CHROM/POS/ID/REF/ALT output;
    known at the lead only, -1 elsewhere);
    dropped_duplicates: this site's keys seen more than once in its file (excluded).
    """

    local_index: np.ndarray
    flip: np.ndarray
    lead_index: np.ndarray
    dropped_duplicates: int

    def __len__(self) -> int:
        return len(self.local_index)

    def read(self, site, idx: np.ndarray, mask: np.ndarray, dosage: bool = False):
        """Dosages of study variants ``idx`` (positions in the study list) at ``site``, for the
        samples in ``mask``, in study orientation (rows flipped where this site's REF/ALT are swapped):
        int8 hard calls, or with ``dosage`` at a site that has them float dosages (NaN missing)."""
        flip = self.flip[idx]
        if dosage and site.read_dosage is not None:
            d = site.read_dosage(self.local_index[idx], mask)
            return np.where(flip[:, None], 2.0 - d, d).astype(d.dtype) if flip.any() else d
        g = site.read(self.local_index[idx], mask)
        return flip_dosage(g, flip) if flip.any() else g

    def read_calls(self, site, idx: np.ndarray, mask: np.ndarray):
        """The hard calls of ``read``, for the counting kernels: still packed (``PackedCalls``) where the
        site's reader can give them so (a .bed file), else the int8 dosages of ``read``."""
        packed = getattr(site.read, "packed", None)
        if packed is None:
            return self.read(site, idx, mask)
        calls = packed(self.local_index[idx], mask)
        flip = self.flip[idx]
        return PackedCalls(swap_alleles(calls.packed, flip), calls.n_samples) if flip.any() else calls


def public_variant_bound(ctx, m: int, bound: int | None = None) -> int:
    """The public bound on variants per site: ``bound`` if given, else 2^max_s max(10, ceil(log2 m_s)).

    Without ``bound`` each site inputs the thermometer code t_s[k] = [e_s >= k] of its
    exponent e_s (k = 11 .. MAX_BOUND_LOG2; free); the product z[k] = prod_s (1 - t_s[k])
    (ceil(log2 n) product rounds) is opened (``gwas.variant_bound``): z[k] = 0 iff some
    site has e_s >= k, so z is the thermometer code of the maximum and reveals nothing else.
    """
    if bound:
        return int(bound)
    e = max(MIN_BOUND_LOG2, math.ceil(math.log2(max(m, 1))))
    if e > MAX_BOUND_LOG2:
        raise InputError(f"a site has more than 2^{MAX_BOUND_LOG2} variants", kind="has too many variants")
    ks = np.arange(MIN_BOUND_LOG2 + 1, MAX_BOUND_LOG2 + 1)
    factors = [1 - ctx.input(p, (e >= ks).astype(np.int64) if p == ctx.me else None, shape=ks.shape, frac=0)
               for p in ctx.parties]
    while len(factors) > 1:  # a product tree, one round per level
        half = len(factors) // 2
        prod = arith.mul(concat(factors[:half]), concat(factors[half:2 * half]))
        factors = [prod[i * len(ks):(i + 1) * len(ks)] for i in range(half)] + factors[2 * half:]
    z = ctx.open(factors[0], "gwas.variant_bound")
    return 1 << (MIN_BOUND_LOG2 + int((z == 0).sum()))


def _unique_keys(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows whose key occurs once in the site's file, and the number of duplicated keys."""
    _, first, counts = np.unique(keys.astype(str), return_index=True, return_counts=True)
    return np.sort(first[counts == 1]), int((counts > 1).sum())


def _shared_lists(ctx, key: bytes, keys: np.ndarray, alt_larger: np.ndarray, rows: np.ndarray,
                  dups: int) -> StudyVariants:
    """With every site's consent: each site's keyed variant hashes and orientations go to every site.

    One round (``gwas.variant_list``, to the sites only): 63-bit HMAC keys under the study key
    (the dealer cannot compute them, the sites can: each learns the others' whole lists).
    """
    h, _ = hash_keys(key, keys[rows], 1 << 63)
    lists = ctx.allgather(np.stack([h, alt_larger[rows].astype(np.int64)]), "gwas.variant_list", kind=DISCLOSED)
    where = [{v: i for i, v in enumerate(lst[0].tolist())} for lst in lists]
    lead = lists[0]
    keep = [i for i, v in enumerate(lead[0].tolist()) if all(v in w for w in where[1:])]
    pos = np.array([where[ctx.index][v] for v in lead[0][keep].tolist()], dtype=np.int64)
    local = rows[pos] if len(pos) else np.zeros(0, np.int64)
    flip = lists[ctx.index][1][pos].astype(bool) != lead[1][keep].astype(bool)
    lead_index = local.copy() if ctx.is_lead else np.full(len(local), -1, dtype=np.int64)
    return StudyVariants(local, flip, lead_index, dups)


def common_variants(ctx, variants: VariantTable, bound: int | None = None, name: str = "site",
                    shared_lists: bool = False) -> StudyVariants:
    """This site's view of the study's common variants (module docstring); ``name`` for messages.

    shared_lists: every site's policy consents to sharing its variant list with the other
    sites (``share_variant_list``, e.g. genotyping arrays whose manifest is public anyway):
    then the keyed hashes are exchanged instead (one round, no MPC).
    """
    keys, alt_larger = orientation_free_keys(variants)
    rows, dups = _unique_keys(keys)
    if shared_lists:
        return _shared_lists(ctx, agree_job_key(ctx, "gwas.study_key_contribution"), keys, alt_larger, rows, dups)
    B = public_variant_bound(ctx, len(rows), bound)
    if len(rows) > B:
        raise InputError(f"{name}: has more distinct variants than the study's public bound {B} "
                         "(variant_bound); raise the bound or restrict the site's variants",
                         kind="has more distinct variants than the study's public bound (variant_bound)")
    T, L = cuckoo_geometry(B, fail=LANE_OVERFLOW)
    key = agree_job_key(ctx, "gwas.study_key_contribution")
    cand, tags = cuckoo_hashes(key, keys[rows], T, bits=TAG_BITS)
    if len(np.unique(tags)) != len(tags):  # two of this site's variants with one 60-bit tag (~2^-60 m^2)
        raise InputError(f"{name}: two variants share a keyed tag (a rare event); simply rerun the job (a new study "
                         "key is drawn)", kind="a keyed-tag collision (a rare event); simply rerun the job")
    if ctx.is_lead:
        _, slot = cuckoo_table(cand, tags, T, name)
        slot = slot[:, 0]
        member = common_bins(ctx, np.where(slot >= 0, tags[np.maximum(slot, 0)], 0), L, "gwas.common_variants")
        pos = slot[member]  # positions in ``rows`` of the common variants
        pos = pos[np.argsort(rows[pos])]  # the lead's file order
        local, V = rows[pos], len(pos)
        msg = np.full(T, -1, dtype=np.int64)  # no bin index: the lead's cuckoo placement depends on all its variants
        msg[:V] = 2 * tags[pos].astype(np.int64) + alt_larger[local]
        ctx.open(ctx.input(ctx.me, msg, shape=(T,), frac=0), "gwas.variant_order", to=ctx.parties[1:])
        return StudyVariants(local, np.zeros(V, bool), local.copy(), dups)
    try:
        table, _ = simple_table(cand, tags, T, L, name)
    except InputError:
        raise InputError(f"{name}: a bin of the hashed variant table overflowed its {L} lanes (probability "
                         f"below {LANE_OVERFLOW:g} per job); simply rerun the job (a new study key is drawn)",
                         kind="a bin of the hashed variant table overflowed (a rare event); simply rerun the job"
                         ) from None
    common_bins(ctx, table, L, "gwas.common_variants")
    code = ctx.open(ctx.input(ctx.lead, None, shape=(T,), frac=0), "gwas.variant_order", to=ctx.parties[1:])
    code = code[code >= 0]
    where = dict(zip(tags.tolist(), rows.tolist()))
    try:
        local = np.array([where[t] for t in (code // 2).astype(np.uint64).tolist()], dtype=np.int64)
    except KeyError:  # cannot happen unless a party deviates
        raise RuntimeError("the secure variant intersection gave the sites different common variants") from None
    return StudyVariants(local, alt_larger[local] != (code % 2).astype(bool), np.full(len(local), -1, np.int64), dups)
