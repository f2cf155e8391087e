"""Dealer-made random bits (edaBits, daBits) and bit-sliced boolean circuits on XOR shares.

A comparison of a shared ring value is a small boolean circuit on the bits of a
dealer mask r: the parties open c = x + r and evaluate the carry (or equality)
chain of the public c against the XOR-shared bits of r, with Beaver AND triples,
in a logarithmic number of rounds; a daBit (a random bit shared both ways)
turns the resulting bit back into an arithmetic share. All bits are *bit-sliced*:
one uint64 row per bit position holds that bit for 32 elements, so one AND on a
row is 32 ANDs and a round over 10^5 elements costs a few kilobytes per row.

Lane layout. An opening sums the parties' shares modulo 2^64 (``Context.open_masked``),
not XORs them; so lanes sit ``s = bit_length(n)`` bits apart (lane i at bit i*s)
and every share keeps zeros between lanes: the sum of n lane bits (at most
n < 2^s) never carries into the next lane, and its lowest bit is their XOR. With
2 or 3 parties a word carries 32 lanes, with 4-7 parties 21. On the wire the lane
bits are packed densely, 64 to a word, and combined by XOR (``open_bits``), so an
opening costs one bit per lane whatever the spacing.

Correlated randomness (recipes run identically by the dealer and the parties):
  * ``edabits``: r uniform in Z_2^64 additively shared, the bits of
    (r mod 2^width) bit-sliced and XOR-shared, the ANDs of adjacent bit pairs
    (so that the first level of every carry/equality tree is local), and
    optionally daBits: random bits d XOR-shared *and* additively shared.
  * ``dabits``: daBits alone, fetched by a bit job only at its B2A.
  * ``and_layers``: for each layer of a circuit, masks a for each operand row
    and the ANDs a_i & a_j for each gate; one AND costs one opened lane bit
    per distinct operand and one bit of dealer traffic per gate. Circuits fetch
    one layer at a time, when it runs (``AndMaterial``).

Memory: a comparison holds its big state (the masked value c, the mask r and the
bit rows of both) only around its opening; after the first (local) level it keeps
the circuit's live rows, the running layer's material and, at the end, one daBit.

Security: every opened value is masked by a fresh uniform dealer value (c = x + r,
o = b ^ d, e = u ^ a), so openings are uniform to every party (semi-honest,
dealer not colluding).
"""
from __future__ import annotations

import functools

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.shares import Shared

from ._kernels import lane_mask, slice_bits, unslice_bits

__all__ = [
    "Lanes",
    "lanes",
    "open_bits",
    "prefix_schedule",
    "prefix_circuit",
    "circuit_plan",
    "run_circuits",
    "AndMaterial",
    "fetch_and",
    "BitJob",
    "run_bitjobs",
    "b2a_bits",
    "b2a_rows",
    "dabits",
    "bit_decompose",
    "low_mask",
]

U64 = np.uint64
ALL = U64(0xFFFFFFFFFFFFFFFF)


def low_mask(bits: int) -> U64:
    """2^bits - 1 as a uint64 (bits in 0..64)."""
    return ALL if bits >= 64 else U64((1 << bits) - 1)


class Lanes:
    """Lane geometry for n parties: spacing s, lanes per word, lane mask, words for N elements."""

    __slots__ = ("s", "per_word", "mask")

    def __init__(self, n_parties: int):
        self.s = int(n_parties).bit_length()
        self.per_word = 64 // self.s
        self.mask = lane_mask(self.s)

    def words(self, n: int) -> int:
        return -(-int(n) // self.per_word)

    def slice(self, vals, nbits: int, *, lo: int = 0, rows: int | None = None) -> np.ndarray:
        return slice_bits(vals, nbits, self.s, lo=lo, rows=rows)

    def unslice(self, rows, n: int) -> np.ndarray:
        return unslice_bits(rows, n, self.s)


@functools.lru_cache(maxsize=None)
def lanes(n_parties: int) -> Lanes:
    return Lanes(n_parties)


# XOR-shared correlated randomness comes from the engine's generators:
# ``gen.xor_random(shape, mask)`` and ``gen.xor_derived(shape, value, mask)``
# (the dealer XORs the parties' PRG draws where ``random``/``derived`` add them).


@recipe("edabits", rotate=True)
def _edabits(gen, n, s, width, rows, pairs=True, nda=0):
    """edaBits: r uniform (additive), bits 0..width-1 of r bit-sliced in ``rows`` XOR-shared rows,
    ANDs of bit pairs (2i+1, 2i) (rows // 2 of them), and ``nda`` daBits (XOR rows and additive (nda, n) part).

    Cost (dealer -> lead): rows + rows/2 + nda lane rows of words, plus nda * n ring elements.
    """
    mask = lane_mask(s)
    w = -(-n // (64 // s))
    r = gen.random((n,))
    R = gen.xor_derived((rows, w), lambda: slice_bits(r & low_mask(width), width, s, rows=rows), mask)
    out = [r, R]
    if pairs:
        out.append(gen.xor_derived((rows // 2, w), lambda: R[1::2] & R[: rows - rows % 2 : 2], mask))
    if nda:
        D = gen.xor_random((nda, w), mask)
        out += [D, gen.derived((nda, n), lambda: unslice_bits(D, n, s))]
    return tuple(out)


@recipe("dabits", rotate=True)
def _dabits(gen, n, s, rows):
    """daBits: random bits d as XOR-shared lane rows (rows, W) and as additive shares (rows, n)."""
    mask = lane_mask(s)
    w = -(-n // (64 // s))
    D = gen.xor_random((rows, w), mask)
    return D, gen.derived((rows, n), lambda: unslice_bits(D, n, s))


@recipe("and_layers", rotate=True)
def _and_layers(gen, w, s, plan):
    """AND material for a circuit: per layer (U, I, J), masks A (U, w) and C = A[I] & A[J].

    Cost (dealer -> lead): one lane row of w words per gate.
    """
    mask = lane_mask(s)
    out = []
    for u, gi, gj in plan:
        A = gen.xor_random((u, w), mask)
        gi, gj = np.asarray(gi, dtype=np.intp), np.asarray(gj, dtype=np.intp)
        out.append(A)
        out.append(gen.xor_derived((len(gi), w), lambda: A[gi] & A[gj], mask))
    return tuple(out)


# ---------------------------------------------------------------------------
# openings and AND layers
# ---------------------------------------------------------------------------


_GATHER2 = [(1, 0x3333333333333333), (2, 0x0F0F0F0F0F0F0F0F), (4, 0x00FF00FF00FF00FF),
            (8, 0x0000FFFF0000FFFF), (16, 0x00000000FFFFFFFF)]
_SPREAD2 = [(16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
            (2, 0x3333333333333333), (1, 0x5555555555555555)]


def _compress(w: np.ndarray, s: int) -> np.ndarray:
    """The lane bits of each word (bits i*s) gathered into its low 64 // s bits."""
    if s == 2:
        x = w & U64(0x5555555555555555)
        for sh, m in _GATHER2:
            x = (x | (x >> U64(sh))) & U64(m)
        return x
    out = np.zeros_like(w)
    for i in range(64 // s):
        out |= ((w >> U64(i * s)) & U64(1)) << U64(i)
    return out


def _spread(d: np.ndarray, s: int) -> np.ndarray:
    """Inverse of ``_compress``: the low 64 // s bits of each word back to bits i*s."""
    if s == 2:
        x = d.copy()
        for sh, m in _SPREAD2:
            x = (x | (x << U64(sh))) & U64(m)
        return x
    out = np.zeros_like(d)
    for i in range(64 // s):
        out |= ((d >> U64(i)) & U64(1)) << U64(i * s)
    return out


def pack_lanes(words: np.ndarray, s: int) -> np.ndarray:
    """Lane words (N,) -> dense words: the 64 // s lane bits of k = 64 // (64 // s) words per uint64."""
    L = 64 // s
    k = 64 // L
    d = _compress(words, s)
    pad = (-d.size) % k
    if pad:
        d = np.concatenate([d, np.zeros(pad, U64)])
    d = d.reshape(-1, k)
    out = d[:, 0].copy()
    for j in range(1, k):
        out |= d[:, j] << U64(j * L)
    return out


def unpack_lanes(dense: np.ndarray, s: int, n: int) -> np.ndarray:
    """Inverse of ``pack_lanes`` for ``n`` lane words."""
    L = 64 // s
    k = 64 // L
    low = U64((1 << L) - 1)
    d = np.stack([(dense >> U64(j * L)) & low for j in range(k)], axis=1).ravel()[:n]
    return _spread(d, s)


def open_bits(ctx, arrays: list[np.ndarray], label: str, extra: list[np.ndarray] | None = None):
    """Open XOR-shared lane rows (and optionally ring arrays ``extra`` in the same round).

    Returns the opened rows (lane bits) followed by the opened ring arrays. Without
    ``extra`` the lane bits are sent packed, 64 per word (``pack_lanes``: 32 lanes of two
    words in one for 2-3 parties), and combined by XOR (``Context.open_masked(xor=True)``):
    half the words of the additive lane layout, whose spacing only protects sums from
    carries. Every opened bit is masked by a fresh dealer bit, as before.
    """
    lz = lanes(ctx.n)
    if extra:
        got = ctx.open_masked(list(arrays) + list(extra or []), label)
        k = len(arrays)
        return [g & lz.mask for g in got[:k]] + got[k:]
    if len(arrays) == 1:
        flat = np.ascontiguousarray(arrays[0], dtype=U64).ravel()
    else:
        flat = np.concatenate([np.ascontiguousarray(a, dtype=U64).ravel() for a in arrays]) if arrays else np.zeros(0, U64)
    (got,) = ctx.open_masked([pack_lanes(flat & lz.mask, lz.s)], label, xor=True)
    words = unpack_lanes(got, lz.s, flat.size)
    out, pos = [], 0
    for a in arrays:
        out.append(words[pos : pos + a.size].reshape(a.shape))
        pos += a.size
    return out


def _drive(gens: list, and_fn) -> list:
    """Run boolean circuits (generators) in lock-step, one AND layer per step for all of them.

    A circuit yields (operands (U, W), I, J) and receives the rows operands[I] & operands[J];
    it hands the operands array over (``and_fn`` may overwrite it).
    """
    results = [None] * len(gens)
    active = {}
    for k, g in enumerate(gens):
        try:
            active[k] = next(g)
        except StopIteration as stop:
            results[k] = stop.value
    layer = 0
    while active:
        keys = list(active)
        ops, ii, jj, counts, off = [], [], [], [], 0
        for k in keys:
            o, i, j = active[k]
            ops.append(o)
            ii.append(np.asarray(i, dtype=np.intp) + off)
            jj.append(np.asarray(j, dtype=np.intp) + off)
            counts.append(len(i))
            off += o.shape[0]
        if len(ops) == 1:
            z = and_fn(layer, ops.pop(), ii[0], jj[0])
        else:
            z = and_fn(layer, np.concatenate(ops), np.concatenate(ii), np.concatenate(jj))
        del ops
        nxt, pos = {}, 0
        for k, c in zip(keys, counts):
            try:
                nxt[k] = gens[k].send(z[pos : pos + c])
            except StopIteration as stop:
                results[k] = stop.value
            pos += c
        active = nxt
        layer += 1
    return results


_PLANS: dict = {}


def circuit_plan(key, make) -> list:
    """The layer plan [(U, I, J), ...] of the circuits ``make()`` returns, from a dry run on width-1 rows.

    ``make`` must build the same circuits as the real run with inputs of width 1;
    the plan depends only on sizes, so it is cached under ``key``.
    """
    plan = _PLANS.get(key) if key is not None else None
    if plan is None:
        plan = []

        def rec(layer, ops, i, j):
            plan.append((int(ops.shape[0]), [int(v) for v in i], [int(v) for v in j]))
            return np.zeros((len(i),) + ops.shape[1:], dtype=U64)

        _drive(make(), rec)
        if key is not None:
            _PLANS[key] = plan
    return plan


class AndMaterial:
    """The AND material of a circuit plan, fetched from the dealer one layer at a time, when that layer runs.

    ``layer(k)`` requests layer k's operand masks A and gate products C = A[I] & A[J]
    (recipe ``and_layers`` on a one-layer plan). A's shares are every party's own PRG
    draws, so the layer's opening waits for nothing; the party that gets the dealer's
    correction for C (``correlated.corrected_party``) needs it only after that opening, so
    the reply overlaps the round. A
    circuit so holds only its running layer's material, never all layers at once.
    Every party requests the layers in the same order (SPMD), which keeps the dealer's
    stream in step; the dealer's traffic is the same as for one request of all layers.
    """

    __slots__ = ("ctx", "w", "plan")

    def __init__(self, ctx, w: int, plan: list):
        self.ctx, self.w, self.plan = ctx, int(w), plan

    def layer(self, k: int):
        return self.ctx.provider.fetch("and_layers", w=self.w, s=lanes(self.ctx.n).s, plan=[self.plan[k]])


def fetch_and(ctx, w: int, plan: list) -> AndMaterial | None:
    """The AND material of a plan, as a handle that fetches each layer when it runs (``AndMaterial``)."""
    return AndMaterial(ctx, w, plan) if plan else None


def run_circuits(ctx, gens: list, material: AndMaterial | None, label: str) -> list:
    """Evaluate circuits with the dealer's AND material: one opening round per layer.

    Layer step (Beaver for AND on XOR shares): fetch the layer's material, open
    e = u ^ a for every operand row u (mask a fresh per row), then
    x & y = c ^ (e_x & a_y) ^ (a_x & e_y) (^ e_x & e_y on the lead), c = a_x & a_y
    from the dealer.
    """
    mask = lanes(ctx.n).mask
    lead = ctx.is_lead

    def step(layer, ops, ii, jj):
        mat = material.layer(layer)
        a = mat[0]
        ops ^= a  # the operands are handed over (``_drive``): masked in place
        (e,) = open_bits(ctx, [ops], label)
        del ops
        ei, ej = e[ii], e[jj]
        z = (ei & a[jj]) ^ (a[ii] & ej)
        z ^= mat[1]
        if lead:
            z ^= ei & ej
        return z & mask

    return _drive(gens, step)


# ---------------------------------------------------------------------------
# prefix circuits (pruned Sklansky)
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def prefix_schedule(q: int, b0: int, outputs: tuple, carry: bool) -> tuple:
    """Pruned Sklansky schedule over positions 0..q-1, starting from blocks of size b0.

    At the level with half-block b, every position j in the upper half of its
    block of size 2b combines with t, the top of the lower half. Only the updates
    needed for ``outputs`` are kept. Returns ((b, ((j, t, needG, needP), ...)), ...).
    For ``carry`` the state is (G, P); otherwise a single value (OR/AND).
    """
    levels = []
    b = b0
    while b < q:
        levels.append(b)
        b *= 2
    need_g, need_p = set(outputs), set()
    sched = []
    for b in reversed(levels):
        ups, ng, np_ = [], set(), set()
        for j in range(q):
            if j % (2 * b) >= b:
                t = j - j % (2 * b) + b - 1
                g, p = j in need_g, j in need_p
                if g:
                    ng |= {j, t}
                    if carry:
                        np_.add(j)
                if p:
                    np_ |= {j, t}
                if g or p:
                    ups.append((j, t, g, p))
            else:
                if j in need_g:
                    ng.add(j)
                if j in need_p:
                    np_.add(j)
        sched.append((b, tuple(ups)))
        need_g, need_p = ng, np_
    sched.reverse()
    return tuple(s for s in sched if s[1])


@functools.lru_cache(maxsize=None)
def _live_rows(sched: tuple, kind: str, outputs: tuple) -> tuple:
    """Per level L of ``sched`` (and after the last): the rows (name, position) read at level L or later,
    or asked for in ``outputs`` -- the rows a circuit must still hold when level L starts."""
    name = "G" if kind == "carry" else "V"
    need = {(name, j) for j in outputs}
    live = [frozenset(need)]
    for _b, ups in reversed(sched):
        for j, t, g, p in ups:
            if kind != "carry":
                need |= {("V", j), ("V", t)}
            else:
                if g:
                    need |= {("P", j), ("G", t), ("G", j)}
                if p:
                    need |= {("P", j), ("P", t)}
        live.append(frozenset(need))
    live.reverse()
    return tuple(live)


def prefix_circuit(state, sched, kind: str, outputs: tuple | None = None):
    """Generator: run a prefix schedule on bit-sliced XOR-shared rows, one AND layer per level.

    kind "carry": state = (G, P) arrays (q, W); combine (hi, lo) -> (G_hi ^ P_hi & G_lo, P_hi & P_lo)
    (generate and propagate are exclusive, so XOR is OR). kind "or": v_hi | v_lo =
    v_hi ^ v_lo ^ (v_hi & v_lo). kind "and": v_hi & v_lo. Returns the final state.

    ``outputs`` (positions): return only those rows (of G for "carry"), stacked, and hold
    from the start only the rows a later level or an output reads (``_live_rows``), each
    dropped after its last use: the circuit's memory shrinks with its levels. The caller
    should then hand ``state`` over (pass it as a temporary) so that it is freed too.
    """
    carry = kind == "carry"
    names = ("G", "P") if carry else ("V",)
    arrays = state if carry else (state,)
    live = _live_rows(tuple(sched), kind, tuple(outputs)) if outputs is not None else None
    if live is None:  # the whole state is returned: work on a copy of it, row views into it
        arrays = tuple(a.copy() for a in arrays)
        rows = {(nm, pos): arr[pos] for nm, arr in zip(names, arrays) for pos in range(arr.shape[0])}
    else:  # copies of the live rows only, so that the state itself can go
        rows = {(nm, pos): arr[pos].copy() for nm, arr in zip(names, arrays) for pos in range(arr.shape[0])
                if (nm, pos) in live[0]}
        del arrays
    del state
    for level, (_b, ups) in enumerate(sched):
        keys: dict = {}
        order = []
        gi, gj, targets = [], [], []

        def op(name, pos):
            key = (name, pos)
            if key not in keys:
                keys[key] = len(order)
                order.append(key)
            return keys[key]

        for j, t, g, p in ups:
            if carry:
                if g:
                    gi.append(op("P", j)); gj.append(op("G", t)); targets.append(("G", j))
                if p:
                    gi.append(op("P", j)); gj.append(op("P", t)); targets.append(("P", j))
            else:
                gi.append(op("V", j)); gj.append(op("V", t)); targets.append(("V", t, j))
        ops = np.stack([rows[key] for key in order])
        z = yield ops, gi, gj
        del ops
        for k, tg in enumerate(targets):
            if tg[0] == "G":
                rows[("G", tg[1])] ^= z[k]
            elif tg[0] == "P":
                rows[("P", tg[1])][...] = z[k]
            elif kind == "or":
                rows[("V", tg[2])] ^= rows[("V", tg[1])] ^ z[k]
            else:
                rows[("V", tg[2])][...] = z[k]
        if live is not None:
            for key in [key for key in rows if key not in live[level + 1]]:
                del rows[key]
    if live is not None:
        name = "G" if carry else "V"
        return np.stack([rows[(name, j)] for j in outputs])
    return arrays if carry else arrays[0]


def pair_level(cbar: np.ndarray, R: np.ndarray, M: np.ndarray, lead: bool, mask: U64, kind: str):
    """The first (local) level of a borrow or equality chain of public c against XOR-shared r.

    cbar: public rows of NOT c (lane bits), R: XOR-shared rows of r, M: shares of
    R[2i+1] & R[2i] (dealer). For kind "carry" (borrow of c - r): per bit
    g = ~c & r, p = ~c ^ r; the pair (hi, lo) gives
      G = ~c_h r_h ^ ~c_l (r_h r_l) ^ ~c_l ~c_h r_l,
      P = r_h r_l ^ ~c_l r_h ^ ~c_h r_l ^ ~c_h ~c_l (public term on the lead).
    For kind "and" (equality: e = ~c ^ r): e_h e_l = r_h r_l ^ ~c_l r_h ^ ~c_h r_l ^ ~c_h ~c_l.
    Odd positions get the pair group, even positions keep the single bit.
    """
    q = R.shape[0]
    lo, hi = slice(0, q - 1 if q % 2 else q, 2), slice(1, q, 2)
    ch, cl, rh, rl = cbar[hi], cbar[lo], R[hi], R[lo]
    npair = ch.shape[0]
    Mp = M[:npair]
    pp = Mp ^ (cl & rh) ^ (ch & rl)
    if lead:
        pp ^= ch & cl
    if kind == "carry":
        G = cbar & R
        P = R.copy()
        if lead:
            P ^= cbar
        G[hi] = (ch & rh) ^ (cl & Mp) ^ (cl & ch & rl)
        P[hi] = pp
        return G, P
    V = R.copy()
    if lead:
        V ^= cbar
    V[hi] = pp
    return V


# ---------------------------------------------------------------------------
# bit jobs: masked opening -> boolean circuit -> B2A, several in the same rounds
# ---------------------------------------------------------------------------


class BitJob:
    """One protocol of the shape "open c = x + r, boolean circuit on c and r's bits, B2A".

    Subclasses set ``key`` (the plan cache key, from sizes only) and ``n`` (elements) and
    implement, in the order ``run_bitjobs`` calls them:
      * ``fetch(ctx)``: the dealer material the opening and the circuit need (a mask r and its bits);
      * ``opening()``: the masked ring array c = x + r to open; the job drops x and r here;
      * ``circuit(c, dummy)``: a generator returning the XOR-shared rows (k, W) to convert; it
        keeps of c and of r's bits only what ``finish`` reads and drops the rest at its first level;
      * ``b2a_material(ctx)``: (D, Dar), daBits as XOR rows (k, W) and their arithmetic shares,
        fetched only now, at the B2A (default: ``dabits``);
      * ``finish(o, Dar)``: the arithmetic result from the opened lane rows o = rows ^ D.
    So a job's peak (x, r, c, the bits of r and c) lasts about its opening round; its AND
    rounds hold their running layer, its B2A round one daBit per element.
    """

    key: tuple = ()
    n: int = 0

    def fetch(self, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def opening(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def circuit(self, c, dummy: bool = False):  # pragma: no cover - interface
        raise NotImplementedError

    def b2a_material(self, ctx, k: int = 1):
        return dabits(ctx, self.n, rows=k)

    def finish(self, o: np.ndarray, Dar: np.ndarray):  # pragma: no cover - interface
        raise NotImplementedError


def run_bitjobs(ctx, jobs: list, label: str) -> list:
    """Run ``BitJob``s in lock-step (rounds: 1 + the deepest circuit + 1). Returns their results.

    One opening round for all jobs, the AND layers of all circuits merged (each layer's
    material fetched when it runs, ``AndMaterial``), one B2A round with daBits fetched then.
    """
    lz = lanes(ctx.n)
    ns = {j.n for j in jobs}
    if len(ns) != 1:
        raise ValueError("run_bitjobs: all jobs need vectors of the same length")
    w = lz.words(ns.pop())
    for j in jobs:
        j.fetch(ctx)
    plan = circuit_plan(("jobs",) + tuple(j.key for j in jobs), lambda: [j.circuit(None, True) for j in jobs])
    cs = ctx.open_masked([j.opening() for j in jobs], label, bits=max(getattr(j, "wire_bits", 64) for j in jobs))
    gens = [j.circuit(c) for j, c in zip(jobs, cs)]
    del cs  # each circuit drops its c at its first level
    rows = run_circuits(ctx, gens, fetch_and(ctx, w, plan), label + ".and")
    del gens
    das = [j.b2a_material(ctx, r.shape[0]) for j, r in zip(jobs, rows)]
    os_ = open_bits(ctx, [r ^ d[0] for r, d in zip(rows, das)], label + ".b2a")
    del rows
    return [j.finish(o, d[1]) for j, o, d in zip(jobs, os_, das)]


# ---------------------------------------------------------------------------
# boolean -> arithmetic, bit decomposition
# ---------------------------------------------------------------------------


def b2a_bits(t: np.ndarray, Dar: np.ndarray, lead: bool) -> np.ndarray:
    """Arithmetic shares of b = t ^ d for public 0/1 ``t`` and shares ``Dar`` of the daBit d:
    t + (1 - 2t) [d], the lead adding t. Works in one new buffer besides t."""
    out = np.left_shift(t, U64(1))
    np.subtract(U64(1), out, out=out)
    out *= Dar
    if lead:
        out += t
    return out


def b2a_rows(ctx, rows: np.ndarray, D: np.ndarray, Dar: np.ndarray, n: int, label: str, flip=None):
    """Arithmetic shares (frac 0) of XOR-shared bit rows, with daBits (D XOR rows, Dar arithmetic).

    Open o = b ^ d (one round); then b = o ^ d = o + (1 - 2 o) d, the lead adding o.
    ``flip`` (public 0/1 array (rows, n)) is XORed into the result for free.
    Returns a (rows, n) uint64 array of shares.
    """
    (o,) = open_bits(ctx, [rows ^ D], label)
    t = lanes(ctx.n).unslice(o, n)
    if flip is not None:
        t ^= flip
    return b2a_bits(t, Dar, ctx.is_lead)


def dabits(ctx, n: int, rows: int = 1):
    """``rows`` x n uniform random bits from the dealer, shared both ways.

    Returns (XOR-shared bit-sliced rows (rows, W), additive shares (rows, n) in Z_2^64):
    the same bits, so that a boolean result b is converted by opening b ^ d (``b2a_rows``).
    Cost: no party traffic; the dealer sends the lead rows (W + n) ring elements.
    """
    lz = lanes(ctx.n)
    b = ctx.provider.fetch("dabits", n=int(n), s=lz.s, rows=int(rows))
    return b[0], b[1]


def bit_decompose(x: Shared, bits: int = 64) -> Shared:
    """The bits of x mod 2^bits as arithmetic 0/1 shares: shape x.shape + (bits,), frac 0, LSB first.

    For x in [-2^(bits-1), 2^bits) this is the two's complement (or plain) binary form.
    Steps: dealer edaBit r (bits sliced, pair ANDs) and daBits; open c = x + r
    (1 round); the borrows b_i = [c mod 2^i < r mod 2^i] of c - r for all i by a
    pruned Sklansky prefix circuit, first level local, then ceil(log2(bits-1)) - 1
    AND rounds; x_i = c_i ^ r_i ^ b_i; B2A with daBits (1 round).
    Rounds: ceil(log2(bits - 1)) + 2 (bits = 64: 8). Traffic per element and peer:
    8 bytes + about 3 bits * bits * log2(bits) / 32 lanes of AND openings + bits lane bits.
    """
    ctx = x.ctx
    lz = lanes(ctx.n)
    flat = x.data.ravel()
    n = flat.size
    w = lz.words(n)
    q = max(bits - 1, 1)
    rows = q + (q % 2)
    sched = prefix_schedule(q, 2, tuple(range(q)), True)
    eda = ctx.provider.fetch("edabits", n=n, s=lz.s, width=bits, rows=max(rows, bits + bits % 2), pairs=True, nda=bits)
    key = ("bitdec", bits)
    plan = circuit_plan(key, lambda: [prefix_circuit((np.zeros((q, 1), U64), np.zeros((q, 1), U64)), sched, "carry")])
    mat = fetch_and(ctx, w, plan)
    (c,) = ctx.open_masked([flat + eda[0]], "bitdec", bits=bits)  # only c mod 2^bits is read
    crows = lz.slice(c, bits, rows=max(rows, bits + bits % 2))
    R = eda[1]
    cbar = ~crows & lz.mask
    G, P = pair_level(cbar[:q], R[:q], eda[2], ctx.is_lead, lz.mask, "carry")
    (G, P), = run_circuits(ctx, [prefix_circuit((G, P), sched, "carry")], mat, "bitdec.and")
    xb = R[:bits].copy()  # x_i = c_i ^ r_i ^ borrow_i (borrow_0 = 0)
    if ctx.is_lead:
        xb ^= crows[:bits]
    xb[1:bits] ^= G[: bits - 1]
    ar = b2a_rows(ctx, xb, eda[3], eda[4], n, "bitdec.b2a")
    return Shared(ctx, ar.T.reshape(x.shape + (bits,)), 0)
