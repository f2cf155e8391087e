"""The ring Z_{2^64} on numpy ``uint64`` arrays, and fixed-point encoding into it.

Ring elements are numpy ``uint64`` values: addition, subtraction and
multiplication wrap around modulo 2^64, so numpy's own arithmetic *is* the ring
arithmetic. A real number x is encoded with ``frac`` fractional bits as the ring
element round(x * 2^frac) mod 2^64 and decoded by reading the element as a
signed (two's complement) int64 and dividing by 2^frac.

Why 64 bits is enough for cipherome's statistics is argued in docs/precision.md.
"""
from __future__ import annotations

import numpy as np

from .kernels import fixed_point

__all__ = [
    "RING_BITS",
    "DEFAULT_FRAC",
    "encode",
    "decode",
    "signed",
    "to_ring",
    "ring_scalar",
]

RING_BITS = 64
#: default number of fractional bits of fixed-point values (resolution 2^-20 ~ 9.5e-7)
DEFAULT_FRAC = 20

_U64 = np.uint64
_MOD = 1 << RING_BITS


def encode(x, frac: int) -> np.ndarray:
    """Encode real (or integer) values as fixed-point ring elements.

    x: array-like of floats or ints, any shape. Returns a ``uint64`` array of the
    same shape holding round(x * 2^frac) mod 2^64. Raises ``OverflowError`` if a
    value does not fit in the signed range |x * 2^frac| < 2^62 that every
    protocol of cipherome assumes (one bit of head-room for truncation).
    """
    a = np.asarray(x)
    if a.dtype.kind in "iub" and frac == 0:
        return a.astype(np.int64).view(_U64) if a.dtype != _U64 else a.copy()
    scaled = fixed_point(a, float(1 << frac), 2.0**62)
    if scaled is None:
        raise OverflowError(
            f"value out of fixed-point range: |x| must be < 2^{62 - frac} with {frac} fractional bits"
        )
    return scaled.view(_U64)


def signed(u: np.ndarray) -> np.ndarray:
    """View ring elements as signed int64 (two's complement), without copying."""
    return np.asarray(u, dtype=_U64).view(np.int64)


def decode(u: np.ndarray, frac: int) -> np.ndarray:
    """Decode ring elements: int64 array if ``frac == 0``, else float64 x / 2^frac."""
    s = signed(u)
    if frac == 0:
        return s.copy()
    return s.astype(np.float64) / float(1 << frac)


def to_ring(x) -> np.ndarray:
    """Integers (any signed/unsigned dtype or Python ints) as ring elements mod 2^64."""
    a = np.asarray(x)
    if a.dtype == _U64:
        return a
    if a.dtype.kind == "O" or (a.dtype.kind in "iu" and a.dtype.itemsize > 8):
        return np.vectorize(lambda v: int(v) % _MOD, otypes=[_U64])(a)
    return a.astype(np.int64).view(_U64)


def ring_scalar(v: int) -> np.uint64:
    """A Python integer (possibly negative or >= 2^64) as a ``np.uint64`` scalar mod 2^64."""
    return _U64(int(v) % _MOD)
