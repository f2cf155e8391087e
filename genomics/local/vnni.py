"""Exact products of a large uint8 matrix with a few int8 columns, by AVX-512 VNNI.

For A (rows x K, uint8, C order) and B (K x C, int8) this computes P = A B exactly in int32:
P[r, c] = sum_t A[r, t] B[t, c]. One instruction, ``vpdpbusd``, adds to each of 16 int32 lanes
the four products of 4 consecutive uint8 with 4 int8: with B packed so that one 64-byte vector
holds B[4q:4q+4, c] for 16 columns c, and A[r, 4q:4q+4] broadcast as one 32-bit word, a tile of
``_ROWS`` rows x W columns (W <= 64: W // 16 vectors of 16 lanes and a 256-bit one of 8 for
W mod 16 = 8) is up to 24 accumulators in registers, and A is read once, 4 bytes per row and
quad, for all W columns (``_make_tile``, generated as LLVM IR: numba's loop vectoriser does not
emit ``vpdpbusd`` from a plain loop, measured: 49 Gop/s against 420 here). Columns are packed
in groups of ``group_width(C)``: AMD Zen 4 runs a 512-bit instruction as two 256-bit halves, so
a narrower tile is cheaper in proportion (96,000 x 3,334 (rows x K), two threads: 64 columns
0.057 s, 48 0.044 s, 40 0.036 s).

Why: the pooled PCA multiplies each site's standardised hard calls, 3 values per variant, with
b = 20 Krylov columns twice per pass (``genomics.gwas.pca_operator``). As float32 SGEMM
(OpenBLAS, one core, 80,000 x 3,334 x 20) that is 0.24 s per product; as an integer product of
the calls {0, 1, 2} with the columns quantised to 16 bits (two int8 digits: 40 columns) it is
0.059 s (0.094 s at 24 bits, three digits: 64 columns), exact in the integers.

Range: |P| <= 255 * 128 * K must fit the tile's int32, so K < 65,793; contractions are cut into
chunks of ``CHUNK_QUADS`` quads whose partial sums are added in int64 (``matmul_u8s8``).
Only for hosts with AVX-512 VNNI (``available``); elsewhere callers use float32 BLAS.
"""
from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import prange, types

from cipherome.mpc.jit import njit
from numba.core import cgutils
from numba.extending import intrinsic

from .threads import twin_kernel

__all__ = ["available", "packed_shape", "pack_columns", "matmul_u8s8", "group_width", "CHUNK_QUADS", "DISABLE_ENV"]

#: rows of A per register tile (6 x 4 accumulators + 4 B vectors + 1 broadcast fit 32 zmm registers)
_ROWS = 6
#: quads (4 contraction steps) per chunk: 255 * 128 * 16,384 steps < 2^31 (int32 tile sums), and B's chunk (1 MB) stays in L2
CHUNK_QUADS = 16384 // 4
#: set to 1 to make ``available()`` false (tests of the BLAS path on a VNNI host)
DISABLE_ENV = "CIPHEROME_NO_VNNI"


def available() -> bool:
    """True when this host's CPU has AVX-512F, BW and VNNI, and ``CIPHEROME_NO_VNNI`` is not set."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    from llvmlite import binding

    feats = binding.get_host_cpu_features()
    return all(feats.get(f, False) for f in ("avx512f", "avx512bw", "avx512vnni"))


def _make_tile(rows: int):
    """An intrinsic tile(A, r0, q0, q1, Bp, acc, width): acc[r, 0:W] += sum_(q0<=q<q1) A[r0+r, 4q:4q+4] . Bp[q]
    for r < ``rows``, where W = 8 len(width) (``width``: a tuple whose length, part of its numba type, picks
    the code: W // 16 vectors of 16 int32 lanes and, for W mod 16 = 8, one of 8 lanes)."""

    @intrinsic
    def tile(typingctx, a, r0, q0, q1, bp, acc, width):
        if not isinstance(width, types.BaseTuple) or not 1 <= len(width) <= 8:
            return None
        sig = types.void(a, r0, q0, q1, bp, acc, width)
        lanes = [16] * (len(width) // 2) + [8] * (len(width) % 2)

        def codegen(context, builder, signature, args):
            aty, _, _, _, bty, accty, _ = signature.args
            av, r0v, q0v, q1v, bv, accv, _ = args
            arr = context.make_array(aty)(context, builder, av)
            barr = context.make_array(bty)(context, builder, bv)
            carr = context.make_array(accty)(context, builder, accv)
            ity = r0v.type
            i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
            vty = {16: ir.VectorType(i32, 16), 8: ir.VectorType(i32, 8)}
            dots = {w: cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty[w], [vty[w]] * 3),
                                                      f"llvm.x86.avx512.vpdpbusd.{32 * w}") for w in set(lanes)}
            offs = [sum(lanes[:k]) * 4 for k in range(len(lanes))]  # byte offset of vector k in a row of W int32
            row_bytes = sum(lanes) * 4
            lda = builder.extract_value(arr.strides, 0)
            base = builder.gep(arr.data, [builder.mul(r0v, lda)])
            out = builder.bitcast(carr.data, i8.as_pointer())
            bbytes = builder.bitcast(barr.data, i8.as_pointer())

            def vec_ptr(ptr, byte, w):
                return builder.bitcast(builder.gep(ptr, [byte]), vty[w].as_pointer())

            acc_ptrs = [(vec_ptr(out, ir.Constant(i64, r * row_bytes + o), w), w)
                        for r in range(rows) for o, w in zip(offs, lanes)]
            start = [builder.load(p, align=1) for p, _ in acc_ptrs]
            entry = builder.basic_block
            loop = builder.append_basic_block("quads")
            done = builder.append_basic_block("done")
            builder.cbranch(builder.icmp_signed("<", q0v, q1v), loop, done)
            builder.position_at_end(loop)
            q = builder.phi(ity)
            q.add_incoming(q0v, entry)
            accs = []
            for v in start:
                p = builder.phi(v.type)
                p.add_incoming(v, entry)
                accs.append(p)
            bq = builder.mul(q, ir.Constant(ity, row_bytes))
            bvec = [builder.load(vec_ptr(bbytes, builder.add(bq, ir.Constant(ity, o)), w), align=1)
                    for o, w in zip(offs, lanes)]
            q4 = builder.mul(q, ir.Constant(ity, 4))
            new = []
            for r in range(rows):
                ap = builder.gep(base, [builder.add(builder.mul(ir.Constant(ity, r), lda), q4)])
                word = builder.load(builder.bitcast(ap, i32.as_pointer()), align=1)
                bcast = {}
                for w in set(lanes):
                    t = vty[w]
                    bc = builder.insert_element(ir.Constant(t, ir.Undefined), word, ir.Constant(i32, 0))
                    bcast[w] = builder.shuffle_vector(bc, ir.Constant(t, ir.Undefined), ir.Constant(t, [0] * w))
                for k, w in enumerate(lanes):
                    new.append(builder.call(dots[w], [accs[r * len(lanes) + k], bcast[w], bvec[k]]))
            qn = builder.add(q, ir.Constant(ity, 1))
            body_end = builder.basic_block
            q.add_incoming(qn, body_end)
            for p, v in zip(accs, new):
                p.add_incoming(v, body_end)
            builder.cbranch(builder.icmp_signed("<", qn, q1v), loop, done)
            builder.position_at_end(done)
            final = []
            for v0, v1 in zip(start, new):  # all phis first: LLVM wants them at the top of the block
                p = builder.phi(v0.type)
                p.add_incoming(v0, entry)
                p.add_incoming(v1, body_end)
                final.append(p)
            for (ptr, _), p in zip(acc_ptrs, final):
                builder.store(p, ptr, align=1)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile6 = _make_tile(_ROWS)
_tile1 = _make_tile(1)


def group_width(c: int) -> int:
    """Columns per packed group for C columns: C rounded up to a multiple of 8, at most 64 (the tile's
    vectors: one zmm per 16 columns, one ymm for a last 8; on a CPU that runs 512-bit instructions as
    two 256-bit halves, e.g. AMD Zen 4, a tile's cost is proportional to its width)."""
    return min(64, max(8, -(-int(c) // 8) * 8))


def packed_shape(k: int, c: int) -> tuple[int, int, int, int]:
    """Shape of B (K x C) packed for the tile: (groups of W = ``group_width(C)`` columns, K // 4 quads, W, 4)."""
    w = group_width(c)
    return max(1, -(-c // w)), k // 4, w, 4


@njit(cache=True, nogil=True)
def _pack(b, bp):  # pragma: no cover - compiled
    groups, nq, w = bp.shape[0], bp.shape[1], bp.shape[2]
    c = b.shape[1]
    for g in range(groups):
        for q in range(nq):
            for cc in range(w):
                col = g * w + cc
                for r in range(4):
                    bp[g, q, cc, r] = b[4 * q + r, col] if col < c else 0


def pack_columns(b: np.ndarray) -> np.ndarray:
    """B (K x C int8) in ``packed_shape``: per group of W columns and quad q, the W x 4 bytes the tile
    reads (B[4q:4q+4, c] for each column; columns past C are 0). The last K mod 4 rows are not packed
    (``matmul_u8s8`` adds them separately)."""
    bp = np.empty(packed_shape(*b.shape), dtype=np.int8)
    _pack(np.ascontiguousarray(b, dtype=np.int8), bp)
    return bp


def _product_kernel(a, bp, q0, q1, first, out, width):  # pragma: no cover - compiled
    """out[r, Wg:Wg+W] (+)= A[r, 4q0:4q1] . B for every row r and column group g (int64 out;
    ``first``: set instead of add; ``width``: W // 8 zeros, W = bp.shape[2], compiled per W)."""
    rows = a.shape[0]
    tiles = rows // 6
    groups, w = bp.shape[0], bp.shape[2]
    for t in prange(tiles + (rows - tiles * 6)):
        acc = np.zeros((6, w), dtype=np.int32)
        full = t < tiles
        r0 = t * 6 if full else tiles * 6 + (t - tiles)
        nr = 6 if full else 1
        for g in range(groups):
            acc[:] = 0
            if full:
                _tile6(a, r0, q0, q1, bp[g], acc, width)
            else:
                _tile1(a, r0, q0, q1, bp[g], acc, width)
            for r in range(nr):
                for c in range(w):
                    if first:
                        out[r0 + r, g * w + c] = acc[r, c]
                    else:
                        out[r0 + r, g * w + c] += acc[r, c]


def _tail_kernel(a, b, t0, out):  # pragma: no cover - compiled
    """out[r, c] += sum_(t >= t0) A[r, t] B[t, c] (the last K mod 4 contraction steps)."""
    rows, k = a.shape
    for r in prange(rows):
        for t in range(t0, k):
            v = np.int64(a[r, t])
            if v != 0:
                for c in range(b.shape[1]):
                    out[r, c] += v * np.int64(b[t, c])


_products = twin_kernel(_product_kernel)
_tail = twin_kernel(_tail_kernel)


def matmul_u8s8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B exactly, int64 (rows x C), for A (rows x K) uint8 and B (K x C) int8 (a view of a
    rows x (groups x W) array, ``packed_shape``). A may be a view whose rows are contiguous
    but further apart than K (a range of columns: the tile reads rows by A's stride).

    The contraction runs in chunks of ``CHUNK_QUADS`` quads (int32 in the tile, int64 across
    chunks); the last K mod 4 steps in a scalar loop. Needs ``available()``.
    """
    if a.dtype != np.uint8 or b.dtype != np.int8 or a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul_u8s8: A {a.dtype}{a.shape} and B {b.dtype}{b.shape}")
    if a.strides[1] != 1 or a.strides[0] < a.shape[1]:  # rows of contiguous bytes are enough (column ranges)
        a = np.ascontiguousarray(a)
    rows, k = a.shape
    bp = pack_columns(b)
    out = np.empty((rows, bp.shape[0] * bp.shape[2]), dtype=np.int64)
    width = (0,) * (bp.shape[2] // 8)
    nq = k // 4
    if nq == 0:
        out[:] = 0
    for q0 in range(0, nq, CHUNK_QUADS):
        _products(a, bp, q0, min(nq, q0 + CHUNK_QUADS), q0 == 0, out, width)
    if k % 4:
        _tail(a, b, nq * 4, out)
    return out[:, :b.shape[1]]
