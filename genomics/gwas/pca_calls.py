"""A site's hard calls in the layout of the pooled PCA's int8 products, built in two passes.

The operator (``pca_operator.StandardisedCalls``) multiplies by G (M x n_s, the ALT dosage of each
call, 0 where the call is missing) from both sides, so it keeps G and its transpose G' (one byte per
call each: the VNNI kernel contracts over a row's contiguous bytes), the missing calls as a CSR list
per variant, and the pooled PCA needs per variant the ALT dosage sum and the call count and per
sample its missing calls (``pca_pooled``). ``OperatorCalls`` builds all of them:

- from a .bed site's packed two-bit rows (``PackedCalls``): a count pass over the packed bytes
  (byte tables), then per band of 64 variants each row decoded four calls at a time into a scratch
  band that stays in cache, copied to G and transposed into G' by 8 x 8 byte blocks in 64-bit words
  (three butterfly steps); no int8 matrix in between;
- from int8 calls (-1 missing; any other reader), in place: the same bands, the calls copied in.

At 96,000 x 3,334 with 1% missing calls (one thread, warm): 0.32-0.37 s from packed rows, 0.28-0.32 s
from int8 calls, where decoding to int8 (0.06-0.11 s), counting and splitting off the missing calls with
a transpose by scalar 64 x 64 tiles took 0.63-0.72 s; the transpose alone 0.32-0.36 s by tiles, 0.10-0.13
s by words from the aligned band (0.31-0.36 s by words read from G's unaligned rows).
"""
from __future__ import annotations

import numpy as np
from cipherome.mpc.jit import njit

from cipherome.genomics.io.packed import CODE_TO_DOSAGE, PackedCalls
from cipherome.genomics.local import call_tables

__all__ = ["OperatorCalls", "count_int8_calls"]

_BAND = 64  # variants per band: 64 bytes of each G' row written at once (one cache line)
assert _BAND == call_tables.CALLS_PER_BYTE * call_tables.CHUNK  # a band is one chunk of G' codes
_CODES = ((np.arange(256)[:, None] >> (2 * np.arange(4))) & 3).astype(np.uint8)  # byte -> its four codes
_CALLS = np.where(CODE_TO_DOSAGE[_CODES] < 0, 0, CODE_TO_DOSAGE[_CODES]).astype(np.uint32)
#: byte -> its four calls as bytes of a little-endian word (missing -> 0)
_BYTE_CALLS = (_CALLS << (8 * np.arange(4, dtype=np.uint32))).sum(axis=1).astype(np.uint32)
#: byte -> the ALT dosage sum of its four calls (missing count 0)
_BYTE_ALT = _CALLS.sum(axis=1).astype(np.int64)
#: byte -> the number of missing codes among its four
_BYTE_MISS = (CODE_TO_DOSAGE[_CODES] < 0).sum(axis=1).astype(np.int64)
_M1, _M2, _M4 = np.uint64(0x00FF00FF00FF00FF), np.uint64(0x0000FFFF0000FFFF), np.uint64(0x00000000FFFFFFFF)
_S8, _S16, _S32 = np.uint64(8), np.uint64(16), np.uint64(32)


class OperatorCalls:
    """``g`` (M, n_s) uint8 calls (0 where missing), ``gt`` (n_s, M) = g', ``miss_ptr`` (M + 1,) and
    ``miss_idx`` the missing samples of each variant (CSR, ascending), ``alt`` and ``obs`` (M,) the ALT
    dosage sum and call count per variant (float64, as ``pca_pooled.call_counts``), ``missing`` (n_s,)
    the missing calls per sample."""

    def __init__(self, g, gt, miss_ptr, miss_idx, alt, obs, missing):
        self.g, self.gt, self.miss_ptr, self.miss_idx = g, gt, miss_ptr, miss_idx
        self.alt, self.obs, self.missing = alt, obs, missing

    @property
    def shape(self) -> tuple[int, int]:
        """(M, n_s): variants and samples (whatever the layout)."""
        return self.alt.shape[0], self.missing.shape[0]

    @property
    def codes_layout(self) -> bool:
        """True when built with ``codes=True``: ``g`` and ``gt`` hold base-3 codes (``call_tables.pack``)."""
        return self.g.ndim == 3

    @classmethod
    def build(cls, calls, codes: bool = False) -> "OperatorCalls":
        """From ``PackedCalls`` or int8 calls (M, n_s), -1 missing (turned into G in place: the caller
        must not use them afterwards). ``codes``: ``g`` and ``gt`` as base-3 codes four calls per byte
        (``genomics.local.call_tables.pack`` of G and of G'), built band by band without G or G'."""
        if isinstance(calls, PackedCalls):
            packed, n = np.ascontiguousarray(calls.packed, dtype=np.uint8), int(calls.n_samples)
            m = packed.shape[0]
            alt, obs = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
            _count_packed(packed, n, _BYTE_ALT, _BYTE_MISS, _CODES, alt, obs)
            int8, missing = np.empty((0, 0), dtype=np.int8), None
            g = np.empty((0 if codes else m, n), dtype=np.uint8)
        else:
            int8 = np.ascontiguousarray(calls)
            if int8.dtype != np.int8 or int8.ndim != 2:
                raise ValueError(f"OperatorCalls: int8 (M, n) calls expected, got {int8.dtype}{int8.shape}")
            (m, n), packed, g = int8.shape, np.empty((0, 0), dtype=np.uint8), int8.view(np.uint8)
            alt, obs = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
            missing = np.zeros(n, dtype=np.int64)
            count_int8_calls(int8, alt, obs, missing)
        ptr = np.concatenate([[0], np.cumsum(n - obs)]).astype(np.int64)
        idx = np.empty(int(ptr[-1]), dtype=np.int32)
        scratch = np.zeros((_BAND, max(8, (n + 7) // 8 * 8)), dtype=np.uint8)  # rows padded to whole words
        if codes:
            g, gt = call_tables.empty_codes(m, n), call_tables.empty_codes(n, m)
            _code_bands(packed, int8, n, _BYTE_CALLS, _BYTE_MISS, ptr, idx, scratch, g, gt)
        else:
            gt = np.empty((n, m), dtype=np.uint8)
            _bands(packed, int8, n, _BYTE_CALLS, _BYTE_MISS, ptr, idx, scratch, g, _word_view(gt), gt)
        if missing is None:
            missing = np.bincount(idx, minlength=n).astype(np.int64)
        return cls(g, gt, ptr, idx, alt.astype(np.float64), obs.astype(np.float64), missing)


def _word_view(gt: np.ndarray) -> np.ndarray:
    """G' (n, M) as 64-bit words along each row (M // 8 per row; rows need not start on a word)."""
    n, m = gt.shape
    return np.ndarray((n, m // 8), dtype=np.uint64, buffer=gt, strides=(max(m, 1), 8))


@njit(cache=True, nogil=True)
def count_int8_calls(g, alt, obs, miss):  # pragma: no cover - compiled
    """Per variant (row of int8 calls g, -1 missing) the ALT dosage sum and the call count; per sample
    (column) its missing calls, added to ``miss``."""
    m, n = g.shape
    for j in range(m):
        a = 0
        c = 0
        for i in range(n):
            x = g[j, i]
            if x >= 0:
                a += x
                c += 1
            else:
                miss[i] += 1
        alt[j] = a
        obs[j] = c


@njit(cache=True, nogil=True)
def _count_packed(packed, n, byte_alt, byte_miss, codes, alt, obs):  # pragma: no cover - compiled
    """Per row the ALT sum and call count: whole bytes by table, the last byte's live codes one by one."""
    full = n // 4
    for j in range(packed.shape[0]):
        a = 0
        c = 0
        for k in range(full):
            b = packed[j, k]
            a += byte_alt[b]
            c += byte_miss[b]
        for t in range(n - 4 * full):
            code = codes[packed[j, full], t]
            if code == 1:
                c += 1
            else:
                a += 2 if code == 0 else (1 if code == 2 else 0)
        alt[j] = a
        obs[j] = n - c


@njit(cache=True, nogil=True, inline="always")
def _transpose8(a0, a1, a2, a3, a4, a5, a6, a7):  # pragma: no cover - compiled
    """The 8 x 8 byte block whose row r is word a_r (byte c = column c) transposed: word c holds column c."""
    t = ((a0 >> _S8) ^ a1) & _M1
    a1 ^= t
    a0 ^= t << _S8
    t = ((a2 >> _S8) ^ a3) & _M1
    a3 ^= t
    a2 ^= t << _S8
    t = ((a4 >> _S8) ^ a5) & _M1
    a5 ^= t
    a4 ^= t << _S8
    t = ((a6 >> _S8) ^ a7) & _M1
    a7 ^= t
    a6 ^= t << _S8
    t = ((a0 >> _S16) ^ a2) & _M2
    a2 ^= t
    a0 ^= t << _S16
    t = ((a1 >> _S16) ^ a3) & _M2
    a3 ^= t
    a1 ^= t << _S16
    t = ((a4 >> _S16) ^ a6) & _M2
    a6 ^= t
    a4 ^= t << _S16
    t = ((a5 >> _S16) ^ a7) & _M2
    a7 ^= t
    a5 ^= t << _S16
    t = ((a0 >> _S32) ^ a4) & _M4
    a4 ^= t
    a0 ^= t << _S32
    t = ((a1 >> _S32) ^ a5) & _M4
    a5 ^= t
    a1 ^= t << _S32
    t = ((a2 >> _S32) ^ a6) & _M4
    a6 ^= t
    a2 ^= t << _S32
    t = ((a3 >> _S32) ^ a7) & _M4
    a7 ^= t
    a3 ^= t << _S32
    return a0, a1, a2, a3, a4, a5, a6, a7


@njit(cache=True, nogil=True)
def _band_to_gt(scratch, rows, j0, gt64, gt):  # pragma: no cover - compiled
    """G'[:, j0:j0 + rows] = scratch[:rows, :n]': whole bands by 8 x 8 word blocks, a short band byte by byte."""
    n = gt.shape[0]
    if rows < scratch.shape[0]:
        for r in range(rows):
            for i in range(n):
                gt[i, j0 + r] = scratch[r, i]
        return
    s64 = scratch.view(np.uint64)
    n8 = n // 8
    w0 = j0 // 8
    for w in range(s64.shape[1]):
        i0 = 8 * w
        for jb in range(0, rows, 8):
            c0, c1, c2, c3, c4, c5, c6, c7 = _transpose8(s64[jb, w], s64[jb + 1, w], s64[jb + 2, w], s64[jb + 3, w],
                                                         s64[jb + 4, w], s64[jb + 5, w], s64[jb + 6, w],
                                                         s64[jb + 7, w])
            wc = w0 + jb // 8
            if w < n8:
                gt64[i0, wc] = c0
                gt64[i0 + 1, wc] = c1
                gt64[i0 + 2, wc] = c2
                gt64[i0 + 3, wc] = c3
                gt64[i0 + 4, wc] = c4
                gt64[i0 + 5, wc] = c5
                gt64[i0 + 6, wc] = c6
                gt64[i0 + 7, wc] = c7
            else:  # the last, partial word of samples
                cs = (c0, c1, c2, c3, c4, c5, c6, c7)
                for c in range(n - i0):
                    gt64[i0 + c, wc] = cs[c]


@njit(cache=True, nogil=True, inline="always")
def _packed_row(packed, j, r, n, byte_calls, byte_miss, idx, p, scratch, s32):  # pragma: no cover - compiled
    """Row j decoded four calls per word into scratch row r (missing -> 0, listed from CSR slot p on)."""
    for k in range(packed.shape[1]):
        b = packed[j, k]
        s32[r, k] = byte_calls[b]
        if byte_miss[b] != 0:
            for t in range(4):
                i = 4 * k + t
                if i < n and (b >> (2 * t)) & 3 == 1:
                    idx[p] = i
                    p += 1
    for i in range(n, scratch.shape[1]):  # the padding codes decode as ALT homozygotes
        scratch[r, i] = 0


@njit(cache=True, nogil=True, inline="always")
def _int8_row(calls, g, j, r, idx, p, scratch):  # pragma: no cover - compiled
    """Int8 row j copied into scratch row r; a missing call (-1) set to 0 there and in G (in place), listed."""
    for i in range(calls.shape[1]):
        x = calls[j, i]
        if x < 0:
            idx[p] = i
            p += 1
            g[j, i] = 0
            scratch[r, i] = 0
        else:
            scratch[r, i] = x


@njit(cache=True, nogil=True)
def _bands(packed, calls, n, byte_calls, byte_miss, ptr, idx, scratch, g, gt64, gt):  # pragma: no cover - compiled
    """Each band of rows: from ``packed`` (two-bit rows; then copied to G) or, if it has no rows, from the
    int8 ``calls`` (G is their uint8 view, changed in place) into ``scratch``; then transposed into G'."""
    from_packed = packed.shape[0] > 0
    m = g.shape[0]
    s32 = scratch.view(np.uint32)
    for j0 in range(0, m, scratch.shape[0]):
        rows = min(scratch.shape[0], m - j0)
        for r in range(rows):
            j = j0 + r
            if from_packed:
                _packed_row(packed, j, r, n, byte_calls, byte_miss, idx, ptr[j], scratch, s32)
                for i in range(n):
                    g[j, i] = scratch[r, i]
            else:
                _int8_row(calls, g, j, r, idx, ptr[j], scratch)
        _band_to_gt(scratch, rows, j0, gt64, gt)


@njit(cache=True, nogil=True)
def _code_bands(packed, calls, n, byte_calls, byte_miss, ptr, idx, scratch, codes, codes_t):  # pragma: no cover
    """``_bands`` into the base-3 code layout: each band of ``_BAND`` rows decoded into ``scratch`` (from
    ``packed`` or, if it has no rows, the int8 ``calls``, whose missing calls become 0 in place), then its
    rows packed into ``codes`` and its columns into ``codes_t`` (a band is one chunk of G' codes)."""
    from_packed = packed.shape[0] > 0
    m = codes.shape[1]
    s32 = scratch.view(np.uint32)
    g = calls.view(np.uint8)
    for j0 in range(0, m, scratch.shape[0]):
        rows = min(scratch.shape[0], m - j0)
        for r in range(rows):
            if from_packed:
                _packed_row(packed, j0 + r, r, n, byte_calls, byte_miss, idx, ptr[j0 + r], scratch, s32)
            else:
                _int8_row(calls, g, j0 + r, r, idx, ptr[j0 + r], scratch)
            call_tables.pack_row(scratch[r], n, codes, j0 + r)
        scratch[rows:] = 0
        call_tables.pack_columns(scratch, n, codes_t, j0)
