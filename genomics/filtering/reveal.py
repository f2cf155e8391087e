"""Opening the answer of a hashed filter: which slots hold candidates, and the candidates' keys, without saying who holds them.

For a group of anchor tables (one per owner, A lanes per slot in all) with 0/1
shares r (T, L), three things are opened, each a function of the released
candidates and the job key only:
  1. c_s, the number of candidates per slot (sum of r over the slot's lanes);
  2. the candidates' fingerprints, per slot in increasing order: the r = 1 lanes
     are compacted by their prefix count (k-th output = sum_a r_a [pre_a = k] fp_a,
     pre_a = sum_{b<a} r_b) and, where a slot has several, sorted by rank
     (sum_j [f_j < f_i]) so that the order says nothing about which site holds which;
  3. for each fingerprint phi, the text "key, genes, consequence" of the
     variant: every owner marks its lane with fingerprint phi (it knows its own
     fingerprints; the mark is a private input), the first holder is selected by
     rr_o = sum_l mark_ol r_ol and the text sum_o rr_o text_o is opened.
Only sums over all owners are opened, so nobody learns which site holds a released variant.

A cuckoo table (``OwnerTable.cuckoo``) places an entry in one of its hash bins depending
on the owner's other entries, so the slot of a released candidate would tell the other
sites which bin it took, a function of the owner's non-candidate entries. Such a table
and its shares r are first put in an order that only its owner knows (a uniformly random
private permutation, ``protocols.permute``: one round, ``filter.candidate_shuffle``,
masked); the slot positions opened afterwards are then independent of the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import compare
from cipherome.protocols.arith import mul
from cipherome.protocols.permute import permute, private_permutations

from cipherome.genomics.filtering.align import OwnerTable
from cipherome.genomics.filtering.keys import FP_BITS

__all__ = ["AnchorGroup", "reveal_candidates", "encode_text", "decode_text"]


@dataclass
class AnchorGroup:
    """Anchor tables of one output list (all with the same T and L), their 0/1 shares r (T, L), and at each
    owner ``text(row) -> str`` describing its variant in a row."""

    tables: list[OwnerTable]
    r: list[Shared]
    text: list[Callable[[int], str] | None]


def encode_text(texts: list[str], words: int) -> np.ndarray:
    """UTF-8 texts as (len, words) uint64, zero padded or cut to 8 * words bytes (little-endian)."""
    out = np.zeros((len(texts), words), dtype=np.uint64)
    for i, t in enumerate(texts):
        b = t.encode()[:8 * words]
        if b:
            out[i] = np.frombuffer(b.ljust(8 * words, b"\0"), dtype="<u8")
    return out


def decode_text(words: np.ndarray) -> str:
    return np.asarray(words, dtype="<u8").tobytes().rstrip(b"\0").decode("utf-8", "replace")


def _open_packed(ctx, counts: list[Shared], most: int, label: str) -> list[np.ndarray]:
    """Open small counts in [0, most], several per ring element: fields of w = bit_length(most) bits,
    sum_k c_k 2^(w k) is a local linear map and carries nothing between fields. Same disclosure, 64/w less traffic."""
    w = max(1, int(most).bit_length())
    per = 64 // w
    packed, sizes = [], []
    weights = np.array([1 << (w * k) for k in range(per)], dtype=np.uint64)
    for c in counts:
        n = c.size
        pad = -n % per
        d = np.concatenate([c.data.ravel(), np.zeros(pad, np.uint64)]).reshape(-1, per)
        packed.append((d * weights).sum(axis=1, dtype=np.uint64))
        sizes.append(n)
    got = ctx.disclose(packed, label)
    mask = np.uint64((1 << w) - 1)
    out = []
    for g, n in zip(got, sizes):
        fields = (g[:, None] >> (np.arange(per, dtype=np.uint64) * np.uint64(w))[None, :]) & mask
        out.append(fields.ravel()[:n].astype(np.int64))
    return out


def _candidate_fingerprints(ctx, R: Shared, FP: Shared, cnt: np.ndarray) -> list[np.ndarray]:
    """Per candidate slot (rows of R, FP: (K, A)), its cnt[k] candidate fingerprints in increasing order (opened).

    Rounds: 1 (products) + 1 (opening) if every slot has one candidate; otherwise
    + a small equality, a product, a 50-bit comparison of the compacted values,
    a small equality and a product. Traffic O(K A cmax + K cmax^2).
    """
    K, A = R.shape
    cmax = int(cnt.max())
    rf = mul(R, FP)
    if cmax == 1:
        got = ctx.open(rf.sum(axis=1), "filter.candidate_fingerprints")
        return [got[k:k + 1].view(np.uint64) for k in range(K)]
    pre = Shared(R.ctx, np.cumsum(R.data, axis=1, dtype=np.uint64) - R.data, 0)  # exclusive prefix count
    pos = compare.eqz(pre.reshape(K, A, 1) - np.arange(cmax).reshape(1, 1, cmax), max(3, (A + 1).bit_length() + 1))
    comp = mul(pos, rf.reshape(K, A, 1).broadcast_to((K, A, cmax))).sum(axis=1)  # (K, cmax), holder order
    multi = np.flatnonzero(cnt > 1)
    out_sorted = None
    if multi.size:
        m = multi.size
        c2 = comp[multi]
        diff = c2.reshape(m, cmax, 1) - c2.reshape(m, 1, cmax)  # [k, i, j] = f_i - f_j
        gt = compare.ltz(-diff, FP_BITS + 2)  # [f_j < f_i]
        valid = (np.arange(cmax)[None, :] < cnt[multi][:, None]).astype(np.int64)  # (m, cmax) public
        rank = (gt * valid.reshape(m, 1, cmax)).sum(axis=2)  # rank of i among the valid entries
        at = compare.eqz(rank.reshape(m, cmax, 1) - np.arange(cmax).reshape(1, 1, cmax),
                         max(3, (cmax + 1).bit_length() + 1))  # [k, i, t] = [rank_i == t]
        at = at * valid.reshape(m, cmax, 1)
        out_sorted = mul(at, c2.reshape(m, cmax, 1).broadcast_to((m, cmax, cmax))).sum(axis=1)  # (m, cmax)
    single = np.flatnonzero(cnt == 1)
    parts = [comp[single][:, 0]] + ([out_sorted.ravel()] if out_sorted is not None else [])
    got = ctx.open(concat(parts), "filter.candidate_fingerprints").view(np.uint64)
    res = [None] * K
    for j, k in enumerate(single):
        res[k] = got[j:j + 1]
    base = single.size
    for j, k in enumerate(multi):
        res[k] = got[base + j * cmax: base + j * cmax + int(cnt[k])]
    return res


def _shuffle_cuckoo(ctx, groups: list[AnchorGroup]) -> list[AnchorGroup]:
    """The groups with every cuckoo table (and its r) in a uniformly random order known to its owner only."""
    items, where = [], []
    for gi, g in enumerate(groups):
        for o, t in enumerate(g.tables):
            if t.cuckoo:
                pi = np.argsort(ctx.private_random((t.T,)), kind="stable") if t.mine(ctx) else None
                items.append((t.site, pi, t.T))
                where.append((gi, o, pi))
    if not items:
        return groups
    perms = private_permutations(ctx, items)
    pairs = []
    for pp, (gi, o, _) in zip(perms, where):
        pairs += [(pp, groups[gi].r[o]), (pp, groups[gi].tables[o].shared)]
    got = permute(pairs, label="filter.candidate_shuffle")
    for pp in perms:
        pp.free()
    out = [AnchorGroup(list(g.tables), list(g.r), g.text) for g in groups]
    for k, (gi, o, pi) in enumerate(where):
        t = groups[gi].tables[o]
        moved = OwnerTable(t.site, t.name, t.T, t.L, shared=got[2 * k + 1], cuckoo=True)
        if pi is not None:  # the owner: its fingerprints and rows in the same order
            moved.fp, moved.rows = t.fp[pi], t.rows[pi]
        out[gi].tables[o], out[gi].r[o] = moved, got[2 * k]
    return out


def reveal_candidates(ctx, groups: list[AnchorGroup]) -> list[list[str]]:
    """Per group, the texts of its candidates (each once), opened as described in the module docstring.

    Rounds: 1 (the shuffle of cuckoo tables, if any) + 1 (slot counts) + 2 (fingerprints; ~20 more if a slot has several
    candidates) + 4 (first-holder selection, text lengths, texts). Traffic: T/32
    ring elements per group for the counts, then O(K A) for K candidate slots with
    A anchor lanes each and O(C (A + n W)) for C candidates of W text words.
    """
    groups = _shuffle_cuckoo(ctx, groups)
    counts = []
    for g in groups:
        c = None
        for r in g.r:
            s = r.sum(axis=1)
            c = s if c is None else c + s
        counts.append(c)
    A = sum(t.L for t in groups[0].tables)
    opened = _open_packed(ctx, counts, A, "filter.candidate_slots")
    slots = [np.flatnonzero(o > 0) for o in opened]
    active = [(g, s, o[s]) for g, s, o in zip(groups, slots, opened) if s.size]
    if not active:
        return [[] for _ in groups]
    R = concat([concat([r[s] for r in g.r], axis=1) for g, s, _ in active], axis=0)  # (K, A)
    FP = concat([concat([t.shared[s] for t in g.tables], axis=1) for g, s, _ in active], axis=0)
    cnt = np.concatenate([c for _, _, c in active])
    phis = _candidate_fingerprints(ctx, R, FP, cnt)
    # one row per candidate: (group, slot, fingerprint)
    cand_rows, pos = [], 0
    for gi, (g, s, c) in enumerate(active):
        for k in range(s.size):
            for phi in phis[pos + k]:
                cand_rows.append((gi, pos + k, int(s[k]), int(phi)))
        pos += s.size
    C = len(cand_rows)
    owners = len(active[0][0].tables)
    spans = {}
    for c, row in enumerate(cand_rows):
        b, _ = spans.get(row[0], (c, c))
        spans[row[0]] = (b, c + 1)

    def per_owner(o: int, width, fn, fill=0) -> Shared:
        """(C, *width) shares: the rows of each group's candidates input by that group's owner o."""
        parts = []
        for gi, (b, e) in spans.items():
            t = active[gi][0].tables[o]
            val = None
            if t.mine(ctx):
                val = np.full((e - b, *width), fill, np.int64) if fn is None else fn(gi, t, b, e)
            parts.append(ctx.input(t.site, val, shape=(e - b, *width), frac=0))
        return concat(parts, axis=0)

    # marks: each owner flags its lane (if any) holding the candidate's fingerprint; it also keeps that row
    rows_at: dict = {}

    def marks_fn(gi, t, b, e):
        mk = np.zeros((e - b, t.L), np.int64)
        for c in range(b, e):
            _, _, slot, phi = cand_rows[c]
            hit = np.flatnonzero(t.fp[slot] == np.uint64(phi))
            if hit.size:
                mk[c - b, hit[0]] = 1
                rows_at[(id(t), c)] = int(t.rows[slot, hit[0]])
        return mk

    marks = [per_owner(o, (active[0][0].tables[o].L,), marks_fn) for o in range(owners)]
    Rc = R[np.array([row[1] for row in cand_rows])]  # (C, A): the anchors of each candidate's slot
    rr = mul(Rc, concat(marks, axis=1))
    sel, start = [], 0
    for o in range(owners):
        L = active[0][0].tables[o].L
        sel.append(rr[:, start:start + L].sum(axis=1).reshape(C, 1))
        start += L
    first = concat(sel, axis=1)  # (C, owners): 1 at the first holder

    def text_of(gi, t, c) -> str:
        r = rows_at.get((id(t), c))
        o = active[gi][0].tables.index(t)
        return active[gi][0].text[o](r) if r is not None else ""

    def lens_fn(gi, t, b, e):
        return np.array([len(text_of(gi, t, c).encode()) for c in range(b, e)], np.int64)

    lens = concat([per_owner(o, (), lens_fn).reshape(C, 1) for o in range(owners)], axis=1)
    z = ctx.open(mul(first, lens).sum(axis=1), "filter.candidate_text_bytes")
    words = max(1, math.ceil(int(z.max()) / 8))

    def text_fn(gi, t, b, e):
        return encode_text([text_of(gi, t, c) for c in range(b, e)], words).view(np.int64)

    TXT = concat([per_owner(o, (words,), text_fn).reshape(C, 1, words) for o in range(owners)], axis=1)
    out = mul(first.reshape(C, owners, 1).broadcast_to((C, owners, words)), TXT).sum(axis=1)
    got = ctx.open(out, "filter.candidate_texts")
    result = [[] for _ in groups]
    index = {id(g): i for i, g in enumerate(groups)}  # the (possibly shuffled) groups, in the callers' order
    for c, (gi, _, _, _) in enumerate(cand_rows):
        result[index[id(active[gi][0])]].append(decode_text(got[c]))
    return result
