"""Fixed-point truncation of shared values by a public number of bits, in one round.

Truncation divides a shared value by 2^d, rounding down, after a product has
doubled the fixed-point scale. The protocol opens x + r for a uniform ring mask r
and corrects the wrap-around with the shared top bit of r, so it is exact up to
one unit in the last place, with no failure probability for |x| < 2^62.

In a stage run under ``Context.lean()`` the opening is split: only the party
that adds the public terms needs all of c = x + r, the others need its top bit.
Each party opens a third of the elements (with 3 parties) and returns their top
bits packed 64 to a word: two rounds, and each party sends (n-1)/n * 8 + (n-1)/(64 n) * 8
bytes per element instead of (n-1) * 8 (about 5.4 instead of 16 with 3 parties).
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.kernels import trunc_combine
from cipherome.mpc.shares import Shared
from cipherome.mpc.split import blocks, open_blocks, pass_blocks

__all__ = ["truncate", "prefetch_pairs", "TRUNC_RANGE_BITS"]

U64 = np.uint64
#: inputs must satisfy |x| < 2^62 (as ring integers) for the result to be correct
TRUNC_RANGE_BITS = 62


def truncate(x: Shared, bits: int, *, frac: int | None = None, pair=None) -> Shared:
    """Shares of floor(x / 2^bits) (possibly one less), for |x| < 2^62 as a ring integer.

    Steps (k = 64, d = bits; dealer gives r uniform, [r_msb], [(r mod 2^63) >> d]):
      1. x' = x + 2^62, so 0 <= x' < 2^63 (the lead adds the constant).
      2. open c = x' + r (masked: uniform, reveals nothing) -- one round.
      3. w = c_msb XOR r_msb = c_msb + (1 - 2 c_msb) r_msb is the carry of
         x' + (r mod 2^63) past 2^63, linear in [r_msb]; then
         x' = (c mod 2^63) + w 2^63 - (r mod 2^63), hence
         x' >> d = ((c mod 2^63) >> d) + w 2^(63-d) - ((r mod 2^63) >> d) - e, where
         e = 1 iff the low d bits of c are below those of r; the parties compute
         the sum without e (they cannot know it).
      4. subtract 2^(62-d).
    Error: the result is floor(x / 2^d) + e with e in {0, 1}: at most one unit in the
    last place (2^-frac), never larger, for every |x| < 2^62; e is 1 with
    probability about (x mod 2^d) / 2^d, so the result is also unbiased rounding.
    Cost: 1 round; each party sends (n-1) * 8 bytes per element; the dealer sends
    the lead 16 bytes per element.
    ``frac`` is the scale of the result (default: x.frac - bits, which must then be >= 0).
    ``pair``: the dealer's material, ``ctx.provider.trunc_pair(x.shape, bits)``, fetched earlier by
    a caller that knows its truncations ahead (``prefetch_pairs``): the request then travels while
    the caller's previous rounds run instead of before this one.
    """
    if bits == 0:
        return x
    if not 0 < bits < 62:
        raise ValueError("truncation by 1..61 bits")
    if frac is None and x.frac < bits:
        raise ValueError(f"truncating a value with {x.frac} fractional bits by {bits}: pass frac=")
    ctx = x.ctx
    if pair is None:
        pair = ctx.provider.trunc_pair(x.shape, bits)
    r = pair[0]
    if r.shape != x.shape:
        raise ValueError(f"truncation material of shape {r.shape} for a value of shape {x.shape}")
    masked = x.data + r
    if ctx.is_lead:
        masked += U64(1 << 62)
    if ctx.lean_mode:
        out = _split_combine(ctx, masked, pair[1], pair[2], bits)
    else:
        (c,) = ctx.open_masked([masked], "trunc")
        out = trunc_combine(c, pair[1], pair[2], bits, ctx.is_lead)
    return Shared(ctx, out, x.frac - bits if frac is None else frac)


def prefetch_pairs(ctx, specs) -> list:
    """Truncation material for the ``(shape, bits)`` of each coming ``truncate`` call, requested now.

    Every request leaves at once and is awaited only at its truncation (``mpc.correlated.Bundle``),
    so a protocol that knows its truncations before its first round takes the dealer's round trip
    off its critical path (each request otherwise costs one latency before its truncation's round).
    Every party makes the same requests in the same order, as always (SPMD).
    """
    return [ctx.provider.trunc_pair(shape, bits) for shape, bits in specs]


def _split_combine(ctx, masked: np.ndarray, r_msb: np.ndarray, r_low: np.ndarray, bits: int) -> np.ndarray:
    """Steps 2-3 of ``truncate`` with the opening split among the parties (lean mode, two rounds).

    Block j of c = x' + r is opened to party j only (``mpc.split.open_blocks``), which
    then plays the lead for that block (adds the public terms of c in
    ``trunc_combine``); party j then sends the others the top bits of its block,
    packed 64 to a uint64 word (``mpc.split.pass_blocks``): all their local step needs.
    c is uniform, so every bit of it is masked.
    """
    flat = masked.ravel()
    parts = blocks(ctx, flat.size)
    own = open_blocks(ctx, flat, "trunc")
    tops = pass_blocks(ctx, _pack_top_bits(own), [-(-(b.stop - b.start) // 64) for b in parts], "trunc.msb")
    out = np.empty(flat.size, dtype=U64)
    r_msb, r_low = np.asarray(r_msb, dtype=U64).ravel(), np.asarray(r_low, dtype=U64).ravel()
    for j, b in enumerate(parts):
        c = own if j == ctx.index else _unpack_top_bits(tops[j], b.stop - b.start)
        out[b] = trunc_combine(c, r_msb[b], r_low[b], bits, j == ctx.index)
    return out.reshape(masked.shape)


def _pack_top_bits(c: np.ndarray) -> np.ndarray:
    """The top bit of each uint64, packed little-endian 64 to a uint64 word."""
    packed = np.packbits((c >> U64(63)).astype(np.uint8), bitorder="little")
    words = np.zeros(-(-c.size // 64) * 8, dtype=np.uint8)
    words[: packed.size] = packed
    return words.view("<u8").astype(U64, copy=False)


def _unpack_top_bits(words: np.ndarray, size: int) -> np.ndarray:
    """Inverse of ``_pack_top_bits``: uint64 values with the bits in place 63 (the low bits zero)."""
    b = np.unpackbits(np.ascontiguousarray(words, dtype="<u8").view(np.uint8), count=size, bitorder="little")
    return b.astype(U64) << U64(63)
