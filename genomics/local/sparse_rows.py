"""Sums of rows picked by a sparse 0/1 matrix, 16 float32 lanes at a time (AVX-512 vectors, LLVM IR).

For S (m x n) a 0/1 matrix in CSR form (``ptr`` (m + 1,), ``idx``: column indices) and float32
rows of width W (a multiple of 16):
    gather:  out = S X        out[j] = sum_(p in ptr[j]:ptr[j+1]) X[idx[p]]       (m x W from n x W)
    scatter: out += S' V      out[idx[p]] += V[j] for every p in row j             (n x W from m x W)
Each picked row is one 64-byte vector load (and, scattering, one add and store): the pooled PCA's
missing-call corrections (``genomics.gwas.pca_operator``: S the missing calls, about 1% of a site's
calls; X the Krylov block, V the weighted rows of U). numba's loop vectoriser leaves a short
inner loop over the columns scalar (``vaddss``, measured), which took about 4 ns per picked row at
W = 12 float64 (3 million rows: 13-14 ms per product); a vector per row takes about a third of
that (``bench/test_bench_pca_products.py``).

float32 sums: a row of S picks a few dozen rows (relative rounding about 1e-7); a scattered output
row collects up to a few thousand (a bad sample's missing calls: relative rounding below 1e-5 of
the sum of magnitudes), both under the 2^-16 quantisation of the products they correct.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types

from cipherome.mpc.jit import njit
from numba.extending import intrinsic

from .threads import twin_kernel

__all__ = ["LANES", "padded_width", "gather_rows", "scatter_rows"]

#: float32 lanes per vector: a row is processed in blocks of this many columns
LANES = 16
_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)


def padded_width(b: int) -> int:
    """Columns b rounded up to a multiple of ``LANES``."""
    return max(LANES, -(-int(b) // LANES) * LANES)


def _row_vector(context, builder, arrty, arrv, row, col):
    """Pointer to the vector at [row, col:col + LANES] of a 2-D float32 array with contiguous rows."""
    arr = context.make_array(arrty)(context, builder, arrv)
    stride = builder.extract_value(arr.strides, 0)
    base = builder.bitcast(arr.data, ir.IntType(8).as_pointer())
    off = builder.add(builder.mul(row, stride), builder.mul(col, ir.Constant(col.type, 4)))
    return builder.bitcast(builder.gep(base, [off]), _VEC.as_pointer())


def _index_loop(context, builder, idxty, idxv, p0, p1, carried, body):
    """for p in [p0, p1): carried = body(i = idx[p], carried); returns the final carried value
    (``carried`` an LLVM value or None)."""
    idx = context.make_array(idxty)(context, builder, idxv)
    entry = builder.basic_block
    loop = builder.append_basic_block("rows")
    done = builder.append_basic_block("done")
    builder.cbranch(builder.icmp_signed("<", p0, p1), loop, done)
    builder.position_at_end(loop)
    p = builder.phi(p0.type)
    p.add_incoming(p0, entry)
    cur = None
    if carried is not None:
        cur = builder.phi(carried.type)
        cur.add_incoming(carried, entry)
    i = builder.sext(builder.load(builder.gep(idx.data, [p])), p0.type)
    new = body(i, cur)
    pn = builder.add(p, ir.Constant(p0.type, 1))
    end = builder.basic_block
    p.add_incoming(pn, end)
    if cur is not None:
        cur.add_incoming(new, end)
    builder.cbranch(builder.icmp_signed("<", pn, p1), loop, done)
    builder.position_at_end(done)
    if carried is None:
        return None
    final = builder.phi(carried.type)
    final.add_incoming(carried, entry)
    final.add_incoming(new, end)
    return final


@intrinsic
def _sum_rows(typingctx, x, idx, p0, p1, col, out, j):
    """out[j, col:col+16] = sum_(p0 <= p < p1) x[idx[p], col:col+16] (float32)."""
    sig = types.void(x, idx, p0, p1, col, out, j)

    def codegen(context, builder, signature, args):
        xty, idxty, _, _, _, outty, _ = signature.args
        xv, idxv, p0v, p1v, colv, outv, jv = args

        def add(i, acc):
            return builder.fadd(acc, builder.load(_row_vector(context, builder, xty, xv, i, colv), align=4))

        total = _index_loop(context, builder, idxty, idxv, p0v, p1v, ir.Constant(_VEC, None), add)
        builder.store(total, _row_vector(context, builder, outty, outv, jv, colv), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _add_row(typingctx, v, j, col, idx, p0, p1, out):
    """out[idx[p], col:col+16] += v[j, col:col+16] for p0 <= p < p1 (float32)."""
    sig = types.void(v, j, col, idx, p0, p1, out)

    def codegen(context, builder, signature, args):
        vty, _, _, idxty, _, _, outty = signature.args
        vv, jv, colv, idxv, p0v, p1v, outv = args
        row = builder.load(_row_vector(context, builder, vty, vv, jv, colv), align=4)

        def add(i, _):
            ptr = _row_vector(context, builder, outty, outv, i, colv)
            builder.store(builder.fadd(builder.load(ptr, align=4), row), ptr, align=4)

        _index_loop(context, builder, idxty, idxv, p0v, p1v, None, add)
        return context.get_dummy_value()

    return sig, codegen


def _gather_kernel(x, ptr, idx, out):  # pragma: no cover - compiled
    for j in prange(ptr.size - 1):
        for col in range(0, out.shape[1], LANES):
            _sum_rows(x, idx, ptr[j], ptr[j + 1], col, out, j)


@njit(cache=True, nogil=True)
def _scatter_kernel(v, ptr, idx, out):  # pragma: no cover - compiled
    for j in range(ptr.size - 1):
        for col in range(0, out.shape[1], LANES):
            _add_row(v, j, col, idx, ptr[j], ptr[j + 1], out)


_gather = twin_kernel(_gather_kernel)


def _check(name: str, a: np.ndarray, ptr: np.ndarray, idx: np.ndarray) -> None:
    if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] % LANES or a.strides[1] != 4:
        raise ValueError(f"{name}: rows must be float32 with a multiple of {LANES} contiguous columns")
    if ptr.dtype != np.int64 or idx.dtype != np.int32:
        raise ValueError(f"{name}: ptr int64 and idx int32 expected")


def gather_rows(x: np.ndarray, ptr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """S X for the CSR 0/1 matrix (``ptr``, ``idx``) with column indices into x's rows: (len(ptr) - 1) x W
    float32. ``idx`` entries must be valid rows of ``x`` (not checked in the loop)."""
    _check("gather_rows", x, ptr, idx)
    out = np.empty((ptr.size - 1, x.shape[1]), dtype=np.float32)
    _gather(x, ptr, idx, out)
    return out


def scatter_rows(v: np.ndarray, ptr: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out += S' V: row j of ``v`` added to out[idx[p]] for p in ptr[j]:ptr[j+1] (in place; returns out).
    ``idx`` entries must be valid rows of ``out`` (not checked in the loop)."""
    _check("scatter_rows", v, ptr, idx)
    _check("scatter_rows", out, ptr, idx)
    if v.shape[0] != ptr.size - 1 or v.shape[1] != out.shape[1]:
        raise ValueError(f"scatter_rows: {v.shape[0]} rows of V for {ptr.size - 1} rows of S")
    _scatter_kernel(v, ptr, idx, out)
    return out
