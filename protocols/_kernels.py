"""Numba kernels for the bit-sliced boolean shares of the non-linear protocols.

Boolean (XOR) shares are kept *bit-sliced*: row j of a (bits, W) uint64 array
holds bit j of many elements, element e in lane e % L of word e // L, lane i
occupying bit i*s of the word (s = bit_length(n) for n parties, so that the sum
of the n parties' 0/1 lane bits never carries into the next lane; see
``protocols.bits``). These kernels move between one uint64 per element and that
layout; they release the GIL so that parties running as threads overlap.
"""
from __future__ import annotations

import numpy as np
from cipherome.mpc.jit import njit

__all__ = ["slice_bits", "unslice_bits", "lane_mask", "lut_onehot", "lut_rotate"]


def lane_mask(s: int) -> np.uint64:
    """The word with bit i*s set for every lane i (the lane LSBs)."""
    m = 0
    for i in range(64 // s):
        m |= 1 << (i * s)
    return np.uint64(m)


@njit(cache=True, nogil=True)
def _slice(vals, lo, nbits, s, out):  # pragma: no cover - compiled
    lanes = 64 // s
    n = vals.size
    nw = out.shape[1]
    one = np.uint64(1)
    acc = np.zeros(nbits, dtype=np.uint64)
    for w in range(nw):
        e0 = w * lanes
        e1 = min(e0 + lanes, n)
        acc[:] = 0
        sh = np.uint64(0)
        for e in range(e0, e1):
            v = vals[e] >> np.uint64(lo)
            for j in range(nbits):
                acc[j] |= ((v >> np.uint64(j)) & one) << sh
            sh += np.uint64(s)
        for j in range(nbits):
            out[j, w] = acc[j]


def slice_bits(vals: np.ndarray, nbits: int, s: int, *, lo: int = 0, rows: int | None = None) -> np.ndarray:
    """Bits lo .. lo+nbits-1 of each uint64 of ``vals`` (flat, N values) as bit-sliced rows.

    Returns a (rows, W) uint64 array, W = ceil(N / (64 // s)); rows beyond
    ``nbits`` (default rows = nbits) are zero.
    """
    vals = np.ascontiguousarray(vals, dtype=np.uint64).ravel()
    lanes = 64 // s
    nw = -(-vals.size // lanes)
    out = np.zeros((nbits if rows is None else rows, nw), dtype=np.uint64)
    if nbits and nw:
        _slice(vals, int(lo), int(nbits), int(s), out[:nbits])
    return out


@njit(cache=True, nogil=True)
def _unslice(rows, n, s, out):  # pragma: no cover - compiled
    lanes = 64 // s
    one = np.uint64(1)
    for j in range(rows.shape[0]):
        for e in range(n):
            out[j, e] = (rows[j, e // lanes] >> np.uint64((e % lanes) * s)) & one


def unslice_bits(rows: np.ndarray, n: int, s: int) -> np.ndarray:
    """Inverse of the slicing: (R, W) rows -> (R, n) uint64 array of 0/1 (lane LSBs only)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint64)
    if rows.ndim == 1:
        rows = rows[None, :]
    out = np.empty((rows.shape[0], n), dtype=np.uint64)
    if n:
        _unslice(rows, int(n), int(s), out)
    return out


@njit(cache=True, nogil=True)
def _lut_onehot(O, DO, chi, o, out):  # pragma: no cover - compiled
    n, size = O.shape
    m = size - 1
    one = np.uint64(1)
    two = np.uint64(2)
    for e in range(n):
        c = chi[e]
        oe = o[e]
        sg = one - two * oe
        for k in range(size):
            i0 = (c - k) & m
            i1 = (c - k - 1) & m
            v0 = O[e, i0]
            v1 = O[e, i1]
            b0 = oe * v0 + sg * DO[e, i0]
            b1 = oe * v1 + sg * DO[e, i1]
            out[e, k] = v0 + b1 - b0


def lut_onehot(O: np.ndarray, DO: np.ndarray, chi: np.ndarray, o: np.ndarray) -> np.ndarray:
    """Shares of onehot(m)_k = V_k + [b V_(k+1)] - [b V_k] with V_k = O[(chi - k) mod S] and
    [b V] = o V + (1 - 2o) [d V] (``functions.SplitJob``); O, DO: (n, S) shares, chi, o public (n,)."""
    O = np.ascontiguousarray(O, dtype=np.uint64)
    DO = np.ascontiguousarray(DO, dtype=np.uint64)
    out = np.empty_like(O)
    if O.size:
        _lut_onehot(O, DO, np.ascontiguousarray(chi, dtype=np.int64), np.ascontiguousarray(o, dtype=np.uint64), out)
    return out


@njit(cache=True, nogil=True)
def _lut_rotate(O, chi, out):  # pragma: no cover - compiled
    n, size = O.shape
    m = size - 1
    for e in range(n):
        c = chi[e]
        for k in range(size):
            out[e, k] = O[e, (c - k) & m]


def lut_rotate(O: np.ndarray, chi: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Shares of V with V_k = O[(chi - k) mod S] (``functions.window_split``): O (n, S) shares, S a power
    of two, chi public (n,). A rotation of each row, so V is the one-hot of (chi - rho) mod S if O is rho's.
    ``out``: a C-contiguous (n, S) uint64 array to write V into (e.g. rows of a larger one)."""
    O = np.ascontiguousarray(O, dtype=np.uint64)
    if out is None:
        out = np.empty_like(O)
    elif out.shape != O.shape or out.dtype != np.uint64 or not out.flags.c_contiguous:
        raise ValueError("lut_rotate: out must be a C-contiguous uint64 array of O's shape")
    if O.size:
        _lut_rotate(O, np.ascontiguousarray(chi, dtype=np.int64), out)
    return out
