"""Square root and inverse square root of secret-shared positive fixed-point values.

x is normalised to z = X / 4^(j*+1) in [1/4, 1) by a secret power of four
(``protocols.normalize``), so that sqrt(x) = sqrt(z) 2^(j*+1-f/2) needs only a
secret power of two to undo. On z, Goldschmidt's coupled iteration
g -> sqrt(z), y -> 1/sqrt(z) starts from a minimax linear 1/sqrt and doubles the
number of correct bits per step; one run gives both roots.
"""
from __future__ import annotations

from cipherome.mpc.shares import Shared, concat

from .arith import mul, mul_public
from .beaver_multi import MultiProduct
from .normalize import WORK_FRAC, mul_exact, normalize, scale_pow2
from .trunc import truncate

__all__ = ["sqrt", "invsqrt", "sqrt_invsqrt", "invsqrt_table", "INVSQRT_INIT"]

#: minimax linear start for 1/sqrt(z) on [1/4, 1]: relative error <= 0.086
INVSQRT_INIT = (2.13277254, -1.21872717)
_ITERS = 3  # 0.086 -> 1.1e-2 -> 1.8e-4 -> 5e-8


def _goldschmidt(z: Shared, iters: int):
    """g ~ sqrt(z), y ~ 1/sqrt(z) for z in [1/4, 1) at z's scale F.

    y_0 = a + b z (1 truncation round), g_0 = z y_0 (2 rounds); per step:
    u = (3 - g y) / 2 (one product truncated by F + 1: 2 rounds), then g <- g u,
    y <- y u (2 rounds); g, y and u are opened once each (``MultiProduct``), so a
    step opens 3 values and truncates 3 per element. g y -> 1 quadratically:
    1 - g_(k+1) y_(k+1) = (3/4)(1 - g_k y_k)^2 (1 + ...).
    """
    ctx = z.ctx
    F = z.frac
    a, b = INVSQRT_INIT
    y = mul_public(z, b, frac=F) + a
    g = mul(z, y)
    n = z.size
    for _ in range(iters):
        # g, y and u are each opened once (masks a_g, a_y, a_u; the dealer gives their products)
        mp = MultiProduct(ctx, z.shape, 3, [(0, 1), (0, 2), (1, 2)])
        mp.open({0: g, 1: y})
        gy = truncate(mp.product(0, 1), F + 1, frac=F)  # g y / 2
        u = 1.5 - gy
        mp.open({2: u})
        both = truncate(concat([mp.product(0, 2), mp.product(1, 2)]), F)
        g, y = both[:n], both[n:]
    return g, y


def _prepare(x: Shared, hi: int):
    """X and its scale made even (sqrt of 2^-f must be a power of two): X' = 2X if f is odd."""
    f = x.frac
    if f % 2:
        x = Shared(x.ctx, x.data << 1, f + 1)
        f += 1
        hi_bits = f + hi
    else:
        hi_bits = f + hi
    return x, f, hi_bits


def sqrt_invsqrt(x: Shared, *, hi: int = 24, frac: int | None = None, which=("sqrt", "invsqrt"),
                 iters: int = _ITERS):
    """Both sqrt(x) and 1/sqrt(x) from one normalisation and one Goldschmidt run.

    Valid for 2^-f <= x < 2^hi (f = x.frac; sqrt also gives 0 for x = 0).
    Steps: normalise (``normalize``, 15 rounds for f + hi = 44); Goldschmidt on z
    at 28 fractional bits (3 + 3 * 4 rounds); undo the normalisation:
    sqrt(x) = g 2^(j*+1-f/2), 1/sqrt(x) = y 2^(f/2-1-j*): one product with a secret
    power of two and one truncation each (both in the same 2 rounds).
    Output scale ``frac`` (default x.frac). Error: relative 1e-7 from the iteration
    plus at most 2 units of 2^-frac.
    Returns a tuple in the order of ``which``. ``iters`` Goldschmidt steps (default 3);
    fewer give a cheaper, rougher result (2: relative 2e-4, 1: 1e-2), 4 rounds per step.
    """
    ctx = x.ctx
    f0 = x.frac
    fo = f0 if frac is None else int(frac)
    x, f, K = _prepare(x, int(hi))
    F = WORK_FRAC
    nz = normalize(x, K, F)
    g, y = _goldschmidt(nz.z, int(iters))
    hf = f // 2
    out = {}
    parts = []
    if "sqrt" in which:
        e = [1 + j - hf + fo - F for j in range(nz.J + 1)]
        parts.append(("sqrt", g, e, F + 1, (K - f) // 2 + 1 + fo + 1))
    if "invsqrt" in which:
        e = [hf - 1 - j + fo - F for j in range(nz.J + 1)]
        parts.append(("invsqrt", y, e, F + 2, hf + fo + 1))
    if len(parts) == 2 and _same_plan(parts):
        # one batched scaling for both: concatenate and use per-element tables
        out.update(_scale_both(nz, parts, fo))
    else:
        for name, v, e, a_bits, out_bits in parts:
            out[name] = scale_pow2(v, nz, e, a_bits=a_bits, out_bits=out_bits, frac=fo)
    return tuple(out[w] for w in which)


def _same_plan(parts) -> bool:
    from .normalize import pow2_plan

    plans = [pow2_plan(e, a, o) for _, _, e, a, o in parts]
    return len(plans[0]) == len(plans[1]) and all(p[1] == q[1] for p, q in zip(*plans))


def _scale_both(nz, parts, fo):
    """scale_pow2 for two values in the same rounds (their plans have the same truncations)."""
    from .normalize import pow2_plan

    ctx = nz.z.ctx
    plans = [pow2_plan(e, a, o) for _, _, e, a, o in parts]
    n = parts[0][1].size
    cur = concat([Shared(ctx, p[1].data.ravel(), 0) for p in parts])
    for stage in range(len(plans[0])):
        d0, t = plans[0][stage]
        d1, _ = plans[1][stage]
        if any(d0) or any(d1):
            s = concat([Shared(ctx, nz.table([1 << v for v in d]), 0) for d in (d0, d1)])
            cur = mul_exact(cur, s)
        if t:
            cur = truncate(cur, t, frac=0)
    shape = parts[0][1].shape
    return {
        parts[0][0]: Shared(ctx, cur.data[:n].reshape(shape), fo),
        parts[1][0]: Shared(ctx, cur.data[n:].reshape(shape), fo),
    }


def sqrt(x: Shared, *, hi: int = 24, frac: int | None = None) -> Shared:
    """sqrt(x) for x = 0 or 2^-f <= x < 2^hi; relative error ~1e-7 plus 2 units of 2^-frac.

    Rounds (f = 20, hi = 24): 15 (normalise) + 15 (Goldschmidt) + 2 (scaling) = 32.
    """
    return sqrt_invsqrt(x, hi=hi, frac=frac, which=("sqrt",))[0]


def invsqrt(x: Shared, *, hi: int = 24, frac: int | None = None, iters: int = _ITERS) -> Shared:
    """1/sqrt(x) for 2^-f <= x < 2^hi; relative error ~1e-7 plus 2 units of 2^-frac.

    Rounds (f = 20, hi = 24): 32, as ``sqrt``. Traffic per element and peer: ~0.3 kB.
    """
    return sqrt_invsqrt(x, hi=hi, frac=frac, which=("invsqrt",), iters=iters)[0]


def invsqrt_table(x: Shared, *, hi: int = 12, per_octave: int = 64, frac: int | None = None) -> Shared:
    """A rough 1/sqrt(x) in one comparison round-trip, for a few values (e.g. pivots).

    Steps: one batched ltz of X - t_i against the thresholds t_i = ceil(2^(i/per_octave))
    (as ring integers, duplicates removed) gives the thermometer [X >= t_i]; the result
    is a public table of 1/sqrt at the geometric middle of each bucket, selected
    locally by the thermometer (no multiplication, no truncation).
    Valid for 2^-f <= x < 2^hi. Error: relative <= 2^(1/(4 per_octave)) - 1
    (per_octave = 64: 0.27%) for X >= per_octave (below, the buckets are single
    integers and the table is exact up to the output rounding), plus half a unit of
    2^-frac. Rounds: 7. Traffic: (f + hi) per_octave comparisons per value, so use it
    for small inputs only.
    """
    import math

    import numpy as np

    from cipherome.mpc.ring import encode

    from .compare import ltz

    ctx = x.ctx
    f = x.frac
    fo = f if frac is None else int(frac)
    K = f + int(hi)
    th = np.unique(np.ceil(2.0 ** (np.arange(1, K * per_octave + 1) / per_octave)).astype(np.int64))
    th = th[(th > 1) & (th < 2**K)]
    lo = np.concatenate([[1], th])
    hi_ = np.concatenate([th, [2**K]])
    # bucket b holds the integers lo[b] .. hi_[b] - 1; its representative value is their geometric middle
    mid = np.sqrt(lo.astype(np.float64) * np.maximum(hi_ - 1, lo).astype(np.float64))
    vals = encode(2.0 ** (f / 2) / np.sqrt(mid), fo).view(np.int64)
    flat = x.data.ravel()
    d = flat[None, :] - (th.astype(np.uint64)[:, None] if ctx.is_lead else np.zeros((th.size, 1), np.uint64))
    lt = ltz(Shared(ctx, d, 0), min(64, K + 2)).data  # (T, n): [X < t_i]
    ge = np.uint64(0) - lt
    if ctx.is_lead:
        ge += np.uint64(1)
    steps = np.diff(vals).astype(np.int64).view(np.uint64)
    out = (ge * steps[:, None]).sum(axis=0, dtype=np.uint64)
    if ctx.is_lead:
        out += np.uint64(vals[0])
    del math
    return Shared(ctx, out.reshape(x.shape), fo)
