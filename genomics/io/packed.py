"""PLINK 1 two-bit genotype codes: int8 ALT dosages packed four to a byte, and back.

A packed row holds ``ceil(n / 4)`` bytes; sample ``i`` sits in bits ``2*(i % 4)`` and
``2*(i % 4) + 1`` of byte ``i // 4`` with the .bed meaning of the codes (0b00 two
copies of A1 = ALT, 0b01 missing, 0b10 het, 0b11 two copies of A2 = REF).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from cipherome.genomics.local.threads import twin_kernel

__all__ = [
    "CODE_HOM_ALT",
    "CODE_MISSING",
    "CODE_HET",
    "CODE_HOM_REF",
    "CODE_TO_DOSAGE",
    "packed_width",
    "pack_dosage",
    "unpack_dosage",
    "swap_alleles",
    "PackedCalls",
    "subset_packed",
]

CODE_HOM_ALT = 0b00
CODE_MISSING = 0b01
CODE_HET = 0b10
CODE_HOM_REF = 0b11

#: code -> ALT dosage (int8, -1 missing)
CODE_TO_DOSAGE = np.array([2, -1, 1, 0], dtype=np.int8)
#: (dosage + 1) -> code, for dosage in -1, 0, 1, 2
_DOSAGE_TO_CODE = np.array([CODE_MISSING, CODE_HOM_REF, CODE_HET, CODE_HOM_ALT], dtype=np.uint8)
#: byte -> the four dosages it encodes
_BYTE_TO_DOSAGES = CODE_TO_DOSAGE[(np.arange(256)[:, None] >> (2 * np.arange(4))) & 3].astype(np.int8)
#: byte -> the same byte with ALT and REF exchanged (codes 0b00 <-> 0b11)
_SWAP_BYTE = np.array(
    [sum(((3 - c) if c in (0, 3) else c) << (2 * t) for t, c in enumerate((b >> (2 * np.arange(4))) & 3))
     for b in range(256)],
    dtype=np.uint8,
)


def packed_width(n_samples: int) -> int:
    """Bytes per packed row for ``n_samples`` samples: ``ceil(n_samples / 4)``."""
    return (int(n_samples) + 3) // 4


def _pack_kernel(dosage, lut, out):  # pragma: no cover - compiled
    m, n = dosage.shape
    nfull = n // 4
    bad = 0
    for v in prange(m):
        row = dosage[v]
        nbad = 0
        for j in range(nfull):
            byte = 0
            for t in range(4):
                g = row[4 * j + t]
                if g < -1 or g > 2:
                    nbad += 1
                    g = -1
                byte |= lut[g + 1] << (2 * t)
            out[v, j] = byte
        if nfull < out.shape[1]:
            byte = 0
            for t in range(n - 4 * nfull):
                g = row[4 * nfull + t]
                if g < -1 or g > 2:
                    nbad += 1
                    g = -1
                byte |= lut[g + 1] << (2 * t)
            out[v, nfull] = byte  # padding bits stay 0, as the .bed format says
        bad += nbad
    return bad


def _unpack_kernel(packed, n, lut4, out):  # pragma: no cover - compiled
    m = packed.shape[0]
    nfull = n // 4
    for v in prange(m):
        row = packed[v]
        orow = out[v]
        for j in range(nfull):
            x = row[j]
            orow[4 * j] = lut4[x, 0]
            orow[4 * j + 1] = lut4[x, 1]
            orow[4 * j + 2] = lut4[x, 2]
            orow[4 * j + 3] = lut4[x, 3]
        for i in range(4 * nfull, n):
            orow[i] = lut4[row[nfull], i - 4 * nfull]


def _unpack_subset_kernel(packed, index, lut, out):  # pragma: no cover - compiled
    m = packed.shape[0]
    k = index.shape[0]
    for v in prange(m):
        row = packed[v]
        for s in range(k):
            i = index[s]
            out[v, s] = lut[(row[i >> 2] >> (2 * (i & 3))) & 3]


def _subset_kernel(packed, index, out):  # pragma: no cover - compiled
    m = packed.shape[0]
    k = index.shape[0]
    for v in prange(m):
        row = packed[v]
        orow = out[v]
        for j in range(0, k, 4):
            byte = 0
            for t in range(min(4, k - j)):
                i = index[j + t]
                byte |= ((row[i >> 2] >> (2 * (i & 3))) & 3) << (2 * t)
            orow[j >> 2] = byte


def _swap_kernel(packed, flip, lut, out):  # pragma: no cover - compiled
    m, w = packed.shape
    for v in prange(m):
        if flip[v]:
            for j in range(w):
                out[v, j] = lut[packed[v, j]]
        else:
            for j in range(w):
                out[v, j] = packed[v, j]


_pack = twin_kernel(_pack_kernel)
_unpack = twin_kernel(_unpack_kernel)
_unpack_subset = twin_kernel(_unpack_subset_kernel)
_swap = twin_kernel(_swap_kernel)
_subset = twin_kernel(_subset_kernel)


def pack_dosage(dosage: np.ndarray) -> np.ndarray:
    """Pack ALT dosages into two-bit codes.

    dosage: ``(m, n)`` int8 in {-1, 0, 1, 2} (-1 missing).
    Returns ``(m, ceil(n / 4))`` uint8, padding bits 0. Raises ValueError on other values.
    """
    g = np.ascontiguousarray(dosage, dtype=np.int8)
    if g.ndim != 2:
        raise ValueError(f"dosage must be 2-D (variants, samples), got shape {g.shape}")
    out = np.empty((g.shape[0], packed_width(g.shape[1])), dtype=np.uint8)
    if g.size and _pack(g, _DOSAGE_TO_CODE, out):
        raise ValueError("dosage values must be 0, 1, 2 or -1 (missing)")
    return out


def unpack_dosage(packed: np.ndarray, n_samples: int, samples: np.ndarray | None = None) -> np.ndarray:
    """Decode two-bit codes to ALT dosages.

    packed: ``(m, ceil(n_samples / 4))`` uint8. samples: optional ``(s,)`` integer
    indices (< n_samples) selecting and ordering the output columns.
    Returns ``(m, n_samples)`` or ``(m, s)`` int8 in {-1, 0, 1, 2}.
    """
    p = np.ascontiguousarray(packed, dtype=np.uint8)
    if p.ndim != 2 or p.shape[1] != packed_width(n_samples):
        raise ValueError(f"packed shape {p.shape} does not fit {n_samples} samples")
    if samples is None:
        out = np.empty((p.shape[0], int(n_samples)), dtype=np.int8)
        if out.size:
            _unpack(p, int(n_samples), _BYTE_TO_DOSAGES, out)
        return out
    idx = np.ascontiguousarray(samples, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_samples):
        raise ValueError(f"sample indices must lie in [0, {n_samples})")
    out = np.empty((p.shape[0], idx.size), dtype=np.int8)
    if out.size:
        _unpack_subset(p, idx, CODE_TO_DOSAGE, out)
    return out


def swap_alleles(packed: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Exchange REF and ALT in the rows where ``flip`` is True (dosage g -> 2 - g).

    packed: ``(m, w)`` uint8; flip: ``(m,)`` bool. Returns a new ``(m, w)`` uint8 array.
    """
    p = np.ascontiguousarray(packed, dtype=np.uint8)
    f = np.ascontiguousarray(flip, dtype=np.bool_)
    if p.ndim != 2 or f.shape != (p.shape[0],):
        raise ValueError(f"flip shape {f.shape} does not match packed shape {p.shape}")
    out = np.empty_like(p)
    if p.size:
        _swap(p, f, _SWAP_BYTE, out)
    return out


class PackedCalls(NamedTuple):
    """Hard calls of ``n_samples`` samples as packed two-bit rows ``(m, ceil(n_samples / 4))``, the
    form the counting kernels (``genomics.local.stats``) read without decoding to int8 first."""

    packed: np.ndarray
    n_samples: int


def subset_packed(packed: np.ndarray, n_samples: int, samples: np.ndarray) -> np.ndarray:
    """The two-bit codes of the samples ``samples`` (indices < n_samples, in that order), packed anew.

    Returns ``(m, ceil(len(samples) / 4))`` uint8 with padding bits 0, as ``pack_dosage`` of the
    decoded subset would give, in one pass over the selected codes (no int8 array in between).
    """
    p = np.ascontiguousarray(packed, dtype=np.uint8)
    if p.ndim != 2 or p.shape[1] != packed_width(n_samples):
        raise ValueError(f"packed shape {p.shape} does not fit {n_samples} samples")
    idx = np.ascontiguousarray(samples, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_samples):
        raise ValueError(f"sample indices must lie in [0, {n_samples})")
    out = np.empty((p.shape[0], packed_width(idx.size)), dtype=np.uint8)
    if out.size:
        _subset(p, idx, out)
    return out
