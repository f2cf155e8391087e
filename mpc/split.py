"""Openings split among the parties: each party opens one block, then passes on what the others need.

A plain opening of a masked ring vector sends every element from every party to
every other: (n-1) 8 bytes per element and party, one round. Where rounds are
cheap against bytes (a stage's per-variant arrays under ``Context.lean()``),
splitting it costs one more round and sends much less:

  round 1 (``open_blocks``): the elements are cut into n contiguous blocks; the
     shares of block j go to party j only, which adds them: (n-1)/n 8 bytes per
     element and party;
  round 2 (``pass_blocks``): party j sends the others a function of its block
     that they need: the whole block (``open_relayed``, a king opening with the
     king's role rotating: (n-1)/n 16 bytes per element and party in all, 10.7
     instead of 16 with 3 parties), or just its top bits (``protocols.truncate``).

Every message is a masked value or part of one (the block sums are the same
uniform values a plain opening gives everyone); the ledger records both rounds.
"""
from __future__ import annotations

import numpy as np

from .ledger import MASKED

__all__ = ["blocks", "open_blocks", "pass_blocks", "open_relayed"]

U64 = np.uint64


def blocks(ctx, size: int) -> list[slice]:
    """The n contiguous blocks of ``size`` elements, block j opened by party j (public)."""
    n = ctx.n
    cut = [size * j // n for j in range(n + 1)]
    return [slice(cut[j], cut[j + 1]) for j in range(n)]


def open_blocks(ctx, flat: np.ndarray, label: str) -> np.ndarray:
    """Round 1: this party's block of the opened flat uint64 ``flat`` (its share); one round."""
    got = ctx.open_requests([([flat[b]], label, p, MASKED, 64, False, None)
                             for b, p in zip(blocks(ctx, flat.size), ctx.parties)])
    return got[ctx.index][0]


def pass_blocks(ctx, own: np.ndarray, sizes: list[int], label: str) -> list[np.ndarray]:
    """Round 2: party j sends the others ``own`` (its uint64 array, ``sizes[j]`` elements at party j).

    Returns every party's array in party order (this party's own included); one round.
    """
    me = ctx.index
    mine = [own if j == me else np.broadcast_to(U64(0), (s,)) for j, s in enumerate(sizes)]  # sizes only
    got = ctx.open_requests([([mine[j]], label, [q for q in ctx.parties if q != p], MASKED, 64, False, [p])
                             for j, p in enumerate(ctx.parties)])
    return [own if j == me else got[j][0] for j in range(ctx.n)]


def open_relayed(ctx, shares: np.ndarray, label: str) -> np.ndarray:
    """Open a masked ring array to every party in two rounds with a third fewer bytes (n = 3).

    Returns the opened uint64 array (shape of ``shares``) at every party.
    """
    flat = np.ascontiguousarray(shares, dtype=U64).ravel()
    sizes = [b.stop - b.start for b in blocks(ctx, flat.size)]
    own = open_blocks(ctx, flat, label)
    return np.concatenate(pass_blocks(ctx, own, sizes, label + ".relay")).reshape(np.shape(shares))
