"""Reciprocal and division of secret-shared fixed-point values (normalise, then Goldschmidt).

The divisor is first normalised to z in [1/4, 1) by a secret power of four
(``protocols.normalize``); 1/z is then approximated linearly and refined by
Goldschmidt's iteration w <- w (1 + e), e <- e^2, whose two products share one
round; the secret power of two that undoes the normalisation comes from the
same bit decomposition.
"""
from __future__ import annotations

from cipherome.mpc.shares import Shared, concat

from .arith import mul, mul_public
from .beaver_multi import MultiProduct
from .compare import ltz
from .normalize import WORK_FRAC, mul_exact, normalize, scale_pow2
from .trunc import truncate

__all__ = ["reciprocal", "div", "RECIP_INIT"]

#: minimax linear start for 1/z on [1/4, 1]: w0 = 160/41 - 128/41 z, |1 - z w0| <= 9/41
RECIP_INIT = (160 / 41, -128 / 41)
_ITERS = 4  # e0 <= 0.22 -> 0.22^16 ~ 3e-11


def _magnitude(x: Shared, hi: int, signed: bool):
    """(|x| and its sign bit s = [x < 0] if ``signed``, else x and None; K = x.frac + hi bits)."""
    K = x.frac + int(hi)
    if not signed:
        return x, None, K
    s = ltz(x, min(64, K + 2))
    return x - mul(s, x) * 2, s, K


def _apply_sign(y: Shared, s: Shared | None) -> Shared:
    return y if s is None else y - mul(s, y) * 2


def _inverse_normalized(z: Shared, iters: int) -> Shared:
    """w ~ 1/z for z in [1/4, 1) at z's scale: linear start, then Goldschmidt.

    e_0 = 1 - z w_0; w_(k+1) = w_k + w_k e_k, e_(k+1) = e_k^2 (one round opening w and e
    once each (``MultiProduct``), one truncation round). Relative error e_0^(2^iters)
    plus about one unit of the working scale per step.
    """
    a, b = RECIP_INIT
    F = z.frac
    w = mul_public(z, b, frac=F) + a
    e = 1 - mul(z, w)
    n = z.size
    for k in range(iters):
        last = k == iters - 1
        # w and e opened once each: w (1 + e) = w + w e and e^2 from the same masks
        mp = MultiProduct(z.ctx, z.shape, 2, [(0, 1)] if last else [(0, 1), (1, 1)])
        mp.open({0: w, 1: e})
        if last:
            w = w + truncate(mp.product(0, 1), F)
        else:
            both = truncate(concat([mp.product(0, 1), mp.product(1, 1)]), F)
            w, e = w + both[:n], both[n:]
    return w


def reciprocal(x: Shared, *, hi: int = 24, frac: int | None = None, signed: bool = False) -> Shared:
    """1/x elementwise for 2^-f <= x < 2^hi (f = x.frac); with ``signed`` also for negative x.

    Steps: normalise X = x 2^f to z = X / 4^(j*+1) in [1/4, 1) (``normalize``:
    bit decomposition, suffix OR, 4^(J-j*) scaling); w = 1/z by a linear start and
    4 Goldschmidt steps at 28 fractional bits; then 1/x = w 2^(f - 2 - 2 j*), a
    product with a secret power of two (two stages, each one product and one
    truncation, so that nothing exceeds 62 bits).
    Output scale ``frac`` (default x.frac). Error: relative <= 2e-8 from the
    iteration plus at most 3 units of 2^-frac; so the relative error is below 1e-5
    whenever 1/x >= 0.3 * 2^(frac-20) ... i.e. 1/x >= 3e5 * 2^-frac.
    Rounds (hi = 24, f = 20): 15 (normalise) + 3 (start) + 8 (iterations) + 4 (scaling) = 30;
    ``signed`` adds 9 (ltz, |x|, sign). Traffic per element and peer: about 0.4 kB.
    """
    f = x.frac
    fo = f if frac is None else int(frac)
    x, s, K = _magnitude(x, hi, signed)
    F = WORK_FRAC
    nz = normalize(x, K, F)
    w = _inverse_normalized(nz.z, _ITERS)
    e = [f - 2 - 2 * j + fo - F for j in range(nz.J + 1)]
    out = scale_pow2(w, nz, e, a_bits=F + 3, out_bits=f + fo + 1, frac=fo)
    return _apply_sign(out, s)


def div(x: Shared, y: Shared, *, hi: int = 24, x_hi: int = 16, q_hi: int = 20,
        frac: int | None = None, signed: bool = False) -> Shared:
    """x / y elementwise for 2^-f <= y < 2^hi (either sign with ``signed``), |x| < 2^x_hi, |x/y| < 2^q_hi.

    Steps: normalise y to z (as in ``reciprocal``); w = 1/z by Goldschmidt at
    Fw = min(28, 59 - x.frac - x_hi) fractional bits, so that the product x w
    stays below 2^62; q' = x w (one product, truncated to max(x.frac, Fw) bits);
    then x / y = q' 2^(f - 2 - 2 j*) by secret powers of two in stages. Taking the
    product before the scaling keeps the quotient's relative precision (about
    2^-Fw) even where 1/y itself is below the output resolution.
    Error: relative about 2^-Fw (x_hi = 16, f = 20: Fw = 23, 1.2e-7) plus a few
    units of 2^-frac, plus the propagated quantisation of x (|dx| / |y|).
    Rounds (defaults): 15 + 3 + 8 + 2 + 4 = 32 (+9 with ``signed``).
    """
    f, fx = y.frac, x.frac
    fo = fx if frac is None else int(frac)
    y, s, K = _magnitude(y, hi, signed)
    fw = min(WORK_FRAC, 59 - fx - int(x_hi))
    if fw < 12:
        raise ValueError("div: x_hi too large for 62-bit products; rescale x first")
    nz = normalize(y, K, fw)
    w = _inverse_normalized(nz.z, _ITERS)
    a = mul_exact(x, w)  # the exact product, |a| < 4 |x| 2^(fx + fw) < 2^61
    e = [f - 2 - 2 * j + fo - fx - fw for j in range(nz.J + 1)]
    out = scale_pow2(a, nz, e, a_bits=int(x_hi) + fx + fw + 3, out_bits=int(q_hi) + fo + 1, frac=fo)
    return _apply_sign(out, s)
