"""Fixed-point truncation of shared values by a public number of bits, in one round.

Truncation divides a shared value by 2^d, rounding down, after a product has
doubled the fixed-point scale. The protocol opens x + r for a uniform ring mask r
and corrects the wrap-around with the shared top bit of r, so it is exact up to
one unit in the last place, with no failure probability for |x| < 2^62.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.kernels import trunc_combine
from cipherome.mpc.shares import Shared

__all__ = ["truncate", "TRUNC_RANGE_BITS"]

U64 = np.uint64
#: inputs must satisfy |x| < 2^62 (as ring integers) for the result to be correct
TRUNC_RANGE_BITS = 62


def truncate(x: Shared, bits: int, *, frac: int | None = None) -> Shared:
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
    """
    if bits == 0:
        return x
    if not 0 < bits < 62:
        raise ValueError("truncation by 1..61 bits")
    if frac is None and x.frac < bits:
        raise ValueError(f"truncating a value with {x.frac} fractional bits by {bits}: pass frac=")
    ctx = x.ctx
    pair = ctx.provider.trunc_pair(x.shape, bits)
    r = pair[0]
    masked = x.data + r
    if ctx.is_lead:
        masked += U64(1 << 62)
    (c,) = ctx.open_masked([masked], "trunc")
    out = trunc_combine(c, pair[1], pair[2], bits, ctx.is_lead)
    return Shared(ctx, out, x.frac - bits if frac is None else frac)
