"""Products of hard calls with float32 columns by lookup tables, four calls per byte in base 3.

For G (R x C) with entries in {0, 1, 2} (a missing call counts 0) and Y (C x W, float32) this
computes P = G Y. G is packed four calls per byte in base 3 (``pack``):
    codes[r, k] = g[r, 4k] + 3 g[r, 4k+1] + 9 g[r, 4k+2] + 27 g[r, 4k+3]     (81 values)
and for each group k of four rows of Y a table of the 81 possible partial sums
    T_k[x] = sum_(t < 4) digit_t(x) Y[4k + t]          (digit_t(x) = floor(x / 3^t) mod 3)
is built (80 row additions: T_k[x] = T_k[x - 3^t] + Y[4k + t] for 3^t <= x < 3^(t+1)), so that
    P[r] = sum_k T_k[codes[r, k]]
is C / 4 row loads and additions of W floats instead of C multiply-adds (``product``).

Why: the pooled PCA multiplies each site's calls with b = 12 Krylov columns twice per pass
(``genomics.gwas.pca_operator``). Without AVX-512 VNNI (``genomics.local.vnni``) that was float32
SGEMM on a float32 copy of the standardised calls: on an AMD EPYC (Zen 1, AVX2) VM, one thread,
81,000 x 3,334 x 12, 0.39 s (left) and 0.83 s (right) per product and 1.08 GB per site; table sums
0.10 s and 0.11 s with 134 MB of codes (docs/pca_logistic.md, "Without VNNI"). The codes are stored
chunk by chunk (``CHUNK`` groups): a chunk's tables stay in L2 while every row adds its 16 table rows,
in registers (``_chunk_sum``, LLVM IR: numba leaves the short loop over W columns scalar, and LLVM
itself scalarises a ``<12 x float>`` accumulator, so the code uses 256- and 128-bit vectors).

Exactness: the table rows are float32 sums of at most 4 terms; a product row adds C / 4 of them in
float32 (each chunk's 16 in four partial sums, then into the row): relative rounding about
sqrt(C / 4) 2^-24 of the sum of magnitudes, 1e-7 to 3e-7 of a product's largest entry measured at
C = 3,334 and 81,000 (``tests/test_pca_operator.py`` bounds it by 1e-6).
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types

from cipherome.mpc.jit import njit
from numba.extending import intrinsic

from .threads import twin_kernel

__all__ = ["CALLS_PER_BYTE", "ENTRIES", "CHUNK", "pack", "pack_row", "pack_columns", "empty_codes", "product",
           "packed_width"]

#: calls per code byte, and the table entries per group (3^4)
CALLS_PER_BYTE = 4
ENTRIES = 81
#: groups (code bytes) per chunk: codes are stored chunk by chunk, (chunks, R, CHUNK), so that one row's
#: bytes of a chunk are one 16-byte load and a chunk of all rows is read sequentially; the chunk's tables,
#: 16 x 81 x 12 floats (62 KB at W = 12), stay in L2 while every row uses them
CHUNK = 16
_F32 = ir.FloatType()
_I64 = ir.IntType(64)
#: independent partial sums per row (table rows j mod _SUMS): the additions do not wait on each other
_SUMS = 4


def packed_width(c: int) -> int:
    """Code bytes per row for C calls."""
    return -(-int(c) // CALLS_PER_BYTE)


def empty_codes(r: int, c: int) -> np.ndarray:
    """Zeroed codes for R rows of C calls: (chunks, R, ``CHUNK``) uint8 (``pack``'s layout)."""
    return np.zeros((-(-packed_width(c) // CHUNK), int(r), CHUNK), dtype=np.uint8)


@njit(cache=True, nogil=True, inline="always")
def pack_row(g, c, codes, r):  # pragma: no cover - compiled
    """codes[., r, .] = the base-3 codes of the calls g[:c] (one row of G; uint8 in {0, 1, 2})."""
    full = c // 4
    for k in range(full):
        codes[k // CHUNK, r, k % CHUNK] = g[4 * k] + 3 * g[4 * k + 1] + 9 * g[4 * k + 2] + 27 * g[4 * k + 3]
    if full * 4 < c:
        x = 0
        for t in range(c - 1, 4 * full - 1, -1):
            x = 3 * x + g[t]
        codes[full // CHUNK, r, full % CHUNK] = x


@njit(cache=True, nogil=True, inline="always")
def pack_columns(band, c, codes_t, j0):  # pragma: no cover - compiled
    """The codes of G' for the 4 ``CHUNK`` rows of G in ``band`` (rows j0, j0 + 1, ..; j0 a multiple of
    4 ``CHUNK``, rows past G's end zero): chunk j0 / (4 CHUNK) of ``codes_t``, for the columns i < c."""
    out = codes_t[j0 // (4 * CHUNK)]
    for q in range(CHUNK):
        a, b, d, e = band[4 * q], band[4 * q + 1], band[4 * q + 2], band[4 * q + 3]
        for i in range(c):
            out[i, q] = a[i] + 3 * b[i] + 9 * d[i] + 27 * e[i]


@njit(cache=True, nogil=True)
def _pack_rows(g, codes):  # pragma: no cover - compiled
    for r in range(g.shape[0]):
        pack_row(g[r], g.shape[1], codes, r)


def pack(g: np.ndarray) -> np.ndarray:
    """(chunks, R, ``CHUNK``) uint8 base-3 codes of the calls g (R, C) in {0, 1, 2} (uint8; not checked in the
    loop: a value above 2 gives a wrong code): group k of row r at [k // CHUNK, r, k % CHUNK], 0 past C."""
    g = np.ascontiguousarray(g, dtype=np.uint8)
    out = empty_codes(*g.shape)
    _pack_rows(g, out)
    return out


def _width_loop(builder, w: int, crow, tab, orow):
    """out row += sum_(j < CHUNK) tab[j, code_j] for W = w floats, straight-line: 256-bit vectors (and a
    128-bit one for w mod 8 = 4; a <12 x float> value is scalarised), ``_SUMS`` partial sums (j mod
    ``_SUMS``) so that the additions do not wait on each other."""
    parts = [8] * (w // 8) + [4] * (w % 8 // 4)
    vecs = [ir.VectorType(_F32, n) for n in parts]
    offs = [sum(parts[:i]) for i in range(len(parts))]
    sums = [[ir.Constant(v, None) for v in vecs] for _ in range(_SUMS)]
    for j in range(CHUNK):
        code = builder.zext(builder.load(builder.inttoptr(builder.add(crow, ir.Constant(_I64, j)),
                                                          ir.IntType(8).as_pointer())), _I64)
        base = builder.mul(builder.add(code, ir.Constant(_I64, j * ENTRIES)), ir.Constant(_I64, w))
        sums[j % _SUMS] = [builder.fadd(a, builder.load(builder.bitcast(
            builder.gep(tab, [builder.add(base, ir.Constant(_I64, o))]), v.as_pointer()), align=4))
            for a, v, o in zip(sums[j % _SUMS], vecs, offs)]
    optr = builder.inttoptr(orow, _F32.as_pointer())
    for k, (v, o) in enumerate(zip(vecs, offs)):
        total = sums[0][k]
        for part in sums[1:]:
            total = builder.fadd(total, part[k])
        vp = builder.bitcast(builder.gep(optr, [ir.Constant(_I64, o)]), v.as_pointer())
        builder.store(builder.fadd(builder.load(vp, align=4), total), vp, align=4)


@intrinsic
def _chunk_sum(typingctx, tab, codes, r, out, orow):
    """out[orow, :W] += sum_(j < CHUNK) tab[j, codes[r, j], :W] (``tab`` (CHUNK, 81, W) float32 contiguous,
    ``codes`` one chunk (R, CHUNK) uint8 with contiguous rows, W = tab's third dimension and out's row
    width, 4 to 32 in steps of 4: a switch picks the straight-line code for it)."""
    sig = types.void(tab, codes, r, out, orow)

    def codegen(context, builder, signature, args):
        tabty, codesty, _, outty, _ = signature.args
        tabv, codesv, rv, outv, orowv = args
        ta = context.make_array(tabty)(context, builder, tabv)
        ca = context.make_array(codesty)(context, builder, codesv)
        oa = context.make_array(outty)(context, builder, outv)
        crow = builder.add(builder.ptrtoint(ca.data, _I64), builder.mul(rv, builder.extract_value(ca.strides, 0)))
        orow = builder.add(builder.ptrtoint(oa.data, _I64), builder.mul(orowv, builder.extract_value(oa.strides, 0)))
        done = builder.append_basic_block("tables.done")
        switch = builder.switch(builder.extract_value(ta.shape, 2), done)
        for w in range(4, 33, 4):
            block = builder.append_basic_block(f"tables.w{w}")
            switch.add_case(ir.Constant(_I64, w), block)
            builder.position_at_end(block)
            _width_loop(builder, w, crow, ta.data, orow)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _build_tables(y, g0, g1, k0, tab):  # pragma: no cover - compiled
    """tab[j] = T_k (module doc) for the groups k = k0 + j in [g0, g1), from y's rows 4 (k - g0) .. + 3
    (zero rows past y's end); 0 for the chunk's positions outside [g0, g1)."""
    w = tab.shape[2]
    for j in range(tab.shape[0]):
        t = tab[j]
        t[:] = 0.0
        k = k0 + j
        if k < g0 or k >= g1:
            continue
        p = 1
        for d in range(4):
            i = 4 * (k - g0) + d
            if i < y.shape[0]:
                for x in range(p, 3 * p):
                    for c in range(w):
                        t[x, c] = t[x - p, c] + y[i, c]
            else:
                for x in range(p, 3 * p):
                    for c in range(w):
                        t[x, c] = t[x - p, c]
            p *= 3


def _product_kernel(codes, y, g0, g1, r0, r1, blocks, out):  # pragma: no cover - compiled
    """out[r - r0] += (G Y)[r] for r0 <= r < r1 over the groups [g0, g1), Y's row 0 being group g0's first:
    ``blocks`` ranges of rows in parallel, each building the tables of every chunk itself (one parallel
    region per product: a region per chunk, 1,266 of them for a site's G' U, waited at its barrier for a
    thread the other daemons had descheduled)."""
    for blk in prange(blocks):
        ra = r0 + (r1 - r0) * blk // blocks
        rb = r0 + (r1 - r0) * (blk + 1) // blocks
        tab = np.empty((CHUNK, ENTRIES, out.shape[1]), dtype=np.float32)
        for ch in range(g0 // CHUNK, -(-g1 // CHUNK)):
            _build_tables(y, g0, g1, ch * CHUNK, tab)
            block = codes[ch]
            for r in range(ra, rb):
                _chunk_sum(tab, block, r, out, r - r0)


_product = twin_kernel(_product_kernel)


def product(codes: np.ndarray, y: np.ndarray, rows: slice = slice(None), start: int = 0) -> np.ndarray:
    """(G Y)[rows] for the calls packed as ``codes`` by ``pack``: (len(rows), W) float32, W = Y's columns
    rounded up to a multiple of 4 (the extra columns 0). Y (c x b) holds the rows of calls (columns of G)
    ``start`` to ``start + c`` (the other calls are left out of the sum)."""
    if codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[2] != CHUNK or y.ndim != 2 or start < 0:
        raise ValueError(f"call_tables.product: codes from pack(), a 2-D Y and a start >= 0 expected, "
                         f"got {codes.dtype}{codes.shape}, Y {y.shape}, start {start}")
    n_ch, r_n, _ = codes.shape
    w = max(4, -(-y.shape[1] // 4) * 4)
    if w > 32 or start + y.shape[0] > CALLS_PER_BYTE * CHUNK * n_ch:
        raise ValueError(f"call_tables.product: Y {y.shape} from call {start}: at most 32 columns, "
                         f"{CALLS_PER_BYTE * CHUNK * n_ch} calls")
    r0, r1, _ = rows.indices(r_n)
    lead = start % CALLS_PER_BYTE  # zero rows for the calls of the first group before ``start``
    yp = np.zeros((lead + y.shape[0], w), dtype=np.float32)
    yp[lead:, :y.shape[1]] = y
    out = np.zeros((max(r1 - r0, 0), w), dtype=np.float32)
    g0 = start // CALLS_PER_BYTE
    g1 = g0 + packed_width(yp.shape[0])
    if r1 > r0 and g1 > g0:
        blocks = min(numba.get_num_threads(), max(1, (r1 - r0) // 64))
        _product(codes, yp, g0, g1, r0, r1, blocks, out)
    return out
