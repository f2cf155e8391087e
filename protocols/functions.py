"""Smooth functions of secret-shared fixed-point values: sigmoid, exp, log, piecewise polynomials.

A secret x is split into its segment index m = floor((x - lo) / 2^w) and the
offset phi in [0, 1) inside the segment, exactly, by one masked opening and a
short borrow circuit (``split``); the segment comes as an arithmetic one-hot, so
that a table of per-segment polynomial coefficients is selected locally. The
polynomial in phi is then evaluated with all powers of phi computed at once.
``window_split`` skips the borrow circuit (one round instead of about six): its
segment may be one too high, with phi in [-1, 0) then, so its polynomials are
fitted on windows of two segments (``fit_windows``).
exp uses the split of x log2(e) and a secret power of two; log uses the
normalisation of ``protocols.normalize`` and a windowed piecewise polynomial for ln z.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numpy.polynomial import chebyshev as _cheb
from numpy.polynomial import polynomial as _poly

from cipherome.mpc.correlated import recipe
from cipherome.mpc.pipeline import pipeline
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat

from .arith import mul, mul_public
from .beaver_multi import MultiProduct
from .bits import low_mask, run_bitjobs
from .compare import LtzJob, PrefixJob
from cipherome.mpc.kernels import ring_matmul

from ._kernels import lane_mask, lut_onehot, lut_rotate, slice_bits, unslice_bits
from .normalize import WORK_FRAC, normalize, scale_pow2
from .trunc import prefetch_pairs, truncate

__all__ = [
    "OneHot",
    "split",
    "window_split",
    "window_material",
    "fit_windows",
    "piecewise_poly",
    "fit_segments",
    "sigmoid",
    "exp",
    "log",
    "log_int",
    "SIGMOID_RANGE",
]

U64 = np.uint64
#: sigmoid is a piecewise polynomial on [-16, 16) and saturates outside (error there < 1.2e-7)
SIGMOID_RANGE = (-16.0, 16.0)


class OneHot:
    """Arithmetic shares (n, S) of n one-hot vectors; ``table(g)`` = sum_k O_k g_k (local)."""

    __slots__ = ("ctx", "O")

    def __init__(self, ctx, O: np.ndarray):
        self.ctx, self.O = ctx, O

    def tables(self, G) -> np.ndarray:
        """Shares (n, m) of G[m_e, :] for a public integer table G (S, m)."""
        G = np.asarray([[int(v) % (1 << 64) for v in row] for row in np.asarray(G, dtype=object)], dtype=U64)
        return ring_matmul(self.O, G)

    def table(self, g) -> np.ndarray:
        return self.tables(np.asarray(g, dtype=object)[:, None])[:, 0]


@recipe("lut_split", rotate=True)
def _lut_split(gen, n, s, p, beta):
    """r uniform; bits 0..p-1 of r XOR-shared (+ pair ANDs); a daBit d (XOR row and additive);
    r mod 2^p (additive); the one-hot O of rho = (r >> p) mod 2^beta and d * O (additive, n x 2^beta each).

    Cost (dealer -> lead): about 1.5 p + 1 lane rows + (2 + 2^(beta+1)) n ring elements.
    """
    mask = lane_mask(s)
    w = -(-n // (64 // s))
    rows = p + p % 2
    size = 1 << beta
    r = gen.random((n,))
    R = gen.xor_derived((rows, w), lambda: slice_bits(r & low_mask(p), p, s, rows=rows), mask)
    M = gen.xor_derived((rows // 2, w), lambda: R[1::2] & R[0::2], mask)
    D = gen.xor_random((1, w), mask)
    cache = {}

    def dbit():
        if "d" not in cache:
            cache["d"] = unslice_bits(D, n, s)[0]
        return cache["d"]

    def onehot():
        if "o" not in cache:
            rho = (r >> U64(p)) & U64(size - 1)
            cache["o"] = (rho[:, None] == np.arange(size, dtype=U64)[None, :]).astype(U64)
        return cache["o"]

    Dar = gen.derived((n,), dbit)
    rlo = gen.derived((n,), lambda: r & low_mask(p))
    O = gen.derived((n, size), onehot)
    DO = gen.derived((n, size), lambda: onehot() * dbit()[:, None])
    return r, R, M, D, Dar, rlo, O, DO


class SplitJob(PrefixJob):
    """Segment one-hot and in-segment offset of T = X + offset >= 0, X the ring integer of x.

    With c = T + r opened: T mod 2^p = (c mod 2^p) - (r mod 2^p) + 2^p b, b = [c mod 2^p < r mod 2^p]
    (a borrow circuit), and m = floor(T / 2^p) = (c >> p) - rho - b mod 2^beta. The dealer's
    one-hot O of rho, read at (c >> p) - k, is the one-hot of m + b; with the daBit
    opening o = b ^ d, [b] = o + (1 - 2o) [d] and [b V] = o V + (1 - 2o) [d V] are
    local, so onehot(m)_k = V_k + [b V_(k+1)] - [b V_k]. Valid for 0 <= T < 2^(p+beta).
    """

    def __init__(self, data: np.ndarray, p: int, beta: int, offset: int):
        self.p, self.beta, self.offset = int(p), int(beta), int(offset)
        self.wire_bits = min(64, self.p + self.beta)  # finish reads c mod 2^(p + beta)
        super().__init__(data, self.p, ("split", self.p, self.beta))

    def request(self, ctx):
        return ctx.provider.fetch("lut_split", n=self.n, s=self.lz.s, p=self.p, beta=self.beta)

    def keep(self, c, R):
        self.c = c  # finish reads c's low p + beta bits

    def b2a_material(self, ctx, k=1):
        return self.eda[3], self.eda[4]  # the daBit tied to the one-hot (d O), from the split's own material

    def finish(self, o, Dar):
        lead, c = self.ctx.is_lead, self.c
        o = self.lz.unslice(o, self.n)[0]
        size, p = 1 << self.beta, self.p
        sgn = U64(1) - U64(2) * o
        bsh = sgn * Dar
        if lead:
            bsh += o
        phi = (bsh << U64(p)) - self.eda[5]
        if lead:
            phi += c & low_mask(p)
        chi = ((c >> U64(p)) & U64(size - 1)).astype(np.int64)
        # V_k = O[(chi - k) mod S]; every party: [b V] = o [V] + (1 - 2o) [d V]
        onehot = lut_onehot(self.eda[6], self.eda[7], chi, o)
        return onehot, phi


def split(x: Shared, lo: float, seg_log2: int, beta: int):
    """(OneHot of m, phi) with m = floor((x - lo) / 2^w) in [0, 2^beta), phi = frac. part at frac f + w.

    Valid for lo <= x < lo + 2^(beta + w). Rounds: 1 + ceil(log2 p) - 1 + 1 (p = f + w).
    """
    ctx = x.ctx
    p = x.frac + int(seg_log2)
    if p < 1:
        raise ValueError("split: segments finer than the fixed-point resolution")
    off = -int(round(lo * 2**x.frac))
    ((O, phi),) = run_bitjobs(ctx, [SplitJob(x.data, p, beta, off)], "split")
    return OneHot(ctx, O), Shared(ctx, phi.reshape(x.shape), p)


@recipe("lut_window", rotate=True)
def _lut_window(gen, n, p, beta, powers=1):
    """r uniform, r_lo = r mod 2^p (additive), the one-hot O of rho = (r >> p) mod 2^beta (additive,
    n x 2^beta) and, for ``powers`` = d > 1, r_lo^2 .. r_lo^d (additive ring values).

    Cost (dealer -> one party): (2^beta + d) n ring elements.
    """
    size = 1 << beta
    r = gen.random((n,))
    rlo = gen.derived((n,), lambda: r & low_mask(p))
    O = gen.derived((n, size), lambda: (((r >> U64(p)) & U64(size - 1))[:, None]
                                        == np.arange(size, dtype=U64)[None, :]).astype(U64))
    pw = [gen.derived((n,), lambda i=i: (r & low_mask(p)) ** U64(i)) for i in range(2, int(powers) + 1)]
    return (r, rlo, O, *pw)


#: elements from which ``window_material`` asks in one part per compute party
_WINDOW_PARTS_FROM = 3 << 12


def window_material(ctx, n: int, p: int, beta: int, powers: int = 1, ahead: bool = False) -> list:
    """Request ``window_split``'s dealer material for n elements now (recipe ``lut_window``): a list of
    (start, stop, bundle). From 12,288 elements on, one request per compute party over consecutive ranges:
    the recipe rotates, so the one-hot (2^beta ring elements per element, e.g. 148 MB for the HWE test's
    576,240 logarithms at 10,000 x 100,000) travels over every party's link instead of one. ``ahead``: the
    split comes well after the requests that follow (``Provider.fetch_ahead``)."""
    n = int(n)
    parts = ctx.n if n >= _WINDOW_PARTS_FROM else 1
    cuts = [n * i // parts for i in range(parts + 1)]
    fetch = ctx.provider.fetch_ahead if ahead else ctx.provider.fetch
    return [(a, b, fetch("lut_window", n=b - a, p=int(p), beta=int(beta), powers=int(powers)))
            for a, b in zip(cuts[:-1], cuts[1:])]


def window_split(x: Shared, lo: float, seg_log2: int, beta: int, label: str, material=None, powers: int = 1):
    """(OneHot of m', [phi', .., phi'^powers]) with x = lo + 2^w (m' + phi') exactly, m' in [0, 2^beta),
    phi' in [-1, 1) at frac p = f + w (phi'^k at frac k p); ``label``: the ledger label of its one
    (masked) opening.

    With T = X - lo 2^f (X: x's ring integer) and the dealer's uniform r, its low part r_lo = r mod 2^p
    and the one-hot O of rho = (r >> p) mod 2^beta (recipe ``lut_window``), open c = T + r mod 2^(p + beta)
    (uniform to every party). For chi = c >> p and the borrow b = [c mod 2^p < r_lo]:
        (c mod 2^p) - r_lo = (T mod 2^p) - 2^p b   and   chi - rho = floor(T / 2^p) + b  (mod 2^beta),
    so m' = floor(T / 2^p) + b and phi' = (T mod 2^p) / 2^p - b satisfy T = 2^p (m' + phi') without b
    ever being computed: O read at chi - k (a local rotation) is the one-hot of m', and phi' is local.
    ``split`` computes b instead (a borrow circuit, about 5 rounds more); here segment m' is evaluated
    on phi' in [-1, 1), i.e. its polynomial must hold on [m' - 1, m' + 1) (``fit_windows``).
    Valid for 0 <= T < 2^p (2^beta - 1) (then m' < 2^beta). Rounds: 1.
    ``material``: ``window_material(ctx, x.size, p, beta, powers)``, requested earlier by the caller.

    The powers are exact, with no further round: phi' 2^p = c_lo - r_lo for the public c_lo = c mod 2^p, so
        (phi' 2^p)^k = sum_i binom(k, i) c_lo^(k-i) (-1)^i r_lo^i   (mod 2^64, a local sum),
    from the dealer's shares of r_lo^i (i >= 2: ``lut_window(powers=d)``); exact as ring integers
    while p d <= 62 (|phi'| <= 1).
    """
    ctx = x.ctx
    p = x.frac + int(seg_log2)
    if p < 1:
        raise ValueError("window_split: segments finer than the fixed-point resolution")
    size = 1 << int(beta)
    flat = x.data.ravel()
    d = int(powers)
    if d > 1 and p * d > 62:
        raise ValueError(f"window_split: phi'^{d} at {p} bits per power exceeds the ring")
    parts = material if material is not None else window_material(ctx, flat.size, p, beta, d)
    # r is a PRG draw at every party: the dealer's replies are awaited only after the opening
    t = flat + np.concatenate([m[0] for _, _, m in parts])
    if ctx.is_lead:
        t += U64(-int(round(lo * 2**x.frac)) % (1 << 64))
    (c,) = ctx.open_masked([t], label, bits=p + int(beta))
    chi = ((c >> U64(p)) & U64(size - 1)).astype(np.int64)
    V = np.empty((flat.size, size), dtype=U64)
    for a, b, m in parts:
        lut_rotate(m[2], chi[a:b], out=V[a:b])
    onehot = OneHot(ctx, V)
    clo = c & low_mask(p)
    cpow = [np.ones(flat.size, dtype=U64)]  # c_lo^j
    neg = [None]  # shares of (-r_lo)^i; the bundle's item 1 holds r_lo, item 1 + i r_lo^i for i >= 2
    for i in range(1, d + 1):
        cpow.append(cpow[-1] * clo)
        q = np.concatenate([m[1 if i == 1 else 1 + i] for _, _, m in parts])
        neg.append(U64(0) - q if i % 2 else q)
    out = []
    for k in range(1, d + 1):
        acc = cpow[k].copy() if ctx.is_lead else np.zeros(flat.size, dtype=U64)
        for i in range(1, k + 1):
            acc += U64(math.comb(k, i)) * cpow[k - i] * neg[i]
        out.append(Shared(ctx, acc.reshape(x.shape), k * p))
    return onehot, out


def _power_levels(d: int) -> list[tuple[int, list[int]]]:
    """The doubling schedule of phi^2..phi^d: levels (h, ks), phi^k = phi^h phi^(k - h) for k in ks."""
    levels, have = [], 1
    while have < d:
        ks = list(range(have + 1, min(2 * have, d) + 1))
        levels.append((have, ks))
        have = ks[-1]
    return levels


def _power_plan(ctx, n: int, d: int, with_sel: bool, frac: int):
    """The dealer material of ``_power_products`` for n elements and degree d, requested now: its
    ``MultiProduct`` and the truncation pair of every level (``trunc.prefetch_pairs``)."""
    levels = _power_levels(d)
    pairs = [(h - 1, k - h - 1) for h, ks in levels for k in ks]
    if with_sel:
        pairs += [(d + k - 1, k - 1) for k in range(1, d + 1)]
    mp = MultiProduct(ctx, (n,), 2 * d if with_sel else d, pairs)
    return mp, pairs, prefetch_pairs(ctx, [((len(ks) * n,), frac) for _, ks in levels])


def _power_products(phi: Shared, d: int, sel: list[Shared] | None = None, plan=None):
    """(phi^1..phi^d at phi's scale, raw sum_k c_k phi^k or None): every vector opened once.

    ``sel``: c_1..c_d (one per power, e.g. one-hot selected coefficients). One ``MultiProduct``
    over the vectors phi^1..phi^d and c_1..c_d: the dealer gives a mask per vector and the
    mask products of the pairs used, so a vector that enters several products (phi in
    phi^2, phi^3, phi^5 ...) is opened once, not once per product (``arith.mul`` opens both
    operands of every product). Rounds: open phi (and the c_k, known from the start), then
    per level of the doubling schedule one truncation and one opening of the new powers;
    the same rounds as multiplying level by level. Traffic per element and peer:
    (d - 1) truncations + one opening per vector that is an operand (degree 5 with
    coefficients: 15 ring elements instead of 23).
    ``plan``: ``_power_plan(ctx, phi.size, d, sel is not None, phi.frac)``, requested earlier by the caller.
    """
    ctx = phi.ctx
    n = phi.size
    levels = _power_levels(d)
    mp, pairs, tpairs = plan if plan is not None else _power_plan(ctx, n, d, sel is not None, phi.frac)
    needed = {i for pr in pairs for i in pr}
    flat = phi.reshape(n)
    pw = {1: flat}
    first = {0: flat} if 0 in needed else {}
    if sel is not None:
        first.update({d + k - 1: sel[k - 1].reshape(n) for k in range(1, d + 1)})
    if first:
        mp.open(first)
    for (h, ks), tp in zip(levels, tpairs):
        t = truncate(concat([mp.product(h - 1, k - h - 1) for k in ks]), phi.frac, pair=tp)
        for i, k in enumerate(ks):
            pw[k] = t[i * n : (i + 1) * n]
        new = {k - 1: pw[k] for k in ks if k - 1 in needed}
        if new:
            mp.open(new)
    acc = None
    if sel is not None:
        acc = mp.product(d, 0)
        for k in range(2, d + 1):
            acc = acc + mp.product(d + k - 1, k - 1)
    return [pw[k].reshape(phi.shape) for k in range(1, d + 1)], acc


def _to_frac(v: Shared, frac: int, pair=None) -> Shared:
    """v at scale ``frac``: shifted up locally, or truncated (with a prefetched ``pair``, if given)."""
    if v.frac <= frac:
        return v.with_frac(frac)
    return truncate(v, v.frac - frac, pair=pair)


def _cheb_fit(g, degree: int) -> np.ndarray:
    """Power-basis coefficients (degree + 1, lowest first) in t of the least-squares fit of g(t) at
    Chebyshev nodes of [-1, 1]."""
    t = np.cos(np.pi * (np.arange(4 * degree + 8) + 0.5) / (4 * degree + 8))
    out = np.zeros(degree + 1)
    pt = _cheb.cheb2poly(_cheb.chebfit(t, g(t), degree))
    out[: len(pt)] = pt
    return out


def fit_windows(f, lo: float, seg_log2: int, count: int, degree: int) -> np.ndarray:
    """Fits of f for ``window_split``: segment k's polynomial in phi' in [-1, 1) approximates
    f(lo + 2^w (k + phi')) on the window [lo + (k-1) 2^w, lo + (k+1) 2^w); (count, degree + 1), lowest first."""
    width = 2.0**seg_log2
    return np.stack([_cheb_fit(lambda t, k=k: f(lo + width * (k + t)), degree) for k in range(count)])


def fit_segments(f, lo: float, seg_log2: int, count: int, degree: int) -> np.ndarray:
    """Chebyshev-node least-squares fits of f on each segment [lo + k 2^w, lo + (k+1) 2^w), as
    polynomials in phi in [0, 1): returns coefficients (count, degree + 1), lowest first."""
    width = 2.0**seg_log2
    out = np.zeros((count, degree + 1))
    for k in range(count):
        a = lo + k * width
        pt = _cheb_fit(lambda t: f(a + width * (t + 1) / 2), degree)  # polynomial in t = 2 phi - 1
        acc = np.zeros(degree + 1)
        tp = np.array([1.0])
        for ck in pt:
            acc[: len(tp)] += ck * tp
            tp = _poly.polymul(tp, [-1.0, 2.0])
        out[k] = acc
    return out


def _eval_selected(onehot: OneHot, coefs: np.ndarray, phi: Shared, frac: int, F: int) -> Shared:
    """sum_k coef_k[m] phi^k with coefficients selected by the one-hot (local), at scale ``frac``.

    Coefficients are encoded with F bits; the powers and the d exact products coef_k phi^k
    come from one ``MultiProduct`` (``_power_products``: each of phi^k and coef_k opened
    once), their sum is one truncation (2F -> frac).
    """
    ctx = phi.ctx
    d = coefs.shape[1] - 1
    enc = np.rint(coefs * 2.0**F).astype(np.int64)
    if np.any(np.abs(coefs).max() * 2.0 ** (2 * F) >= 2.0**61 / (d + 1)):
        raise ValueError("piecewise polynomial coefficients too large for the working scale")
    cs = onehot.tables(enc.astype(object))  # (n, d + 1)
    c = [np.ascontiguousarray(cs[:, k]) for k in range(d + 1)]
    # every dealer request of this evaluation leaves now, in the order of use (the dealer answers in order)
    first = ctx.provider.trunc_pair(phi.shape, phi.frac - F) if phi.frac > F else None
    plan = _power_plan(ctx, phi.size, d, True, F) if d else None
    last = ctx.provider.trunc_pair(c[0].shape, 2 * F - frac) if 2 * F > frac else None
    phi = _to_frac(phi, F, pair=first)
    acc = Shared(ctx, c[0] << U64(F), 2 * F)
    if d:
        _, prods = _power_products(phi, d, [Shared(ctx, ck, F) for ck in c[1:]], plan=plan)
        acc = acc + prods
    return truncate(acc, 2 * F - frac, pair=last) if last is not None else acc


def piecewise_poly(x: Shared, lo: float, seg_log2: int, coefs: np.ndarray, *, below: float | None = None,
                   above: float | None = None, frac: int | None = None, bits: int = 64,
                   F: int = WORK_FRAC) -> Shared:
    """A piecewise polynomial of x: on segment k = [lo + k 2^w, lo + (k+1) 2^w) (k < 2^beta),
    sum_j coefs[k, j] phi^j with phi = (x - segment start) / 2^w in [0, 1).

    Below lo the result is ``below`` and at or above hi = lo + 2^(beta+w) it is ``above``
    (both public; None means the input is promised in range and no comparison is made).
    Steps: ``split`` (segment one-hot and phi) and, in the same rounds, ltz(x - hi) and
    ltz(x - lo) (``bits``: range of those differences); powers of phi (ceil(log2 d) product
    rounds); the selected coefficients times the powers (1 round) and one truncation;
    then result * [lo <= x < hi] + above [x >= hi] + below [x < lo] (1 round).
    Rounds: 7 + 2 ceil(log2 d) + 2 + 1 (sigmoid: 16). Error: the fit's error plus about
    (d + 2) units of 2^-F and one unit of 2^-frac.
    """
    ctx = x.ctx
    fo = x.frac if frac is None else int(frac)
    coefs = np.asarray(coefs, dtype=np.float64)
    S = coefs.shape[0]
    beta = int(S - 1).bit_length()
    if 1 << beta != S:
        raise ValueError("piecewise_poly: the number of segments must be a power of two")
    p = x.frac + int(seg_log2)
    hi = lo + S * 2.0**seg_log2
    off = -int(round(lo * 2**x.frac))
    jobs = [SplitJob(x.data, p, beta, off)]
    clamp = below is not None or above is not None
    if clamp:
        jobs += [LtzJob((x - hi).data, bits), LtzJob((x - lo).data, bits)]
    res = run_bitjobs(ctx, jobs, "piecewise")
    O, phi = res[0]
    onehot = OneHot(ctx, O)
    val = _eval_selected(onehot, coefs, Shared(ctx, phi, p), fo, F)
    if not clamp:
        return Shared(ctx, val.data.reshape(x.shape), fo)
    return _saturate(val, res[1], res[2], above, below, fo).reshape(x.shape)


def _saturate(val: Shared, lt_hi: np.ndarray, lt_lo: np.ndarray, above: float | None, below: float | None,
              frac: int) -> Shared:
    """val [lo <= x < hi] + above [x >= hi] + below [x < lo] at scale ``frac`` (1 product round), from the
    shares of [x < hi] and [x < lo] (0/1, frac 0); None adds nothing on that side."""
    ctx = val.ctx
    out = mul(val, Shared(ctx, lt_hi - lt_lo, 0))
    extra = np.zeros(out.data.shape, dtype=U64)
    if above is not None:
        ge_hi = (U64(0) - lt_hi) + (U64(1) if ctx.is_lead else U64(0))
        extra += ge_hi * encode(above, frac)
    if below is not None:
        extra += lt_lo * encode(below, frac)
    return Shared(ctx, out.data + extra, frac)


#: sigmoid's polynomial range [-_SIG_EDGE, _SIG_EDGE): 63 usable half-unit segments (``window_split``)
_SIG_EDGE = 15.75


@functools.lru_cache(maxsize=None)
def _sigmoid_windows() -> np.ndarray:
    """Degree-6 polynomials of the logistic function on the windows of the 64 half-unit segments
    from -15.75 (``fit_windows``: segment k on [-15.75 + (k - 1) / 2, -15.75 + (k + 1) / 2);
    fit error 2.0e-8; fitted once)."""
    return fit_windows(lambda t: 1.0 / (1.0 + np.exp(-t)), -_SIG_EDGE, -1, 64, 6)


def sigmoid(x: Shared, *, frac: int | None = None, bits: int = 64) -> Shared:
    """The logistic function 1 / (1 + e^-x), elementwise, for any x.

    Two tasks whose openings share rounds (``mpc.pipeline``):
      (a) ``window_split`` of x on the 64 half-unit segments from -15.75 (1 round: x = -15.75 +
          (m' + phi') / 2 with phi' in [-1, 1)), then segment m''s degree-6 polynomial in phi'
          (``_eval_selected``: powers, the selected coefficients' products, one truncation);
      (b) ltz(x - 15.75) and ltz(x + 15.75) (``run_bitjobs``), which take as many rounds as (a);
    then result * [-15.75 <= x < 15.75] + [x >= 15.75] (1 round). Below -15.75 the result is 0,
    from 15.75 on 1 (the split's top segment, whose index can wrap around, is never used inside).
    Error: absolute <= 1e-7 inside (fit 2.0e-8 and the arithmetic at 28 working bits), plus up to one
    unit of 2^-frac from the output's truncation (measured on a grid of 1/256: 7.8e-8 at frac 24,
    9.4e-7 at frac 20); outside, < 1.5e-7 (the saturation: s(-15.75) = 1.44e-7).
    Rounds: 10, where ``split``'s borrow circuit before the polynomial took 16. Traffic per element
    and peer: about 0.2 kB; dealer about 0.9 kB (the one-hot of 64).
    """
    ctx = x.ctx
    fo = x.frac if frac is None else int(frac)
    flat = x.reshape(-1)

    def poly():
        onehot, (phi,) = window_split(flat, -_SIG_EDGE, -1, 6, "sigmoid")
        return _eval_selected(onehot, _sigmoid_windows(), phi, fo, WORK_FRAC)

    def ranges():
        return run_bitjobs(ctx, [LtzJob((flat - _SIG_EDGE).data, bits), LtzJob((flat + _SIG_EDGE).data, bits)],
                           "sigmoid")

    val, (lt_hi, lt_lo) = pipeline(ctx, [poly, ranges], window=2)
    return _saturate(val, lt_hi, lt_lo, 1.0, None, fo).reshape(x.shape)


@functools.lru_cache(maxsize=None)
def _exp2_coefs() -> np.ndarray:
    """Degree-6 polynomial of 2^t on [0, 1) (fitted once)."""
    return fit_segments(lambda t: 2.0**t, 0.0, 0, 1, 6)[0]


def exp(x: Shared, *, lo: float = -16.0, hi: float = 16.0, frac: int | None = None, bits: int = 64) -> Shared:
    """e^x elementwise: exact range reduction x log2(e) = m + phi, 2^phi by a degree-6 polynomial,
    times the secret power of two 2^m. Below ``lo`` the result is 0, from ``hi`` on it is e^hi.

    Steps: t = x log2 e (1 truncation); ``split`` of t into the one-hot of m and phi, with
    ltz(x - hi), ltz(x - lo) in the same rounds (7); powers of phi (6) and the public
    polynomial (1); 2^phi 2^m by ``scale_pow2`` (2-4); the range fix (1).
    Error: relative ~2e-8 (polynomial, 28 working bits) plus one unit of 2^-frac and the
    rounding of x log2 e (relative |x| 2^-f ln 2 of the result: inherent to x's scale).
    Requires e^hi 2^frac < 2^60 and |x| < 2^11 (larger |x| saturate correctly only if f <= 20).
    """
    coefs = _exp2_coefs()
    ctx = x.ctx
    f = x.frac
    fo = f if frac is None else int(frac)
    F = WORK_FRAC
    l2e = 1.0 / math.log(2.0)
    t = mul_public(x, l2e, frac=30)  # log2(e) to 2^-31: |x| < 2^11 keeps the product in range
    t_lo = math.floor(lo * l2e)
    span = math.ceil(hi * l2e) - t_lo
    beta = max(1, int(span - 1).bit_length())
    off = -t_lo << f
    jobs = [SplitJob(t.data, f, beta, off), LtzJob((x - hi).data, bits), LtzJob((x - lo).data, bits)]
    (O, phi), lt_hi, lt_lo = run_bitjobs(ctx, jobs, "exp")
    phi = _to_frac(Shared(ctx, phi, f), F)
    pw, _ = _power_products(phi, len(coefs) - 1)
    acc = Shared(ctx, np.zeros(phi.size, U64), 2 * F) + float(coefs[0])
    for k, pk in enumerate(pw, start=1):
        acc = acc + Shared(ctx, pk.data * encode(coefs[k], F), 2 * F)
    p2 = truncate(acc, F)  # 2^phi in [1, 2) at F bits
    onehot = OneHot(ctx, O)
    e = [min(k, span - 1) + t_lo + fo - F for k in range(1 << beta)]  # segments >= span never occur
    out_bits = int(math.ceil(hi * l2e)) + fo + 2
    val = scale_pow2(p2, onehot, e, a_bits=F + 2, out_bits=out_bits, frac=fo)
    return _saturate(val, lt_hi, lt_lo, math.exp(hi), None, fo).reshape(x.shape)


def _eval_exact_powers(onehot: OneHot, coefs: np.ndarray, pw: list[Shared], frac: int) -> Shared:
    """sum_k coef_k[m'] phi'^k at scale ``frac`` from exact powers phi'^k (``window_split(powers=d)``, frac k p).

    Each term needs coef_k to about 2^-28 and phi'^k to 2^-28 / |coef_k|; the terms are summed at one scale
    S = 28 + s before a single truncation, so the powers above s bits are first truncated to s bits
    (one truncation, every row shifted up to the same width first), s = 2p: the powers past the
    second. Coefficients are encoded at S - (scale of their power): 28 bits or more.
    Rounds: the powers' truncation, the products (1), the final truncation.
    """
    ctx = onehot.ctx
    d = coefs.shape[1] - 1
    p = pw[0].frac
    s = 2 * p
    S = WORK_FRAC + s
    top = d * p
    if d > 2:  # powers 3..d: shift each up to d p bits, then one truncation by d p - s
        high = Shared(ctx, np.stack([q.data << U64(top - q.frac) for q in pw[2:]]), top)
        high = truncate(high, top - s)
        pw = pw[:2] + [high[i] for i in range(d - 2)]
    if np.abs(coefs).max() * 2.0**S * (d + 1) >= 2.0**61:  # |term k| <= |coef_k| 2^S as |phi'| <= 1
        raise ValueError("exact-power polynomial: coefficients too large for the working scale")
    scales = [q.frac for q in pw]
    enc = np.zeros(coefs.shape, dtype=object)
    enc[:, 0] = [int(round(v * 2.0**S)) for v in coefs[:, 0]]
    for k in range(1, d + 1):
        enc[:, k] = [int(round(v * 2.0 ** (S - scales[k - 1]))) for v in coefs[:, k]]
    cs = onehot.tables(enc)  # (n, d + 1)
    cvec = Shared(ctx, np.ascontiguousarray(cs[:, 1:].T), 0)
    pvec = Shared(ctx, np.stack([q.data.ravel() for q in pw]), 0)
    prods = mul(cvec, pvec)  # raw ring products (frac 0 x frac 0), every term at scale S
    acc = Shared(ctx, cs[:, 0] + prods.data.sum(axis=0), S)
    return truncate(acc, S - frac)


#: ln z's windows: 32 segments of 1/32 from 7/32 (z in [1/4, 1), less a unit after truncation, gives
#: 0 < T < 25/32, so m' <= 25 < 31 as ``window_split`` needs)
_LN_LO, _LN_SEG_LOG2, _LN_BETA = 0.21875, -5, 5


@functools.lru_cache(maxsize=None)
def _ln_coefs() -> np.ndarray:
    """Degree-5 polynomials of ln z on the windows [7/32 + (k-1)/32, 7/32 + (k+1)/32), k < 32 (fitted once):
    each window is 1/16 wide, as the segments of the split with a borrow were, so the fit's error is the
    same (4.9e-8 at the lowest window, [3/16, 1/4))."""
    return fit_windows(np.log, _LN_LO, _LN_SEG_LOG2, 1 << _LN_BETA, 5)


def log(x: Shared, *, hi: int = 24, frac: int | None = None) -> Shared:
    """Natural logarithm for 2^-f <= x < 2^hi (f = x.frac).

    Steps: normalise x = z 4^(j*+1) 2^-f, z in [1/4, 1) (``normalize``, 15 rounds);
    ln z by degree-5 polynomials on windows of two 1/32-segments (``window_split`` of z:
    1 round; powers: 6; products and truncation: 2); plus (2 j* + 2 - f) ln 2 from
    the thermometer (local). Error: absolute ~5e-8 plus half a unit of 2^-frac.
    Rounds: 24.
    """
    fo = x.frac if frac is None else int(frac)
    nz, onehot, (phi,) = _ln_split(x, x.frac + int(hi), WORK_FRAC, 1)
    return _ln_of(x, nz, _eval_selected(onehot, _ln_coefs(), phi, fo, WORK_FRAC), fo)


def _ln_split(x: Shared, bits: int, zfrac: int, powers: int):
    """(Normalized, OneHot, powers of phi'): ``normalize`` x to z at ``zfrac`` bits, then the windowed split of
    z for ``_ln_coefs``; its one-hot (32 ring elements per value, the log's largest material) is requested
    once the thermometer's material is, so it is made during the thermometer's rounds."""
    ctx = x.ctx
    pending = []
    nz = normalize(x, bits, zfrac, prefetch=lambda: pending.append(
        window_material(ctx, x.size, zfrac + _LN_SEG_LOG2, _LN_BETA, powers, ahead=True)))
    onehot, pw = window_split(nz.z, _LN_LO, _LN_SEG_LOG2, _LN_BETA, "log", material=pending[0], powers=powers)
    return nz, onehot, pw


def _ln_of(x: Shared, nz, val: Shared, fo: int) -> Shared:
    """ln x = ln z + (2 j* + 2 - f) ln 2, the second term from the thermometer (local), at scale ``fo``."""
    g = [int(round((2 * j + 2 - x.frac) * math.log(2.0) * 2**fo)) for j in range(nz.J + 1)]
    return Shared(x.ctx, val.data + nz.table(g), fo).reshape(x.shape)


_INT_Z_FRAC = 16


def log_int(x: Shared, bits: int, *, frac: int | None = None) -> Shared:
    """ln X for integers 1 <= X < 2^bits (x.frac = 0), e.g. genotype counts.

    Up to 16 bits the integer's normalised z = X 4^(J - j*) / 4^(J+1) has 2J + 2 <= 16 fractional bits,
    exactly (``normalize`` with no truncation), so the windowed split's offset phi' has p = 16 - 5 = 11
    bits (z taken at 16 bits) and its powers up to 5 are exact ring integers, local after the split's
    opening (``window_split(powers=5)``) instead of 3 levels of products and truncations:
    normalise (10 rounds at 15 bits), split (1), the powers' truncation, the products (1) and the
    final truncation (1 round each, 2 in a ``Context.lean()`` stage). The same degree-5 windows as
    ``log`` (error ~5e-8) plus about 1e-8 from the coefficients' and powers' encoding and one unit
    of 2^-frac (measured at most 1.02 units of 2^-20 over 1..2^14). Beyond 16 bits the fifth power
    would not fit the ring: ``log``.
    """
    if x.frac != 0:
        raise ValueError("log_int: integers (frac 0); use log")
    fo = x.ctx.frac if frac is None else int(frac)
    if int(bits) > 16:
        return log(x, hi=int(bits), frac=fo)
    # z at 16 fractional bits: 4^(J+1) <= 2^16 for bits <= 16, so z = X 4^(J - j*) 2^(16 - 2J - 2) is exact
    nz, onehot, pw = _ln_split(x, max(4, int(bits)), _INT_Z_FRAC, 5)
    return _ln_of(x, nz, _eval_exact_powers(onehot, _ln_coefs(), pw, fo), fo)
