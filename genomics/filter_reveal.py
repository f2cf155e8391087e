"""Opening the answer of a hashed filter: which slots hold candidates, and the candidates' keys, without saying who holds them.

For a group of anchor tables (one per owner) with 0/1 shares r (T, L), the number
of qualifying variants per slot, c_s = sum of r over the slot's lanes of every
owner, is opened first: it follows from the released candidates and the job key,
so it discloses nothing more. For the K slots with c_s > 0 every owner inputs,
for its lanes there, the candidate text ("key, genes, consequence" of its
variant, W uint64 words) and the parties open sum_a r_a * text_a; in the rare
slot with several candidates they are first ranked by fingerprint,
rank_a = sum_b r_b [fp_b < fp_a], and opened one rank at a time. Only sums over
all owners are opened, so nobody learns which site holds a released variant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import compare
from cipherome.protocols.arith import mul

from .filter_align import OwnerTable
from .filter_keys import FP_BITS

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


def _owner_texts(ctx, group: AnchorGroup, slots: np.ndarray) -> list[list[str] | None]:
    """At each owner, the texts of its lanes in ``slots`` ((K * L) strings, '' for empty lanes)."""
    out = []
    for t, text in zip(group.tables, group.text):
        if not t.mine(ctx):
            out.append(None)
            continue
        rows = t.rows[slots]
        out.append([text(int(r)) if r >= 0 else "" for r in rows.ravel()])
    return out


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
    got = ctx.open_ring(packed, label, masked=False)
    mask = np.uint64((1 << w) - 1)
    out = []
    for g, n in zip(got, sizes):
        fields = (g[:, None] >> (np.arange(per, dtype=np.uint64) * np.uint64(w))[None, :]) & mask
        out.append(fields.ravel()[:n].astype(np.int64))
    return out


def reveal_candidates(ctx, groups: list[AnchorGroup]) -> list[list[str]]:
    """Per group, the texts of its candidates (each once), opened as described in the module docstring.

    Rounds: 1 (slot counts) + 2 (text lengths: product, opening) + 2 (texts:
    product, opening); slots with several candidates add a 50-bit comparison,
    a small equality and three product rounds. Traffic: T per group in the first
    opening, then O(K * A * W) for K candidate slots, A anchors per slot, W words.
    """
    counts = []
    for g in groups:
        c = None
        for r in g.r:
            s = r.sum(axis=1)
            c = s if c is None else c + s
        counts.append(c)
    opened = _open_packed(ctx, counts, sum(t.L for t in groups[0].tables), "filter.candidate_slots")
    slots = [np.flatnonzero(o > 0) for o in opened]
    mult = [o[s] for o, s in zip(opened, slots)]
    if not any(s.size for s in slots):
        return [[] for _ in groups]
    L = groups[0].tables[0].L
    A = sum(t.L for t in groups[0].tables)
    # anchors of the candidate slots, all groups stacked along K
    r_sel, fp_sel, lens, texts_at = [], [], [], []
    for g, s in zip(groups, slots):
        if not s.size:
            continue
        r_sel.append(concat([r[s] for r in g.r], axis=1))
        fp_sel.append(concat([t.shared[s] for t in g.tables], axis=1))
        owned = _owner_texts(ctx, g, s)
        texts_at.append(owned)
        for t, mine in zip(g.tables, owned):
            ln = None if mine is None else np.array([len(x.encode()) for x in mine], np.int64).reshape(s.size, t.L)
            lens.append((t, ln, s.size))
    R = concat(r_sel, axis=0)  # (K, A)
    FP = concat(fp_sel, axis=0)
    K = R.shape[0]
    # per owner inputs are laid out group by group, owner by owner: rebuild (K, A) in that order
    len_cols, pos = [], 0
    for g, s in zip(groups, slots):
        if not s.size:
            continue
        cols = []
        for t in g.tables:
            _, ln, k = lens[pos]
            cols.append(ctx.input(t.site, ln, shape=(k, t.L), frac=0))
            pos += 1
        len_cols.append(concat(cols, axis=1))
    LEN = concat(len_cols, axis=0)
    z = mul(R, LEN).sum(axis=1)
    zl = ctx.open(z, "filter.candidate_text_bytes")
    words = max(1, math.ceil(int(zl.max()) / 8))
    text_cols = []
    for (g, s), owned in zip([(g, s) for g, s in zip(groups, slots) if s.size], texts_at):
        cols = []
        for t, mine in zip(g.tables, owned):
            enc = None if mine is None else encode_text(mine, words).reshape(s.size, t.L, words)
            cols.append(ctx.input(t.site, enc, shape=(s.size, t.L, words), frac=0))
        text_cols.append(concat(cols, axis=1))
    TXT = concat(text_cols, axis=0)  # (K, A, W)
    cnt = np.concatenate([m for m in mult if m.size])
    single = np.flatnonzero(cnt == 1)
    multi = np.flatnonzero(cnt > 1)
    texts = [None] * K
    if single.size:
        r1 = R[single].reshape(single.size, A, 1).broadcast_to((single.size, A, words))
        out = mul(r1, TXT[single]).sum(axis=1)
        got = ctx.open(out, "filter.candidate_texts")
        for j, k in enumerate(single):
            texts[k] = [decode_text(got[j])]
    if multi.size:
        cmax = int(cnt[multi].max())
        r2, fp2, t2 = R[multi], FP[multi], TXT[multi]
        m = multi.size
        diff = fp2.reshape(m, 1, A) - fp2.reshape(m, A, 1)  # [k, a, b] = fp_b - fp_a
        lt = compare.ltz(diff, FP_BITS + 2)  # [fp_b < fp_a]
        rank = mul(r2.reshape(m, 1, A).broadcast_to((m, A, A)), lt).sum(axis=2)
        eq = compare.eqz(rank.reshape(m, A, 1) - np.arange(cmax).reshape(1, 1, cmax), max(3, (A + 1).bit_length() + 1))
        sel = mul(r2.reshape(m, A, 1).broadcast_to((m, A, cmax)), eq)
        out = mul(sel.reshape(m, A, cmax, 1).broadcast_to((m, A, cmax, words)),
                  t2.reshape(m, A, 1, words).broadcast_to((m, A, cmax, words))).sum(axis=1)
        got = ctx.open(out, "filter.candidate_texts")
        for j, k in enumerate(multi):
            texts[k] = [decode_text(got[j, i]) for i in range(int(cnt[k]))]
    result, pos = [], 0
    for s in slots:
        lst = []
        for k in range(pos, pos + s.size):
            lst += texts[k]
        result.append(lst)
        pos += s.size
    del L
    return result
