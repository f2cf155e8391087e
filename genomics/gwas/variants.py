"""The study's common variant list, found by a secure intersection: each site learns which of its variants are common to all sites, nothing else.

Steps (every compute party; the dealer never holds the key or any variant):

1. A public bound B on variants per site: ``--variant-bound``, or else
   2^max_s ceil(log2 m_s) computed in MPC (a tournament maximum of the sites'
   exponents); only the maximum is opened (``gwas.variant_bound``).
2. A study key agreed by the sites (``filtering.keys.agree_job_key``,
   ``gwas.study_key_contribution``: 32 random bytes from each site, fresh per job).
3. Each site maps the orientation-free key ``chrom:pos:lo:hi`` of each of its
   variants (duplicates dropped at the site) to a slot and a 48-bit fingerprint
   with HMAC-SHA256 under the study key, in a (T, L) lane table sized from B only
   (``filtering.keys.suggest_table``): the table's shape reveals B, not m_s.
   Empty lanes hold 0 at the lead and 1 elsewhere (fingerprints are >= 2), so
   an empty lane never matches.
4. In MPC, for the lead (party 0) against every other site j, the match tensor
   E_j[s, l, l'] = [fp_lead[s, l] == fp_j[s, l']] (``filtering.align.match_tables``:
   one batched equality test); a_j[s, l] = sum_l' E_j[s, l, l'] (0/1), the lead's
   lane is common iff c[s, l] = prod_j a_j[s, l] = 1, and site j's lane l' is
   common iff c_j[s, l'] = sum_l c[s, l] E_j[s, l, l'] = sum_l r_j[s, l] E_j[s, l, l'] = 1
   with r_j = prod_{k != j} a_k (as E_j <= a_j; one batched matrix product per slot,
   none for two sites, where c_j = sum_l E_1[s, l, l']). c is opened to the
   lead only, c_j to site j only (``gwas.common_variants``): a site learns which
   of its own variants are common, i.e. the intersection, and nothing about the
   others' non-shared variants or their number.
5. Every site lists its common variants in (slot, fingerprint) order, the same
   order at every site. The lead opens to the other sites, in that order, each
   variant's rank in the lead's file and whether its ALT is the larger allele
   (``gwas.variant_order``): the study order is the lead's file order and its
   REF/ALT the study orientation (as in the output); a site whose REF/ALT are
   swapped flips its dosages (2 - g). Both are functions of the common variants only.

Cost: T L^2 48-bit equality tests per other site, about 130 per bounded variant
(chunks of ``MAX_COMPARISONS``, 7 rounds each), one product round for three or more
sites, one opening per site and one for the order. Measured, 3 sites with 100,000
variants each (bound 2^17), in process on a 2-core machine at load average ~36: 133 s,
161 rounds, 1.9 GB sent per party (the dealer 1.1 GB); 20,000 variants: 55 s, 53 rounds,
0.57 GB. Where every site consents (policy ``share_variant_list``, e.g.
genotyping arrays whose manifest is public), the sites exchange their keyed hashes
instead (``gwas.variant_list``: one round, 16 bytes per variant, no MPC).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cipherome.mpc.shares import Shared, concat, stack
from cipherome.mpc.ledger import DISCLOSED
from cipherome.protocols import arith
from cipherome.protocols.compare import max as secure_max

from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.align import OwnerTable, aligned_sums, match_tables
from cipherome.genomics.filtering.keys import agree_job_key, hash_keys, lane_table, suggest_table
from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.io.variants import flip_dosage, normalize_chroms

__all__ = ["orientation_free_keys", "StudyVariants", "public_variant_bound", "common_variants",
           "MAX_COMPARISONS", "MIN_BOUND_LOG2"]

#: equality tests per matching round (bounds its memory: about 0.17 kB per test and party, measured)
MAX_COMPARISONS = 1 << 21
#: the smallest public bound (2^10 variants), so that tiny studies do not reveal their size either
MIN_BOUND_LOG2 = 10


def orientation_free_keys(variants: VariantTable) -> tuple[np.ndarray, np.ndarray]:
    """(keys (m,) object array of 'chrom:pos:lo:hi', alt_is_larger (m,) bool), alleles upper-cased."""
    chrom = normalize_chroms(variants.chrom)
    m = len(variants)
    keys = np.empty(m, dtype=object)
    alt_larger = np.empty(m, dtype=bool)
    for i in range(m):
        ref, alt = str(variants.ref[i]).upper(), str(variants.alt[i]).upper()
        lo, hi = (ref, alt) if ref <= alt else (alt, ref)
        keys[i] = f"{chrom[i]}:{int(variants.pos[i])}:{lo}:{hi}"
        alt_larger[i] = alt > ref
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


def public_variant_bound(ctx, m: int, bound: int | None = None) -> int:
    """The public bound on variants per site: ``bound`` if given, else 2^max_s max(10, ceil(log2 m_s)).

    Without ``bound`` each site inputs its exponent (free), the tournament maximum is
    computed in MPC and only it is opened (``gwas.variant_bound``).
    """
    if bound:
        return int(bound)
    e = max(MIN_BOUND_LOG2, math.ceil(math.log2(max(m, 1))))
    exps = stack([ctx.input(p, np.array([e]) if p == ctx.me else None, shape=(1,), frac=0) for p in ctx.parties])
    top = ctx.open(secure_max(exps, axis=0, bits=8), "gwas.variant_bound")
    return 1 << int(top[0])


def _unique_keys(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows whose key occurs once in the site's file, and the number of duplicated keys."""
    _, first, counts = np.unique(keys.astype(str), return_index=True, return_counts=True)
    return np.sort(first[counts == 1]), int((counts > 1).sum())


def _site_table(ctx, key: bytes, keys: np.ndarray, rows: np.ndarray, T: int, L: int, name: str):
    """(fp (T, L) uint64, row (T, L) int64) of this site's variants ``rows``; empty lanes 0 (lead) or 1."""
    slots, fps = hash_keys(key, keys[rows], T)
    fps[fps == 1] = 2
    fp, lane_rows = lane_table(slots, fps, T, L, name)
    if not ctx.is_lead:
        fp[fp == 0] = 1
    return fp, np.where(lane_rows >= 0, rows[np.maximum(lane_rows, 0)], -1)


def _common_lanes(ctx, tables: list[OwnerTable]) -> list[Shared]:
    """Shared (T, L) 0/1 per party: c for the lead, c_j for site j (module docstring, step 4)."""
    T, L, n = tables[0].T, tables[0].L, ctx.n
    chunk = max(1, MAX_COMPARISONS // ((n - 1) * L * L))
    parts: list[list[Shared]] = [[] for _ in range(n)]
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        sub = [OwnerTable(t.site, t.name, b - a, L, shared=t.shared[a:b]) for t in tables]
        e = match_tables(ctx, [(sub[0], sub[j]) for j in range(1, n)])
        acc = [x.sum(axis=2) for x in e]
        if n == 2:
            parts[0].append(acc[0])
            parts[1].append(e[0].sum(axis=1))
            continue
        rest = _products_of_others(acc)  # r_j = prod_{k != j} a_k (lead lanes)
        parts[0].append(arith.mul(rest[0], acc[0]))
        # c_j[s, l'] = sum_l E_j[s, l, l'] r_j[s, l], since E_j <= a_j: (1 x L) @ (L x L) per slot
        sums = aligned_sums([(r.reshape(b - a, 1, L), x) for r, x in zip(rest, e)])
        for j in range(1, n):
            parts[j].append(sums[j - 1].reshape(b - a, L))
    return [concat(p) for p in parts]


def _products_of_others(acc: list[Shared]) -> list[Shared]:
    """[prod_{k != j} acc_k for each j] (three or more factors): prefix and suffix products, batched per round."""
    m = len(acc)
    pre, suf = [acc[0]], [acc[-1]]
    for k in range(1, m - 1):  # pre[k] = acc_0 ... acc_k, suf[k] = acc_{m-1-k} ... acc_{m-1}
        both = arith.mul(concat([pre[-1], suf[-1]]), concat([acc[k], acc[m - 1 - k]]))
        half = both.shape[0] // 2
        pre.append(both[:half])
        suf.append(both[half:])
    out = [suf[m - 2]] + [None] * (m - 2) + [pre[m - 2]]
    inner = list(range(1, m - 1))
    if inner:
        prod = arith.mul(concat([pre[j - 1] for j in inner]), concat([suf[m - 2 - j] for j in inner]))
        size = acc[0].shape[0]
        for i, j in enumerate(inner):
            out[j] = prod[i * size:(i + 1) * size]
    return out


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
                         "(variant_bound); raise the bound or restrict the site's variants")
    T, L = suggest_table(B)
    key = agree_job_key(ctx, "gwas.study_key_contribution")
    fp, lane_rows = _site_table(ctx, key, keys, rows, T, L, name)
    tables = [OwnerTable(p, p, T, L) for p in ctx.parties]
    for t in tables:
        t.shared = ctx.input(t.site, fp if t.site == ctx.me else None, shape=(T, L), frac=0)
    bits = _common_lanes(ctx, tables)
    mine = None
    for p, x in zip(ctx.parties, bits):
        got = ctx.open(x, "gwas.common_variants", to=p)
        if p == ctx.me:
            mine = got
    common = lane_rows[mine.astype(bool)]  # row-major: (slot, fingerprint) order, the same at every site
    V = len(common)
    if ctx.is_lead:
        rank = np.empty(V, dtype=np.int64)
        rank[np.argsort(common, kind="stable")] = np.arange(V)
        order = 2 * rank + alt_larger[common]
        lead = ctx.input(ctx.me, order, shape=(V,), frac=0)
    else:
        lead = ctx.input(ctx.lead, None, shape=(V,), frac=0)
    got = ctx.open(lead, "gwas.variant_order", to=ctx.parties[1:])
    if ctx.is_lead:
        local = np.sort(common)
        return StudyVariants(local, np.zeros(V, bool), local.copy(), dups)
    rank, lead_larger = got // 2, (got % 2).astype(bool)
    if not np.array_equal(np.sort(rank), np.arange(V)):  # cannot happen unless a party deviates
        raise RuntimeError("the secure variant intersection gave the sites different common variants")
    local = np.empty(V, dtype=np.int64)
    flip = np.empty(V, dtype=bool)
    local[rank] = common
    flip[rank] = alt_larger[common] != lead_larger
    return StudyVariants(local, flip, np.full(V, -1, dtype=np.int64), dups)
