"""Comparison, equality, selection, minimum and maximum of secret-shared values.

The sign of a shared ring value x is the borrow chain of (x + r) - r for a dealer
mask r whose bits are XOR-shared: the parties open c = x + r (uniform) and evaluate
[c mod 2^m < r mod 2^m] with a log-depth boolean circuit on bit-sliced shares
(``protocols.bits``), so a whole vector costs the same constant number of rounds.
Every result bit is returned as an arithmetic share in {0, 1} with frac 0, ready
for ``select`` or for sums (counts).

Ranges. ``bits=k`` promises x in [-2^(k-1), 2^(k-1)) as a ring integer (i.e.
|value| < 2^(k-1-frac) for fixed-point values); the default k = 64 is the whole
ring, exact for every x. A smaller k is cheaper (fewer bits in the circuit:
ceil(log2(k-1)) + 1 rounds instead of 7) and still exact inside its range; outside
it the result is arbitrary. Comparing two values compares their difference, so
x - y must be in range.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.shares import Shared, concat

from .arith import mul
from .bits import BitJob, b2a_bits, lanes, pair_level, prefix_circuit, prefix_schedule, run_bitjobs

__all__ = [
    "ltz",
    "lt",
    "le",
    "gt",
    "ge",
    "eqz",
    "eq",
    "sign",
    "select",
    "minimum",
    "maximum",
    "min",
    "max",
    "threshold",
    "abs",
    "argmax",
    "argmin",
    "PrefixJob",
    "LtzJob",
    "EqzJob",
    "RING_BITS",
]

U64 = np.uint64
RING_BITS = 64


def _check_bits(bits: int) -> int:
    bits = int(bits)
    if not 2 <= bits <= 64:
        raise ValueError("bits must be in 2..64")
    return bits


class PrefixJob(BitJob):
    """A ``BitJob`` whose circuit is one prefix circuit over the low ``q`` bits of c = x + r and of the mask r.

    ``op`` "carry": the borrow of the q-bit subtraction c - r (generate ~c & r, propagate
    ~(c ^ r), combined by a carry tree), i.e. [c mod 2^q < r mod 2^q]; "and": all q bits of c
    equal r's. Level 1 (bit pairs) is local with the dealer's pair products, each later level
    one AND round. Subclasses implement ``request(ctx)``, the dealer material: [0] the ring
    mask r, [1] r's XOR-shared bits (``rows`` rows), [2] the pair products, then whatever their
    ``finish`` reads; ``offset`` is a public constant the lead adds to the opening.

    Memory: c = x + r is computed in r's buffer and x is dropped; c, r's bits and the pair
    products are dropped at the circuit's first level (``keep`` saves what ``finish`` needs),
    which then holds only its live rows (``prefix_circuit(outputs=...)``).
    """

    op = "carry"
    offset = 0
    #: the circuit reads c = x + r only modulo 2^wire_bits, so only that much is opened
    wire_bits = 64

    def __init__(self, data: np.ndarray, q: int, key: tuple, rows: int | None = None):
        self.x = data.ravel()
        self.n = self.x.size
        self.q = q
        self.rows = q + q % 2 if rows is None else rows
        self.key = key
        self.sched = prefix_schedule(q, 2, (q - 1,), self.op == "carry")

    def request(self, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def fetch(self, ctx):
        self.ctx, self.lz = ctx, lanes(ctx.n)
        self.eda = self.request(ctx)

    def opening(self):
        m = self.eda[0]  # the mask r's own buffer becomes c = x + r
        self.eda.release(0)
        m += self.x
        self.x = None
        if self.ctx.is_lead and self.offset:
            m += U64(self.offset % (1 << 64))
        return m

    def keep(self, c: np.ndarray, R: np.ndarray) -> None:
        """Save what ``finish`` reads of the opened c and of r's bit rows R before they are dropped."""

    def result(self, top: np.ndarray) -> np.ndarray:
        """The XOR-shared rows to convert, from the circuit's top row."""
        return top

    def circuit(self, c, dummy=False):
        q = self.q
        if dummy:
            z = np.zeros((q, 1), U64)
            return (yield from prefix_circuit((z, z) if self.op == "carry" else z, self.sched, self.op, (q - 1,)))
        lz = self.lz
        cbar = lz.slice(c, q)
        np.invert(cbar, out=cbar)
        cbar &= lz.mask
        R, M = self.eda[1], self.eda[2]
        self.keep(c, R)
        self.eda.release(1, 2)
        del c
        level = prefix_circuit(pair_level(cbar, R[:q], M, self.ctx.is_lead, lz.mask, self.op), self.sched, self.op,
                               (q - 1,))
        del cbar, R, M
        return self.result((yield from level))

    def finish(self, o, Dar):
        """[b] for the opened o = b ^ d: t + (1 - 2t) [d] with t = o."""
        return b2a_bits(self.lz.unslice(o, self.n)[0], Dar[0], self.ctx.is_lead)


class LtzJob(PrefixJob):
    """[x < 0] for a flat vector, as a ``BitJob`` (see ``ltz`` for the protocol)."""

    def __init__(self, data: np.ndarray, bits: int):
        self.bits = self.wire_bits = bits
        self.offset = 1 << (bits - 1)
        super().__init__(data, bits - 1, ("ltz", bits), rows=bits)

    def request(self, ctx):
        return ctx.provider.fetch("edabits", n=self.n, s=self.lz.s, width=self.bits, rows=self.rows, pairs=True)

    def keep(self, c, R):
        self.ctop = self.lz.slice(c, 1, lo=self.q)  # bit k-1 of c (a public lane row)
        self.rtop = R[self.q : self.q + 1].copy()  # bit k-1 of r (XOR-shared)

    def result(self, top):
        return top ^ self.rtop  # B ^ r_(k-1)

    def finish(self, o, Dar):
        t = self.lz.unslice(o ^ self.ctop ^ self.lz.mask, self.n)[0]  # 1 ^ c_(k-1) ^ o
        return b2a_bits(t, Dar[0], self.ctx.is_lead)


class EqzJob(PrefixJob):
    """[x == 0] for a flat vector, as a ``BitJob`` (see ``eqz``)."""

    op = "and"

    def __init__(self, data: np.ndarray, bits: int):
        self.wire_bits = bits
        super().__init__(data, bits, ("eqz", bits))

    def request(self, ctx):
        return ctx.provider.fetch("edabits", n=self.n, s=self.lz.s, width=self.q, rows=self.rows, pairs=True)


def ltz(x: Shared, bits: int = RING_BITS) -> Shared:
    """[x < 0] as an arithmetic share of 0/1 (frac 0), elementwise; exact for x in [-2^(bits-1), 2^(bits-1)).

    Steps (k = bits, m = k - 1; dealer edaBit r with bits 0..k-1 XOR-shared; a daBit d
    fetched at step 3):
      1. open c = x + 2^(k-1) + r mod 2^k (masked, uniform; ceil(k/8) bytes) -- 1 round. Then y = x + 2^(k-1)
         = c - r mod 2^k lies in [0, 2^k), and x < 0 iff its bit k-1 is 0:
         y_(k-1) = c_(k-1) ^ r_(k-1) ^ B with B = [c mod 2^m < r mod 2^m].
      2. B is the borrow out of the m-bit subtraction c - r: per bit generate
         g = ~c & r and propagate p = ~(c ^ r), combined by a carry tree. Level 1
         (bit pairs) is local thanks to the dealer's pair products; the remaining
         ceil(log2 m) - 1 levels are one AND round each (bit-sliced, all elements at once).
      3. B2A: open o = B ^ r_(k-1) ^ d (1 round; r_(k-1) is XORed in locally); [x < 0] = t ^ d
         with the public t = 1 ^ c_(k-1) ^ o, i.e. t + (1 - 2t) [d].
    Rounds: ceil(log2(k-1)) + 1 (k = 64: 7). Traffic per element to each other party:
    ceil(k/8) bytes (c mod 2^k) + 89 opened lane bits for k = 64 (packed 64 to a word:
    ~11 bytes), i.e. each party sends about 19 (n-1) bytes per element at k = 64. Dealer to lead: 8 bytes plus
    about 150 lane bits per element (k = 64).
    """
    bits = _check_bits(bits)
    (out,) = run_bitjobs(x.ctx, [LtzJob(x.data, bits)], "ltz")
    return Shared(x.ctx, out.reshape(x.shape), 0)


def eqz(x: Shared, bits: int = RING_BITS) -> Shared:
    """[x == 0] as an arithmetic 0/1 share (frac 0); exact for x in [-2^(bits-1), 2^(bits-1)).

    Steps (k = bits; dealer edaBit r with bits 0..k-1 XOR-shared, daBit d):
      1. open c = x + r (1 round); x == 0 iff c = r mod 2^k (x mod 2^k = 0 means x = 0 in range).
      2. e_i = ~(c_i ^ r_i) (local); AND of the k bits by a tree: level 1 local with
         the dealer's pair products, then ceil(log2 k) - 1 AND rounds.
      3. B2A with the daBit (1 round).
    Rounds: ceil(log2 k) + 1 (k = 64: 7). Traffic per element and peer: 8 bytes + 31
    gates' operands (k = 64: 62 lane bits, ~2 bytes).
    """
    bits = _check_bits(bits)
    (out,) = run_bitjobs(x.ctx, [EqzJob(x.data, bits)], "eqz")
    return Shared(x.ctx, out.reshape(x.shape), 0)


def _diff(x, y) -> Shared:
    if isinstance(x, Shared):
        return x - y
    return (-y) + x


def lt(x, y, bits: int = RING_BITS) -> Shared:
    """[x < y] (0/1, frac 0) for shared x and shared or public y (or public x, shared y).

    Computes ltz(x - y): exact whenever x - y (as a ring integer at the common scale)
    is in [-2^(bits-1), 2^(bits-1)). Same rounds and traffic as ``ltz``.
    """
    return ltz(_diff(x, y), bits)


def gt(x, y, bits: int = RING_BITS) -> Shared:
    """[x > y] = [y - x < 0]."""
    return ltz(_diff(y, x), bits)


def le(x, y, bits: int = RING_BITS) -> Shared:
    """[x <= y] = 1 - [y < x]."""
    return 1 - gt(x, y, bits)


def ge(x, y, bits: int = RING_BITS) -> Shared:
    """[x >= y] = 1 - [x < y]."""
    return 1 - lt(x, y, bits)


def eq(x, y, bits: int = RING_BITS) -> Shared:
    """[x == y] = eqz(x - y)."""
    return eqz(_diff(x, y), bits)


def threshold(x: Shared, t, bits: int = RING_BITS) -> Shared:
    """[x >= t] elementwise over a whole vector (t public scalar/array or shared), in ltz's constant rounds."""
    return ge(x, t, bits)


def sign(x: Shared, bits: int = RING_BITS) -> Shared:
    """sign(x) in {-1, 0, 1} (frac 0): [-x < 0] - [x < 0], two ltz circuits in the same rounds.

    Rounds as ``ltz``; twice its traffic. Requires x in (-2^(bits-1), 2^(bits-1)).
    """
    bits = _check_bits(bits)
    neg, pos = run_bitjobs(x.ctx, [LtzJob(x.data, bits), LtzJob((-x).data, bits)], "sign")
    return Shared(x.ctx, (pos - neg).reshape(x.shape), 0)


def select(c: Shared, x, y) -> Shared:
    """c ? x : y for a shared bit c (0/1, frac 0) and shared (or public) x, y: y + c * (x - y).

    One multiplication round; no truncation (c is an integer), so exact.
    """
    d = _diff(x, y) if isinstance(x, Shared) or isinstance(y, Shared) else None
    if d is None:
        raise TypeError("select needs at least one shared branch")
    if not isinstance(d, Shared):
        raise TypeError("select: x - y must be shared")
    return mul(c, d) + y


def abs(x: Shared, bits: int = RING_BITS) -> Shared:  # noqa: A001 - protocol name
    """|x| = x - 2 [x < 0] x: ltz then one multiplication round (exact)."""
    s = ltz(x, bits)
    return x - mul(s, x) * 2


def minimum(x: Shared, y, bits: int = RING_BITS) -> Shared:
    """Elementwise min(x, y): c = [x < y], then select(c, x, y). ltz rounds + 1."""
    return select(lt(x, y, bits), x, y)


def maximum(x: Shared, y, bits: int = RING_BITS) -> Shared:
    """Elementwise max(x, y): c = [x < y], then select(c, y, x). ltz rounds + 1."""
    return select(lt(x, y, bits), y, x)


def _reduce(x: Shared, axis: int, pick_min: bool, bits: int) -> Shared:
    """Tournament reduction along ``axis``: ceil(log2 len) levels, each one batched comparison + select."""
    ctx = x.ctx
    d = np.moveaxis(x.data, axis, 0)
    cur = Shared(ctx, d, x.frac)
    while cur.shape[0] > 1:
        k = cur.shape[0] // 2
        a, b = cur[:k], cur[k : 2 * k]
        best = minimum(a, b, bits) if pick_min else maximum(a, b, bits)
        cur = concat([best, cur[2 * k :]]) if cur.shape[0] % 2 else best
    return cur[0]


def _arg_reduce(x: Shared, axis: int, pick_min: bool, bits: int):
    """Tournament carrying the index: each level one batched comparison and one select of (value, index)."""
    ctx = x.ctx
    d = np.moveaxis(x.data, axis, 0)
    m = d.shape[0]
    idx = np.broadcast_to(np.arange(m, dtype=np.int64).reshape((m,) + (1,) * (d.ndim - 1)), d.shape)
    val = Shared(ctx, d, x.frac)
    ind = Shared.public(ctx, idx, 0)
    while val.shape[0] > 1:
        k = val.shape[0] // 2
        # adjacent pairs (2j, 2j+1): winners stay in index order, so ties go to the lower index
        a, b = val[0 : 2 * k : 2], val[1 : 2 * k : 2]
        ia, ib = ind[0 : 2 * k : 2], ind[1 : 2 * k : 2]
        c = lt(a, b, bits) if not pick_min else lt(b, a, bits)  # 1: take b
        both = mul(concat([c, c]), concat([b - a, Shared(ctx, (ib - ia).data, x.frac)]))
        win_v = a + Shared(ctx, both.data[:k], x.frac)
        win_i = ia + Shared(ctx, both.data[k:], 0)
        if val.shape[0] % 2:
            val, ind = concat([win_v, val[2 * k :]]), concat([win_i, ind[2 * k :]])
        else:
            val, ind = win_v, win_i
    return val[0], ind[0]


def argmax(x: Shared, axis: int = 0, bits: int = RING_BITS):
    """(max, index of the max) along ``axis``; ties go to the lower index. Index: integer share (frac 0).

    Tournament: ceil(log2 len) levels, each one batched ``lt`` and one product round that
    selects value and index together. Rounds: ceil(log2 len) (ltz rounds + 1).
    """
    return _arg_reduce(x, axis, False, bits)


def argmin(x: Shared, axis: int = 0, bits: int = RING_BITS):
    """(min, index of the min) along ``axis``; ties go to the lower index. See ``argmax``."""
    return _arg_reduce(x, axis, True, bits)


def min(x: Shared, axis: int = 0, bits: int = RING_BITS) -> Shared:  # noqa: A001
    """Minimum along ``axis`` (tournament: ceil(log2 len) levels of (ltz + 1) rounds)."""
    return _reduce(x, axis, True, bits)


def max(x: Shared, axis: int = 0, bits: int = RING_BITS) -> Shared:  # noqa: A001
    """Maximum along ``axis`` (tournament: ceil(log2 len) levels of (ltz + 1) rounds)."""
    return _reduce(x, axis, False, bits)
