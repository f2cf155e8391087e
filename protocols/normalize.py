"""Secure normalisation of positive fixed-point values to [1/4, 1), and scaling by secret powers of two.

Reciprocals and square roots start from a value of known range: for X in [1, 2^K)
(the ring integer of a positive fixed-point x), find j* with 4^j* <= X < 4^(j*+1)
and z = X / 4^(j*+1) in [1/4, 1), both secret. The one-hot of j* comes from the bits
of X (bit decomposition) and a suffix OR of pairs of bits; any public table g(j*)
is then a local linear combination of its arithmetic shares, which undoes the
normalisation at the end by a multiplication with a secret power of two.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from cipherome.mpc.shares import Shared

from .arith import mul
from .bits import (
    b2a_rows,
    circuit_plan,
    fetch_and,
    lanes,
    pair_level,
    prefix_circuit,
    prefix_schedule,
    run_circuits,
)
from .trunc import truncate

__all__ = ["Normalized", "normalize", "onehot_table", "scale_pow2", "pow2_plan", "mul_exact", "thermometer_compare", "WORK_FRAC"]

U64 = np.uint64
#: fractional bits of the normalised working values (products at 2*28 = 56 bits keep |value| < 64)
WORK_FRAC = 28


class Normalized:
    """The result of ``normalize``: z (frac F) in [1/4, 1), and the thermometer H of j*.

    ``H`` is a (J, n) uint64 array of arithmetic shares of [X >= 4^j], j = 1..J
    (J = ceil(K/2) - 1); j* = sum_j H_j.
    """

    __slots__ = ("z", "H", "J", "shape")

    def __init__(self, z: Shared, H: np.ndarray, J: int, shape):
        self.z, self.H, self.J, self.shape = z, H, J, shape

    def table(self, g) -> np.ndarray:
        """Shares (n,) of the public table g[j*] (ints, len J + 1), by ``onehot_table``."""
        return onehot_table(self.z.ctx, self.H, g)


def onehot_table(ctx, H: np.ndarray, g) -> np.ndarray:
    """g[j*] = g_0 + sum_{j>=1} [j* >= j] (g_j - g_(j-1)), local (public integer coefficients)."""
    g = [int(v) for v in g]
    out = np.zeros(H.shape[1], dtype=U64)
    for j in range(1, len(g)):
        d = g[j] - g[j - 1]
        if d:
            out += H[j - 1] * U64(d % (1 << 64))
    if ctx.is_lead:
        out += U64(g[0] % (1 << 64))
    return out


def _norm_circuit(G, P, crows, R, lead, K, J, carry_sched, or_sched):
    """Borrows of c - r -> bits of X -> suffix OR of the bits (reversed prefix OR) -> [X >= 4^j]."""
    G, P = yield from prefix_circuit((G, P), carry_sched, "carry")
    xb = R[:K].copy()
    if lead:
        xb ^= crows[:K]
    xb[1:K] ^= G[: K - 1]
    V = np.ascontiguousarray(xb[::-1])
    V = yield from prefix_circuit(V, or_sched, "or")
    return V[[K - 1 - 2 * j for j in range(1, J + 1)]]


def normalize(x: Shared, bits: int, frac: int = WORK_FRAC, method: str = "auto",
              prefetch: Callable[[], None] | None = None) -> Normalized:
    """z = X / 4^(j*+1) in [1/4, 1) at ``frac`` bits and the thermometer of j*, for X = x's ring integer.

    Valid for 1 <= X < 2^bits (x in [2^-f, 2^(bits-f)) for x.frac = f), bits in 4..61.
    Steps (K = bits, J = ceil(K/2) - 1):
      1. dealer edaBit r (bits 0..K-1 XOR-shared, pair ANDs) and J daBits; open c = X + r (1 round).
      2. bits of X = c - r mod 2^K: borrows b_i by a Sklansky prefix circuit (first level
         local, ceil(log2(K-1)) - 1 AND rounds), x_i = c_i ^ r_i ^ b_i.
      3. H_j = [X >= 4^j] = OR_{i >= 2j} x_i: suffix OR, ceil(log2 K) AND rounds.
      4. B2A of the J bits H_j (1 round). j* = sum H_j.
      5. z = X * 4^(J - j*) / 2^(2J+2): one product with the secret power of four
         (an exact integer Beaver product, 1 round) and one truncation (1 round).
    Rounds: about 2 log2 K + 4 (K = 44: 15).
    ``method="compare"`` replaces steps 1-4 by J comparisons X - 4^j < 0 in one batched
    ``ltz`` (7 rounds; about J times ltz's traffic): fewer rounds, more traffic, so
    ``"auto"`` uses it for small inputs (n J <= 4096) and the bit decomposition otherwise.
    ``prefetch``: called once the thermometer's dealer requests have left (the caller's next
    material is then made while the thermometer's rounds run, not ahead of them).
    """
    ctx = x.ctx
    K = int(bits)
    if not 4 <= K <= 61:
        raise ValueError("normalize: bits must be in 4..61")
    J = (K + 1) // 2 - 1
    flat = x.data.ravel()
    n = flat.size
    if method == "compare" or (method == "auto" and n * J <= 4096):
        if prefetch is not None:
            prefetch()
        H = thermometer_compare(x, K, J)
    else:
        H = _thermometer_bits(x, K, J, prefetch)
    return _finish(x, H, J, K, frac)


def thermometer_compare(x: Shared, K: int, J: int) -> np.ndarray:
    """[X >= 4^j], j = 1..J, by one batched ltz of X - 4^j (K + 2 bits)."""
    from .compare import ltz

    ctx = x.ctx
    flat = x.data.ravel()
    n = flat.size
    th = np.array([4**j for j in range(1, J + 1)], dtype=np.uint64)
    d = flat[None, :] - (th[:, None] if ctx.is_lead else np.zeros((J, 1), np.uint64))
    lt = ltz(Shared(ctx, d, 0), min(64, K + 2)).data
    out = U64(0) - lt
    if ctx.is_lead:
        out += U64(1)
    return out


def _thermometer_bits(x: Shared, K: int, J: int, prefetch: Callable[[], None] | None = None) -> np.ndarray:
    """[X >= 4^j], j = 1..J, from the bit decomposition and a suffix OR (steps 1-4 above)."""
    ctx = x.ctx
    lz = lanes(ctx.n)
    flat = x.data.ravel()
    n = flat.size
    w = lz.words(n)
    q = K - 1
    rows = K + K % 2
    carry_sched = prefix_schedule(q, 2, tuple(range(q)), True)
    or_sched = prefix_schedule(K, 1, tuple(K - 1 - 2 * j for j in range(1, J + 1)), False)

    def circuit(G, P, crows, R, lead):
        return _norm_circuit(G, P, crows, R, lead, K, J, carry_sched, or_sched)

    def make():
        z = np.zeros((rows, 1), U64)
        return [circuit(z[:q], z[:q], z, z, False)]

    plan = circuit_plan(("normalize", K), make)
    eda = ctx.provider.fetch("edabits", n=n, s=lz.s, width=K, rows=rows, pairs=True, nda=J)
    mat = fetch_and(ctx, w, plan)
    if prefetch is not None:
        prefetch()
    (c,) = ctx.open_masked([flat + eda[0]], "normalize", bits=K)  # the circuit reads c mod 2^K
    crows = lz.slice(c, K, rows=rows)
    cbar = ~crows & lz.mask
    R = eda[1]
    G, P = pair_level(cbar[:q], R[:q], eda[2], ctx.is_lead, lz.mask, "carry")
    (Hb,) = run_circuits(ctx, [circuit(G, P, crows, R, ctx.is_lead)], mat, "normalize.and")
    return b2a_rows(ctx, Hb, eda[3], eda[4], n, "normalize.b2a")


def _finish(x: Shared, H: np.ndarray, J: int, K: int, frac: int) -> Normalized:
    ctx = x.ctx
    flat = x.data.ravel()
    v = onehot_table(ctx, H, [4 ** (J - j) for j in range(J + 1)])
    xv = mul_exact(Shared(ctx, flat, 0), Shared(ctx, v, 0))
    k2 = 2 * J + 2
    if k2 > frac:
        z = truncate(xv, k2 - frac, frac=frac)
    else:
        z = Shared(ctx, xv.data << U64(frac - k2), frac)
    return Normalized(z, H, J, x.shape)


def mul_exact(x: Shared, y: Shared) -> Shared:
    """The raw ring product of the two sharings (no truncation), frac = x.frac + y.frac."""
    ctx = x.ctx
    p = mul(Shared(ctx, x.data, 0), Shared(ctx, y.data, 0))
    return Shared(ctx, p.data, x.frac + y.frac)


def pow2_plan(e: list[int], a_bits: int, out_bits: int, max_stages: int = 6) -> list:
    """Plan A * 2^e[j] for a secret index j in stages of (multiply by 2^d[j], truncate by t).

    a_bits bounds |A| < 2^a_bits, out_bits bounds the result. Every stage keeps its
    product below 2^62 (truncation's range), and the shift left after a stage never
    exceeds the truncation left (rem_d <= rem_t), so earlier truncation errors are
    never amplified: the result is floor-exact up to one unit per stage.
    Returns [(d list, t), ...]; raises ValueError if 62-bit headroom is insufficient.
    """
    e_min = min(e)
    if e_min >= 0:
        if a_bits + max(e) > 62:
            raise ValueError("scale_pow2: A * 2^e may not fit in 62 bits")
        return [(list(e), 0)]
    total_t = -e_min
    d = [v - e_min for v in e]
    for stages in range(1, max_stages + 1):
        ts = [total_t // stages + (1 if i < total_t % stages else 0) for i in range(stages)]
        if max(ts) > 61:
            continue
        plan = [([0] * len(e), t) for t in ts]
        ok = True
        for j, dj in enumerate(d):
            rem_d, rem_t = dj, total_t
            cur = min(a_bits, out_bits + rem_t - rem_d)
            for s, t in enumerate(ts):
                x = max(0, rem_d - (rem_t - t))
                if x > rem_d or cur + x > 62:
                    ok = False
                    break
                plan[s][0][j] = x
                rem_d -= x
                rem_t -= t
                cur = min(cur + x - t, out_bits + rem_t - rem_d)
            if not ok or rem_d:
                ok = False
                break
        if ok:
            return plan
    raise ValueError(
        f"scale_pow2: no {max_stages}-stage plan keeps 62 bits (a_bits={a_bits}, out_bits={out_bits}, "
        f"shifts {min(e)}..{max(e)}); narrow the input range"
    )


def scale_pow2(A: Shared, nz: Normalized, e: list[int], a_bits: int, out_bits: int, frac: int) -> Shared:
    """A * 2^e[j*] (floor, up to one unit per stage) at scale ``frac``; 1-2 rounds per stage.

    Each stage multiplies by the secret power of two sum_j [j* = j] 2^d_j (local
    shares from the thermometer; one exact Beaver product) and truncates by t.
    """
    ctx = A.ctx
    cur = Shared(ctx, A.data.ravel(), 0)
    for d, t in pow2_plan(e, a_bits, out_bits):
        if any(d):
            s = nz.table([1 << v for v in d])
            cur = mul_exact(cur, Shared(ctx, s, 0))
        if t:
            cur = truncate(cur, t, frac=0)
    return Shared(ctx, cur.data.reshape(A.shape), frac)
