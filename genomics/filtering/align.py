"""Secure alignment of hashed variant tables: which lanes of two owners hold the same variant, and their aligned sums.

Each owner (a site, or one family member at its site) holds a (T, L) table of
48-bit fingerprints, secret-shared for free. For two owners A and B the match
tensor E[s, l, l'] = [fp_A[s, l] == fp_B[s, l']] is computed for every slot at
once: by the owner in plaintext when A and B sit at the same site (then input
for free), otherwise by one batched secure equality test. Sums of B's per-lane
values over the lanes matching each of A's lanes are then ``E @ F_B`` (one
batched matrix product), or just ``E.sum(-1)`` when B's table lists members of a
set (every lane counts 1). Nothing is opened except uniformly masked values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cipherome.mpc.shares import Shared, concat
from cipherome.protocols.beaver import MATMUL, beaver_products
from cipherome.protocols.compare import eqz

from cipherome.genomics.filtering.keys import FP_BITS

__all__ = ["OwnerTable", "share_tables", "match_tables", "aligned_sums"]


@dataclass
class OwnerTable:
    """One owner's hashed table: ``site`` (compute party), ``name`` (for messages), T slots x L lanes.

    ``fp`` (T, L) uint64 and ``rows`` (T, L) int64 (row of the owner's data, -1
    empty) exist only at the owner; ``shared`` is everybody's share of ``fp``.
    """

    site: str
    name: str
    T: int
    L: int
    fp: np.ndarray | None = None
    rows: np.ndarray | None = None
    shared: Shared | None = None
    #: a cuckoo table: an entry's slot depends on the owner's other entries (not on its key alone)
    cuckoo: bool = False

    def mine(self, ctx) -> bool:
        return ctx.me == self.site

    def part(self, slots: slice) -> "OwnerTable":
        """The table restricted to a range of slots (views, no copy): one chunk of a streamed matching."""
        sub = OwnerTable(self.site, self.name, len(range(*slots.indices(self.T))), self.L, cuckoo=self.cuckoo)
        if self.fp is not None:
            sub.fp, sub.rows = self.fp[slots], self.rows[slots]
        if self.shared is not None:
            sub.shared = self.shared[slots]
        return sub


def share_tables(ctx, tables: list[OwnerTable]) -> None:
    """Secret-share every owner's fingerprint table (free: inputs expand from pairwise seeds)."""
    for t in tables:
        t.shared = ctx.input(t.site, t.fp if t.mine(ctx) else None, shape=(t.T, t.L), frac=0)


def match_tables(ctx, pairs: list[tuple[OwnerTable, OwnerTable]]) -> list[Shared]:
    """Match tensors E (T, L_a, L_b) with E[s, l, l'] = [fp_a[s, l] == fp_b[s, l']] for each pair (a, b).

    Empty lanes (fp 0) match each other; callers make empty anchors fail.
    Same-site pairs: computed by that site and input (no traffic). Cross-site
    pairs: all differences fp_a - fp_b in one ``eqz`` on 48 bits (exact: both are
    below 2^48). Rounds: ceil(log2 48) + 1 = 7 (0 if every pair is same-site).
    Traffic per compared lane pair and party: 8 bytes per peer for the masked
    difference plus about 2 bytes of AND-layer openings (47 AND gates / 32 lanes).
    """
    out: list[Shared | None] = [None] * len(pairs)
    where = []
    for k, (a, b) in enumerate(pairs):
        if a.T != b.T:
            raise ValueError("tables of one comparison must have the same number of slots")
        shape = (a.T, a.L, b.L)
        if a.site == b.site:
            e = None
            if a.mine(ctx):
                e = (a.fp[:, :, None] == b.fp[:, None, :]).astype(np.int64)
            out[k] = ctx.input(a.site, e, shape=shape, frac=0)
            continue
        where.append((k, shape, a, b))
    if where:  # every difference written once into one flat vector (no list of parts beside its concatenation)
        flat = np.empty(sum(int(np.prod(shape)) for _k, shape, _a, _b in where), np.uint64)
        pos = 0
        for _k, shape, a, b in where:
            size = int(np.prod(shape))
            np.subtract(a.shared.data.reshape(a.T, a.L, 1), b.shared.data.reshape(b.T, 1, b.L),
                        out=flat[pos:pos + size].reshape(shape))
            pos += size
        eq = eqz(Shared(ctx, flat, 0), bits=FP_BITS)
        pos = 0
        for k, shape, _a, _b in where:
            size = int(np.prod(shape))
            out[k] = eq[pos:pos + size].reshape(shape)
            pos += size
    return out


def _matmuls(ctx, pairs: list[tuple[Shared, Shared]]) -> list[Shared]:
    """Batched ring matrix products X_k @ Y_k (integers, no truncation) of any shapes, in one round.

    Beaver with dealer matrix triples (``protocols.beaver.beaver_products``): open X - A
    and Y - B of all products together, then Z = C + (X - A) B + A (Y - B) (+ (X - A)(Y - B)
    on the lead).
    """
    if not pairs:
        return []
    items = [(x.data, y.data, ctx.provider.matrix_triple(x.shape, y.shape)) for x, y in pairs]
    return [Shared(ctx, z, 0) for z in beaver_products(ctx, MATMUL, items, "matmul")]


def aligned_sums(items: list[tuple[Shared, Shared | None]]) -> list[Shared]:
    """For each (E (T, La, Lb), F (T, Lb, C) or None): sum over matching lanes, (T, La, C) or (T, La).

    F None: E.sum(-1) (membership tables, local). Otherwise E @ F as batched ring
    matrix products; items that share the same F (the same object) are stacked
    along La so that F is masked once; all products in one Beaver round (integer
    values, no truncation). Traffic per party and peer: 8 (T La Lb + T Lb C)
    bytes per distinct F, La summed over the items sharing it.
    """
    out: list[Shared | None] = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for k, (e, f) in enumerate(items):
        if f is None:
            out[k] = e.sum(axis=2)
        else:
            groups.setdefault(id(f), []).append(k)
    if not groups:
        return out
    ctx = items[next(iter(groups.values()))[0]][0].ctx
    keys = list(groups.values())
    prods = _matmuls(ctx, [(concat([items[k][0] for k in ks], axis=1), items[ks[0]][1]) for ks in keys])
    for ks, z in zip(keys, prods):
        pos = 0
        for k in ks:
            la = items[k][0].shape[1]
            out[k] = z[:, pos:pos + la]
            pos += la
    return out
