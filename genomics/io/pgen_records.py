"""PLINK 2 .pgen hard-call records decoded straight to .bed packed codes or int8 calls, without pgenlib.

A .pgen stores each variant's hard calls as a 2-bit "main track" (codes 0 hom REF, 1 het,
2 hom ALT, 3 missing), compressed per record in one of a few ways chosen by its record type
(``vrtype``, PLINK 2's format spec in ``pgenlib_misc.h``): plain 2-bit; a 1-bit track of the
two most common calls plus a list of the others; only a list of the calls that differ from
one value; or a list of the calls that differ from an earlier record (LD compression). This
module reads the file header (record offsets and types) and the records' bytes
(:meth:`PgenRecords.read`, giving a :class:`RecordBytes`), and turns the main tracks of
biallelic records into either the .bed codes of :mod:`~cipherome.genomics.io.packed` or
int8 ALT counts in one numba pass, which costs less than pgenlib's own decoding to int8
(and, for int8, less than decoding to packed codes and unpacking those). One record walker
serves both outputs; the few writers that differ (fill a row, set one sample, expand a 2-bit
or 1-bit track, exchange hom REF/hom ALT) are chosen by the output row's dtype when numba
compiles it. Multi-allelic records, dosages and layouts this module does not handle stay with
pgenlib (:class:`~cipherome.genomics.io.pgen.PgenReader` decides).

Code map: a .pgen code v in 0..3 becomes the .bed code ``(v ^ 3) ^ (v >> 1)`` (0 -> 0b11
CODE_HOM_REF, 1 -> 0b10 CODE_HET, 2 -> 0b00 CODE_HOM_ALT, 3 -> 0b01 CODE_MISSING); on a
whole byte of four codes that is ``b ^ 0xFF ^ ((b >> 1) & 0x55)``; and the int8 call
``v`` (3 -> -1). A .bed code c goes back to a .pgen code as ``h ^ (h >> 1)``, ``h = c ^ 3``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import prange, types
from numba.extending import overload

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import CHANGED_KIND
from cipherome.genomics.io.packed import packed_width
from cipherome.genomics.local.threads import twin_kernel
from cipherome.mpc.jit import njit

__all__ = ["PgenRecords", "RecordBytes", "PGEN_KIND"]

#: public kind of an InputError for a .pgen that is not what its header or its .pvar/.psam say
PGEN_KIND = "its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid"

_VBLOCK = 1 << 16  # variants per header block (kPglVblockSize)
_DIFFLIST_GROUP = 64  # sample IDs per difflist group (kPglDifflistGroupSize)


def _expand_table(lanes: np.ndarray, bits_per_lane: int) -> np.ndarray:
    """``[c0, c1, byte]`` -> eight lanes of ``bits_per_lane`` bits: lane t holds ``lanes[c1]`` where bit t of byte is set, else ``lanes[c0]``."""
    t = np.zeros((4, 4, 256), dtype=np.uint64)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    for c0 in range(4):
        for c1 in range(4):
            t[c0, c1] = (np.where(bits, lanes[c1], lanes[c0]).astype(np.uint64) << (bits_per_lane * np.arange(8, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)
    return t


#: .pgen code -> .bed code, and -> int8 ALT count (as an unsigned byte, 0xFF = -1 missing)
_TO_BED = np.array([0b11, 0b10, 0b00, 0b01])
_TO_CALL = np.array([0, 1, 2, 0xFF])
#: the 1-bit track expanded eight samples (one byte) at a time, to .bed codes and to int8 calls
_EXPAND = _expand_table(_TO_BED, 2)
_EXPAND_CALLS = _expand_table(_TO_CALL, 8)

# kernel error codes (per record)
_OK, _BAD = 0, 1


@njit(cache=True, nogil=True)
def _code(v):  # pragma: no cover - compiled
    """.pgen code -> .bed code."""
    return (v ^ 3) ^ (v >> 1)


@njit(cache=True, nogil=True)
def _call(v):  # pragma: no cover - compiled
    """.pgen code -> int8 ALT count (3 missing -> -1)."""
    return v if v < 3 else -1


@njit(cache=True, nogil=True)
def _spread(x):  # pragma: no cover - compiled
    """16 bits = eight 2-bit .pgen codes -> eight int8 calls in one uint64 (code 3 -> 0xFF, i.e. -1)."""
    y = (x & np.uint64(0xFF)) | ((x & np.uint64(0xFF00)) << np.uint64(24))
    y = (y & np.uint64(0x0000000F0000000F)) | ((y & np.uint64(0x000000F0000000F0)) << np.uint64(12))
    y = (y & np.uint64(0x0003000300030003)) | ((y & np.uint64(0x000C000C000C000C)) << np.uint64(6))
    three = y & (y >> np.uint64(1)) & np.uint64(0x0101010101010101)
    return y | (three * np.uint64(0xFF))


# Output writers. One record walker (below) fills either output: a row of .bed packed codes
# (uint8, ceil(n/4) bytes) or a row of int8 calls (n bytes); each writer is a Python stub whose
# numba implementation is chosen by the row's dtype when the walker is compiled.

def _fill(row, n, v):
    """Every sample of ``row`` gets .pgen code ``v``."""


def _put(row, sid, v):
    """Sample ``sid`` of ``row`` gets .pgen code ``v``."""


def _plain(buf, pos, row, n, bed):
    """A 2-bit track of ``n`` codes at ``buf[pos]`` (.pgen codes, or .bed codes if ``bed``) -> ``row``."""


def _one_bit(buf, pos, row, n, tab):
    """A 1-bit track of ``n`` samples at ``buf[pos]`` -> ``row`` through ``tab[byte]`` (eight lanes per byte)."""


def _swap_homs(row, n):
    """Exchange hom REF and hom ALT in ``row``."""


def _is_packed(row):
    return isinstance(row, types.Array) and row.dtype == types.uint8


@overload(_fill)
def _fill_impl(row, n, v):
    if _is_packed(row):
        def fill(row, n, v):
            row[:] = _code(v) * 0x55
            if n & 3:  # padding lanes of the last byte are 0, as in a .bed
                row[row.shape[0] - 1] &= (1 << (2 * (n & 3))) - 1
        return fill
    return lambda row, n, v: row.fill(_call(v))


@overload(_put)
def _put_impl(row, sid, v):
    if _is_packed(row):
        def put(row, sid, v):
            j = sid >> 2
            sh = 2 * (sid & 3)
            row[j] = (np.int64(row[j]) & ~(3 << sh)) | (_code(v) << sh)
        return put

    def put_call(row, sid, v):
        row[sid] = _call(v)
    return put_call


@overload(_plain)
def _plain_impl(buf, pos, row, n, bed):
    if _is_packed(row):
        def plain(buf, pos, row, n, bed):  # whole 8-byte words through the byte formula, then the tail
            w = row.shape[0]
            nw = 0 if bed else w // 8  # a PLINK 1 .bed record: the codes already
            if bed:
                row[:] = buf[pos:pos + w]
            words = row[:8 * nw].view(np.uint64)
            for j in range(nw):
                x = np.uint64(0)
                for t in range(8):
                    x |= np.uint64(buf[pos + 8 * j + t]) << np.uint64(8 * t)
                words[j] = ~x ^ ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
            for j in range(8 * nw, w if not bed else 0):
                b = buf[pos + j]
                row[j] = b ^ 0xFF ^ ((b >> 1) & 0x55)
            if n & 3:
                row[w - 1] &= (1 << (2 * (n & 3))) - 1
        return plain

    def plain_calls(buf, pos, row, n, bed):  # two input bytes -> eight calls in one word
        nw = n // 8
        words = row[:8 * nw].view(np.uint64)
        for j in range(nw):
            x = np.uint64(buf[pos + 2 * j]) | (np.uint64(buf[pos + 2 * j + 1]) << np.uint64(8))
            if bed:  # .bed code c -> .pgen code: h ^ (h >> 1) with h = c ^ 3
                x ^= np.uint64(0xFFFF)
                x ^= (x >> np.uint64(1)) & np.uint64(0x5555)
            words[j] = _spread(x)
        for i in range(8 * nw, n):
            v = (np.int64(buf[pos + (i >> 2)]) >> (2 * (i & 3))) & 3
            if bed:
                v ^= 3
                v ^= v >> 1
            row[i] = _call(v)
    return plain_calls


@overload(_one_bit)
def _one_bit_impl(buf, pos, row, n, tab):
    if _is_packed(row):
        def one_bit(buf, pos, row, n, tab):  # four input bytes -> one 8-byte output word
            w = row.shape[0]
            nb = (n + 7) // 8
            nw = w // 8
            words = row[:8 * nw].view(np.uint64)
            for j in range(nw):
                s4 = pos + 4 * j
                words[j] = (tab[buf[s4]] | (tab[buf[s4 + 1]] << np.uint64(16)) | (tab[buf[s4 + 2]] << np.uint64(32))
                            | (tab[buf[s4 + 3]] << np.uint64(48)))
            for j in range(4 * nw, nb):
                v = tab[buf[pos + j]]
                row[2 * j] = v & np.uint64(0xFF)
                if 2 * j + 1 < w:
                    row[2 * j + 1] = v >> np.uint64(8)
            if n & 3:
                row[w - 1] &= (1 << (2 * (n & 3))) - 1
        return one_bit

    def one_bit_calls(buf, pos, row, n, tab):  # one input byte -> one 8-byte output word
        nw = n // 8
        words = row[:8 * nw].view(np.uint64)
        for j in range(nw):
            words[j] = tab[buf[pos + j]]
        if nw * 8 < n:
            v = tab[buf[pos + nw]]
            for i in range(8 * nw, n):
                row[i] = np.int8(np.uint8((v >> np.uint64(8 * (i - 8 * nw))) & np.uint64(0xFF)))
    return one_bit_calls


@overload(_swap_homs)
def _swap_homs_impl(row, n):
    if _is_packed(row):
        def swap(row, n):  # exchange 0b11 and 0b00 (lanes whose two bits are equal)
            for j in range(row.shape[0]):
                x = np.int64(row[j])
                eq = ~(x ^ (x >> 1)) & 0x55
                row[j] = x ^ (eq | (eq << 1))
            if n & 3:  # padding lanes 0b00 became 0b11
                row[row.shape[0] - 1] &= (1 << (2 * (n & 3))) - 1
        return swap

    def swap_calls(row, n):
        for i in range(n):
            if row[i] >= 0:
                row[i] = 2 - row[i]
    return swap_calls


@njit(cache=True, nogil=True)
def _vint(buf, pos, end):  # pragma: no cover - compiled
    """PLINK 2's little-endian base-128 integer at ``buf[pos]``: (value, next pos); value -1 if cut or too long."""
    v = 0
    shift = 0
    while pos < end and shift < 35:
        b = np.int64(buf[pos])
        pos += 1
        v |= (b & 127) << shift
        if b < 128:
            return v, pos
        shift += 7
    return -1, pos


@njit(cache=True, nogil=True)
def _apply_difflist(buf, pos, end, n, id_bytes, row):  # pragma: no cover - compiled
    """Overwrite the calls a difflist names in ``row`` (either output); returns an error code.

    Layout (``pgenlib_misc.h``): length L (varint); for each group of 64 entries the first
    sample ID (``id_bytes`` bytes, little-endian); one byte per group but the last (a size
    hint, unused here); L 2-bit .pgen codes; then per group 63 varint ID increments.
    """
    L, pos = _vint(buf, pos, end)
    if L < 0 or L > n:
        return _BAD
    if L == 0:
        return _OK
    groups = (L + _DIFFLIST_GROUP - 1) // _DIFFLIST_GROUP
    first_ids = pos
    codes = pos + groups * (id_bytes + 1) - 1
    pos = codes + (L + 3) // 4
    if pos > end:
        return _BAD
    for g in range(groups):
        sid = np.int64(0)
        for b in range(id_bytes):
            sid |= np.int64(buf[first_ids + g * id_bytes + b]) << (8 * b)
        k0 = g * _DIFFLIST_GROUP
        for t in range(min(_DIFFLIST_GROUP, L - k0)):
            if t:
                if pos >= end:
                    return _BAD
                d = np.int64(buf[pos])
                pos += 1
                if d >= 128:  # a longer increment (rare): decode it again in full
                    d, pos = _vint(buf, pos - 1, end)
                    if d < 0:
                        return _BAD
                sid += d
            if sid >= n:
                return _BAD
            k = k0 + t
            _put(row, sid, (np.int64(buf[codes + (k >> 2)]) >> (2 * (k & 3))) & 3)
    return _OK


@njit(cache=True, nogil=True)
def _decode_main(buf, pos, end, low3, n, id_bytes, bed, expand, row):  # pragma: no cover - compiled
    """Decode one record's main track that does not refer to another record into ``row``; error code."""
    if bed or low3 == 0:  # plain 2-bit
        if end - pos < (n + 3) // 4:
            return _BAD
        _plain(buf, pos, row, n, bed)
        return _OK
    if low3 == 1:  # 1 byte (two common codes), 1 bit per sample, then a difflist of the rest
        nb = (n + 7) // 8
        if end - pos < 1 + nb:
            return _BAD
        c = np.int64(buf[pos])
        unset = (c >> 2) & 3
        hi = unset + (c & 3)
        if hi > 3:
            return _BAD
        _one_bit(buf, pos + 1, row, n, expand[unset, hi])
        return _apply_difflist(buf, pos + 1 + nb, end, n, id_bytes, row)
    if low3 == 5:  # every call hom REF, nothing stored
        _fill(row, n, 0)
        return _OK
    if low3 == 4 or low3 == 6 or low3 == 7:  # one common code (low 2 bits) and a difflist
        _fill(row, n, low3 & 3)
        return _apply_difflist(buf, pos, end, n, id_bytes, row)
    return _BAD


def _decode_kernel(buf, offsets, vrtypes, groups, n, id_bytes, plink1, expand, out, err):  # pragma: no cover - compiled
    """Records ``i`` (bytes ``buf[offsets[i]:offsets[i+1]]``, type ``vrtypes[i]``) -> row ``out[i]``.

    ``out`` is uint8 ``(r, ceil(n/4))`` for .bed packed codes (padding lanes 0, as in a
    .bed; ``expand`` = ``_EXPAND``) or int8 ``(r, n)`` for ALT counts, -1 missing
    (``expand`` = ``_EXPAND_CALLS``): the walk is the same, the writers differ.
    ``groups`` (g + 1,) cuts the records into runs that each start with a record standing
    alone and go on with the LD-compressed records (vrtype low bits 010/011) that refer to
    it: one parallel loop over the runs, each run in order. An LD-compressed row is a copy
    of its run's first row with its difflist applied, and for 011 hom REF and hom ALT
    exchanged. ``err[i]`` is 1 where a record does not parse (cut short, an ID beyond the
    sample count; or its run's base did not).
    """
    for g in prange(groups.shape[0] - 1):
        b = groups[g]
        for i in range(b, groups[g + 1]):
            low3 = vrtypes[i] & 7
            row = out[i]
            s = offsets[i]
            e = offsets[i + 1]
            if i > b:  # LD compressed against row b
                if err[b]:
                    err[i] = _BAD
                    continue
                row[:] = out[b]
                err[i] = _apply_difflist(buf, s, e, n, id_bytes, row)
                if low3 == 3:
                    _swap_homs(row, n)
            else:
                err[i] = _decode_main(buf, s, e, low3, n, id_bytes, plink1, expand, row)


_decode = twin_kernel(_decode_kernel)


def _invalid(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}; re-create the fileset with plink2 --make-pgen", kind=PGEN_KIND)


class PgenRecords:
    """The hard-call records of one .pgen, read with ``os.pread`` and decoded to .bed packed codes or int8 calls.

    Build with :meth:`open`, which returns None for a layout left to pgenlib (a separate
    .pgi index, the single-sample header encodings, more than one byte per allele count)
    and raises an :class:`InputError` when the header contradicts the .pvar/.psam counts or
    the file is cut short. ``read(records)`` (bytes now, decoded later), ``packed(records)``
    and ``calls(records)`` serve any record list, but only the main track is decoded: a multi-allelic record's row shows its calls of "REF vs any ALT" (the
    caller reads those records through pgenlib). Attributes: ``path``, ``n_samples``,
    ``n_records``, ``vrtypes`` (uint8 per record), ``offsets`` (int64 file offset of each
    record, plus the end of the last).
    """

    def __init__(self, path: Path, n_samples: int, offsets: np.ndarray, vrtypes: np.ndarray, plink1: bool):
        self.path = Path(path)
        self.n_samples = int(n_samples)
        self.offsets = offsets
        self.vrtypes = vrtypes
        self.n_records = len(vrtypes)
        self._plink1 = bool(plink1)
        self._id_bytes = 1 + (self.n_samples.bit_length() - 1) // 8  # bytes of a sample ID in a difflist
        self._fh = open(self.path, "rb")  # closed by close()
        st = os.fstat(self._fh.fileno())
        self._stamp = (st.st_size, st.st_mtime_ns)

    @classmethod
    def open(cls, path: str | os.PathLike[str], n_samples: int, n_records: int) -> PgenRecords | None:
        """Parse the header of ``path`` (.psam says ``n_samples``, .pvar ``n_records``); None: leave it to pgenlib."""
        path = Path(path)
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 3 or head[:2] != b"\x6c\x1b":
                raise _invalid(path, f"not a PLINK 2 .pgen file (magic bytes {head[:3].hex()})")
            mode = head[2]
            w = packed_width(n_samples)
            if mode == 0x01:  # a PLINK 1 variant-major .bed under another name
                return cls._fixed(path, n_samples, n_records, 3, w, size, True)
            if len(head) < 12:
                raise _invalid(path, f"the file is cut short ({size} bytes, no complete header)")
            m = int.from_bytes(head[3:7], "little")
            n = int.from_bytes(head[7:11], "little")
            ctrl = head[11]
            if mode not in (0x02, 0x03, 0x04, 0x10, 0x11):
                return None  # .pgi index or a mode pgenlib judges
            if m != n_records or n != n_samples:
                raise _invalid(path, f"the header says {m} variants x {n} samples, but the .pvar lists"
                                     f" {n_records} and the .psam {n_samples} (the three files must come from"
                                     " the same plink2 run)")
            if mode < 0x10:
                if ctrl & 63:
                    raise _invalid(path, "fixed-width storage mode with a variable-width header byte")
                start = 12 + ((m + 7) // 8 if ctrl >> 6 == 3 else 0)
                width = w + {0x02: 0, 0x03: 2 * n, 0x04: 4 * n}[mode]
                return cls._fixed(path, n_samples, n_records, start, width, size, False)
            if ctrl & 8 or (ctrl >> 4) & 3 > 1:
                return None  # single-sample fused encodings; >254 ALT alleles
            return cls._variable(path, fh, m, n, ctrl, size)

    @classmethod
    def _fixed(cls, path, n_samples, m, start, width, size, plink1) -> PgenRecords:
        if size != start + m * width:
            raise _invalid(path, f"{size} bytes, but {m} variants x {n_samples} samples need {start + m * width}"
                                 " (truncated, or not the fileset's .pgen)")
        offsets = start + width * np.arange(m + 1, dtype=np.int64)
        return cls(path, n_samples, offsets, np.zeros(m, dtype=np.uint8), plink1)

    @classmethod
    def _variable(cls, path, fh, m, n, ctrl, size) -> PgenRecords:
        """Mode 0x10/0x11: per block of 2^16 variants a file offset, then its record types and lengths."""
        nblocks = (m + _VBLOCK - 1) // _VBLOCK
        len_bytes = (ctrl & 3) + 1
        byte_types = bool(ctrl & 4)  # phase or dosage present: 8-bit record types, else 4-bit
        allele_bytes = (ctrl >> 4) & 3
        nonref = ctrl >> 6 == 3
        counts = [min(_VBLOCK, m - b * _VBLOCK) for b in range(nblocks)]
        per_block = [(c if byte_types else (c + 1) // 2) + c * (len_bytes + allele_bytes) + ((c + 7) // 8 if nonref else 0)
                     for c in counts]
        hlen = 12 + 8 * nblocks + sum(per_block)
        if hlen > size:
            raise _invalid(path, f"the file is cut short ({size} bytes, its header alone needs {hlen})")
        raw = np.frombuffer(fh.read(hlen - 12), dtype=np.uint8)
        block_pos = raw[:8 * nblocks].view("<u8").astype(np.int64)
        offsets = np.empty(m + 1, dtype=np.int64)
        vrtypes = np.empty(m, dtype=np.uint8)
        p = 8 * nblocks
        for b, c in enumerate(counts):
            v0 = b * _VBLOCK
            if byte_types:
                vrtypes[v0:v0 + c] = raw[p:p + c]
                p += c
            else:
                nib = raw[p:p + (c + 1) // 2]
                vrtypes[v0:v0 + c] = np.stack([nib & 15, nib >> 4], axis=1).reshape(-1)[:c]
                p += (c + 1) // 2
            lens = raw[p:p + c * len_bytes].reshape(c, len_bytes).astype(np.int64)
            p += c * (len_bytes + allele_bytes) + ((c + 7) // 8 if nonref else 0)
            lens = (lens << (8 * np.arange(len_bytes, dtype=np.int64))).sum(axis=1)
            offsets[v0] = block_pos[b]
            np.cumsum(lens, out=offsets[v0 + 1:v0 + c + 1])
            offsets[v0 + 1:v0 + c + 1] += block_pos[b]
        if m and (block_pos.min() < hlen or offsets[-1] > size):
            raise _invalid(path, f"the file is cut short or its header is damaged ({size} bytes, its records"
                                 f" end at byte {int(offsets[-1])})")
        if m and (vrtypes[np.arange(0, m, _VBLOCK)] & 6 == 2).any():
            raise _invalid(path, "a block of 65,536 variants starts with an LD-compressed record")
        return cls(path, n, offsets, vrtypes, False)

    def close(self) -> None:
        self._fh.close()

    def check(self) -> None:
        """Raise the ``CHANGED_KIND`` error if the file's size or modification time moved since it was opened."""
        st = os.fstat(self._fh.fileno())
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise self._changed("size or modification time changed")

    def _changed(self, what: str) -> InputError:
        return InputError(f"{self.path}: file changed while a job read it ({what}); re-run the job once the"
                          " fileset is complete", kind=CHANGED_KIND)

    def _pread(self, lo: int, hi: int) -> np.ndarray:
        """Bytes ``lo .. hi`` of the file, in a new array (a block keeps it until it is decoded)."""
        buf = np.empty(hi - lo, dtype=np.uint8)
        view = memoryview(buf).cast("B")
        got = 0
        while got < buf.size:
            k = os.preadv(self._fh.fileno(), [view[got:]], lo + got)
            if k <= 0:
                raise self._changed(f"short read at byte {lo + got}")
            got += k
        return buf

    def _ld_start(self, rec: int) -> int:
        """``rec``, or the record its LD-compressed main track refers to (the last one before it that is not)."""
        if self.vrtypes[rec] & 6 != 2:
            return rec
        lo = rec - rec % _VBLOCK  # the first record of a header block is never LD compressed
        stand = np.flatnonzero(self.vrtypes[lo:rec] & 6 != 2)
        return lo + int(stand[-1])

    def _run(self, first: int, last: int, take) -> _Run:
        """The bytes of records ``start .. last`` (start: ``first`` or its LD base); ``take`` picks rows of it."""
        start = self._ld_start(first)
        lo, hi = int(self.offsets[start]), int(self.offsets[last + 1])
        vrt = self.vrtypes[start:last + 1]
        groups = np.append(np.flatnonzero(vrt & 6 != 2), len(vrt)).astype(np.int64)
        take = slice(first - start, None) if take is None else np.asarray(take) - start
        return _Run(start, self._pread(lo, hi), self.offsets[start:last + 2] - lo, vrt, groups, take)

    def read(self, records: np.ndarray) -> RecordBytes:
        """Read the stored bytes of ``records`` (any order, repeats allowed) now; decode them later."""
        rec = np.asarray(records, dtype=np.int64).reshape(-1)
        if rec.size and (rec.min() < 0 or rec.max() >= self.n_records):
            raise IndexError(f"record index out of range [0, {self.n_records})")
        self.check()
        if not rec.size:
            return RecordBytes(self, [], None)
        first, last = int(rec[0]), int(rec[-1])
        if last - first + 1 == rec.size and np.all(np.diff(rec) == 1):
            return RecordBytes(self, [self._run(first, last, None)], None)  # consecutive records, the common case
        uniq, inv = np.unique(rec, return_inverse=True)
        cuts = np.flatnonzero(np.diff(uniq) > 64) + 1  # one read per run of nearby records
        runs = [self._run(int(uniq[a]), int(uniq[b - 1]), uniq[a:b]) for a, b in zip(np.r_[0, cuts], np.r_[cuts, uniq.size])]
        return RecordBytes(self, runs, inv.reshape(-1))

    def packed(self, records: np.ndarray) -> np.ndarray:
        """.bed packed codes ``(len(records), ceil(n/4))`` uint8 of the main tracks of ``records`` (any order)."""
        return self.read(records).packed()

    def calls(self, records: np.ndarray) -> np.ndarray:
        """int8 ALT counts ``(len(records), n)`` (-1 missing) of the main tracks of ``records`` (any order)."""
        return self.read(records).calls()


@dataclass(frozen=True)
class _Run:
    """Stored bytes of records ``start ..`` (``offsets`` relative to ``buf``), and which decoded rows to keep."""

    start: int
    buf: np.ndarray
    offsets: np.ndarray
    vrtypes: np.ndarray
    groups: np.ndarray
    take: slice | np.ndarray


class RecordBytes:
    """The stored bytes of some records of one .pgen, read by :meth:`PgenRecords.read`, decoded on demand.

    :meth:`packed` gives .bed packed codes, :meth:`calls` int8 ALT counts (-1 missing),
    decoded from the same bytes by the same kernel; rows in the order the records were
    asked for. Each call decodes again: the caller keeps what it needs. Decoding needs no
    open file, so a block can hold a ``RecordBytes`` after its reader moved on.
    """

    def __init__(self, owner: PgenRecords, runs: list[_Run], order: np.ndarray | None):
        self._path, self._n, self._id_bytes, self._plink1 = owner.path, owner.n_samples, owner._id_bytes, owner._plink1
        self._runs = runs
        self._order = order
        self.n_rows = sum(len(r.vrtypes[r.take]) for r in runs) if order is None else len(order)

    def _decode(self, width: int, dtype, expand: np.ndarray) -> np.ndarray:
        parts = []
        for r in self._runs:
            out = np.empty((len(r.vrtypes), width), dtype=dtype)
            err = np.zeros(len(r.vrtypes), dtype=np.uint8)
            _decode(r.buf, r.offsets, r.vrtypes, r.groups, self._n, self._id_bytes, self._plink1, expand, out, err)
            if err.any():
                bad = r.start + int(np.flatnonzero(err)[0])
                raise _invalid(self._path, f"variant record {bad + 1} does not parse (cut short or damaged)")
            parts.append(out[r.take])
        if not parts:
            return np.empty((0, width), dtype=dtype)
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return rows if self._order is None else rows[self._order]

    def packed(self) -> np.ndarray:
        """.bed packed codes ``(r, ceil(n/4))`` uint8 (padding lanes 0)."""
        return self._decode(packed_width(self._n), np.uint8, _EXPAND)

    def calls(self) -> np.ndarray:
        """int8 ALT counts ``(r, n)``, -1 missing."""
        return self._decode(self._n, np.int8, _EXPAND_CALLS)
