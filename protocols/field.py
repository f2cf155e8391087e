"""Arithmetic in the prime field F_p, p = 2^61 - 1 (a Mersenne prime), on uint64 arrays.

The ring Z_2^64 of the engine has zero divisors: a product of non-zero differences
can vanish, and a random multiple of x is uniform only over the multiples of x's
largest power of two, which would leak low bits. Protocols that need "zero iff
equal" and "uniform otherwise" (:mod:`protocols.psi`) compute here instead.

Reduction uses 2^61 = 1 (mod p): x = (x & p) + (x >> 61). A product of two
elements (< 2^122) is split into 32-bit halves, a = a1 2^32 + a0:
a b = a1 b1 2^64 + (a1 b0 + a0 b1) 2^32 + a0 b0, with 2^64 = 8 and
m 2^32 = (m >> 29) + (m & (2^29 - 1)) 2^32 (mod p). Kernels are Numba, GIL-free.
"""
from __future__ import annotations

import numpy as np
from cipherome.mpc.jit import njit

__all__ = ["P", "to_field", "add", "sub", "powers", "poly_from_roots", "row_dot"]

#: the field's modulus 2^61 - 1
P = np.uint64((1 << 61) - 1)
_M32 = np.uint64(0xFFFFFFFF)
_M29 = np.uint64((1 << 29) - 1)
_S61 = np.uint64(61)
_S32 = np.uint64(32)
_S29 = np.uint64(29)
_S3 = np.uint64(3)


@njit(cache=True, nogil=True, inline="always")
def _fold(r):  # pragma: no cover - compiled
    return r - P if r >= P else r  # r < 2p -> r mod p


@njit(cache=True, nogil=True)
def _to_field(x, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _fold((x[i] & P) + (x[i] >> _S61))  # 2^61 = 1 (mod p)


@njit(cache=True, nogil=True)
def _add(x, y, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _fold(x[i] + y[i])


@njit(cache=True, nogil=True)
def _sub(x, y, out):  # pragma: no cover - compiled
    for i in range(x.size):
        out[i] = _fold(x[i] + (P - y[i]))


def _elementwise(kernel, *operands) -> np.ndarray:
    """Run a compiled elementwise kernel on uint64 operands broadcast to one shape."""
    ops = np.broadcast_arrays(*[np.asarray(a, np.uint64) for a in operands])
    out = np.empty(ops[0].shape, np.uint64)
    kernel(*[np.ascontiguousarray(a).reshape(-1) for a in ops], out.reshape(-1))
    return out


def to_field(x: np.ndarray) -> np.ndarray:
    """Uniform ring elements to (almost, 2^-61 apart from) uniform field elements: x mod p."""
    return _elementwise(_to_field, x)


def add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x + y) mod p for field elements."""
    return _elementwise(_add, x, y)


def sub(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x - y) mod p for field elements."""
    return _elementwise(_sub, x, y)


@njit(cache=True, nogil=True, inline="always")
def _mulmod(a, b):  # pragma: no cover - compiled
    a0, a1 = a & _M32, a >> _S32
    b0, b1 = b & _M32, b >> _S32
    mid = a1 * b0 + a0 * b1
    low = a0 * b0
    r = (a1 * b1 << _S3) + (mid >> _S29) + ((mid & _M29) << _S32) + (low & P) + (low >> _S61)
    return _fold((r & P) + (r >> _S61))


@njit(cache=True, nogil=True)
def _powers(a, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        acc = a[i]
        for k in range(out.shape[1]):
            out[i, k] = acc
            acc = _mulmod(acc, a[i])


def powers(a: np.ndarray, k: int) -> np.ndarray:
    """(m, k): a^1, ..., a^k of each element of a (m,)."""
    a = np.ascontiguousarray(a, np.uint64)
    out = np.empty((a.size, int(k)), np.uint64)
    _powers(a, out)
    return out


@njit(cache=True, nogil=True)
def _poly(roots, scale, out):  # pragma: no cover - compiled
    for i in range(roots.shape[0]):
        out[i, :] = 0
        out[i, 0] = scale[i]  # c(X) = scale; then c(X) <- c(X) (X - r) for each root r
        deg = 0
        for j in range(roots.shape[1]):
            if roots[i, j] == 0:  # an empty place: no factor
                continue
            neg = P - roots[i, j]
            deg += 1
            for k in range(deg, 0, -1):
                out[i, k] = _mulmod(out[i, k], neg) + out[i, k - 1]
                if out[i, k] >= P:
                    out[i, k] -= P
            out[i, 0] = _mulmod(out[i, 0], neg)


def poly_from_roots(roots: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(m, L+1) coefficients c_0..c_L of scale_i prod_j (X - roots[i, j]) per row of roots (m, L),
    over the row's non-zero roots only (0 marks an empty place; its coefficients above the row's
    degree are 0).

    Each row is updated by one root at a time (d^2 / 2 products for d roots)."""
    roots = np.ascontiguousarray(roots, np.uint64)
    out = np.empty((roots.shape[0], roots.shape[1] + 1), np.uint64)
    _poly(roots, np.ascontiguousarray(scale, np.uint64), out)
    return out


@njit(cache=True, nogil=True)
def _row_dot(x, y, out):  # pragma: no cover - compiled
    for i in range(x.shape[0]):
        acc = np.uint64(0)
        for k in range(x.shape[1]):
            acc += _mulmod(x[i, k], y[i, k])
            if acc >= P:
                acc -= P
        out[i] = acc


def row_dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m,): sum_k x[i, k] y[i, k] mod p for (m, k) arrays."""
    x = np.ascontiguousarray(x, np.uint64)
    y = np.ascontiguousarray(y, np.uint64)
    out = np.empty(x.shape[0], np.uint64)
    _row_dot(x, y, out)
    return out
