"""PLINK 2 .pgen hard-call records decoded straight to .bed packed codes, without pgenlib.

A .pgen stores each variant's hard calls as a 2-bit "main track" (codes 0 hom REF, 1 het,
2 hom ALT, 3 missing), compressed per record in one of a few ways chosen by its record type
(``vrtype``, PLINK 2's format spec in ``pgenlib_misc.h``): plain 2-bit; a 1-bit track of the
two most common calls plus a list of the others; only a list of the calls that differ from
one value; or a list of the calls that differ from an earlier record (LD compression). This
module reads the file header (record offsets and types) and turns the main tracks of
biallelic records into the .bed codes of :mod:`~cipherome.genomics.io.packed` in one numba
pass, which costs less than pgenlib's own decoding to int8 (the PgenReader used to decode
through pgenlib, then pack). Multi-allelic records, dosages and layouts this module does not
handle stay with pgenlib (:class:`~cipherome.genomics.io.pgen.PgenReader` decides).

Code map: a .pgen code v in 0..3 becomes the .bed code ``(v ^ 3) ^ (v >> 1)`` (0 -> 0b11
CODE_HOM_REF, 1 -> 0b10 CODE_HET, 2 -> 0b00 CODE_HOM_ALT, 3 -> 0b01 CODE_MISSING); on a
whole byte of four codes that is ``b ^ 0xFF ^ ((b >> 1) & 0x55)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
from numba import prange

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import CHANGED_KIND
from cipherome.genomics.io.packed import packed_width
from cipherome.genomics.local.threads import twin_kernel

__all__ = ["PgenRecords", "PGEN_KIND"]

#: public kind of an InputError for a .pgen that is not what its header or its .pvar/.psam say
PGEN_KIND = "its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid"

_VBLOCK = 1 << 16  # variants per header block (kPglVblockSize)
_DIFFLIST_GROUP = 64  # sample IDs per difflist group (kPglDifflistGroupSize)


def _expand_table() -> np.ndarray:
    """``[c0, c1, byte]`` -> the 16 bits of eight 2-bit lanes, lane t = c1 where bit t of byte is set, else c0."""
    t = np.zeros((4, 4, 256), dtype=np.uint64)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    for c0 in range(4):
        for c1 in range(4):
            t[c0, c1] = (np.where(bits, c1, c0) << (2 * np.arange(8))).sum(axis=1)
    return t


#: the 1-bit track expanded eight samples (one byte) at a time
_EXPAND = _expand_table()

# kernel error codes (per record)
_OK, _BAD = 0, 1


@numba.njit(cache=True, nogil=True)
def _code(v):  # pragma: no cover - compiled
    """.pgen code 0..3 -> .bed code."""
    return (v ^ 3) ^ (v >> 1)


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _apply_difflist(buf, pos, end, n, id_bytes, row):  # pragma: no cover - compiled
    """Overwrite the calls a difflist names in ``row`` (.bed codes); returns an error code.

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
            if (k & 3) == 0:  # four .pgen codes -> four .bed codes
                cb = np.int64(buf[codes + (k >> 2)])
                cb = cb ^ 0xFF ^ ((cb >> 1) & 0x55)
            j = sid >> 2
            sh = 2 * (sid & 3)
            row[j] = (np.int64(row[j]) & ~(3 << sh)) | (((cb >> (2 * (k & 3))) & 3) << sh)
    return _OK


@numba.njit(cache=True, nogil=True)
def _decode_main(buf, pos, end, low3, n, id_bytes, expand, row):  # pragma: no cover - compiled
    """Decode one record's main track that does not refer to another record into ``row``; error code."""
    w = row.shape[0]
    if low3 == 0:  # plain 2-bit: whole 8-byte words through the byte formula, then the tail
        if end - pos < w:
            return _BAD
        nw = w // 8
        words = row[:8 * nw].view(np.uint64)
        for j in range(nw):
            x = np.uint64(0)
            for t in range(8):
                x |= np.uint64(buf[pos + 8 * j + t]) << np.uint64(8 * t)
            words[j] = ~x ^ ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
        for j in range(8 * nw, w):
            b = buf[pos + j]
            row[j] = b ^ 0xFF ^ ((b >> 1) & 0x55)
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
        tab = expand[_code(unset), _code(hi)]
        src = pos + 1
        nw = w // 8  # output words of 8 bytes = 4 input bytes
        words = row[:8 * nw].view(np.uint64)
        for j in range(nw):
            s4 = src + 4 * j
            words[j] = (tab[buf[s4]] | (tab[buf[s4 + 1]] << np.uint64(16)) | (tab[buf[s4 + 2]] << np.uint64(32))
                        | (tab[buf[s4 + 3]] << np.uint64(48)))
        for j in range(4 * nw, nb):
            v = tab[buf[src + j]]
            row[2 * j] = v & np.uint64(0xFF)
            if 2 * j + 1 < w:
                row[2 * j + 1] = v >> np.uint64(8)
        return _apply_difflist(buf, src + nb, end, n, id_bytes, row)
    if low3 == 5:  # every call hom REF, nothing stored
        for j in range(w):
            row[j] = 0xFF
        return _OK
    if low3 == 4 or low3 == 6 or low3 == 7:  # one common code (low 2 bits) and a difflist
        fill = _code(low3 & 3) * 0x55
        for j in range(w):
            row[j] = fill
        return _apply_difflist(buf, pos, end, n, id_bytes, row)
    return _BAD


@numba.njit(cache=True, nogil=True)
def _mask_padding(row, n):  # pragma: no cover - compiled
    if n & 3:
        row[row.shape[0] - 1] &= (1 << (2 * (n & 3))) - 1


def _decode_kernel(buf, offsets, vrtypes, groups, n, id_bytes, plink1, expand, out, err):  # pragma: no cover - compiled
    """Records ``i`` (bytes ``buf[offsets[i]:offsets[i+1]]``, type ``vrtypes[i]``) -> ``out[i]`` .bed codes.

    ``groups`` (g + 1,) cuts the records into runs that each start with a record standing
    alone and go on with the LD-compressed records (vrtype low bits 010/011) that refer to
    it: one parallel loop over the runs, each run in order. An LD-compressed row is a copy
    of its run's first row with its difflist applied, and for 011 hom REF and hom ALT
    exchanged. Padding lanes of the last byte are 0, as in a .bed. ``err[i]`` is 1 where a
    record does not parse (cut short, an ID beyond the sample count; or its run's base did not).
    """
    w = out.shape[1]
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
                src = out[b]
                for j in range(w):
                    row[j] = src[j]
                err[i] = _apply_difflist(buf, s, e, n, id_bytes, row)
                if low3 == 3:  # exchange 0b11 and 0b00 (lanes whose two bits are equal)
                    for j in range(w):
                        x = np.int64(row[j])
                        eq = ~(x ^ (x >> 1)) & 0x55
                        row[j] = x ^ (eq | (eq << 1))
            elif plink1:  # PLINK 1 .bed codes already
                if e - s < w:
                    err[i] = _BAD
                    continue
                for j in range(w):
                    row[j] = buf[s + j]
            else:
                err[i] = _decode_main(buf, s, e, low3, n, id_bytes, expand, row)
            _mask_padding(row, n)


_decode = twin_kernel(_decode_kernel)


def _invalid(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}; re-create the fileset with plink2 --make-pgen", kind=PGEN_KIND)


class PgenRecords:
    """The hard-call records of one .pgen, read with ``os.pread`` and decoded to .bed packed codes.

    Build with :meth:`open`, which returns None for a layout left to pgenlib (a separate
    .pgi index, the single-sample header encodings, more than one byte per allele count)
    and raises an :class:`InputError` when the header contradicts the .pvar/.psam counts or
    the file is cut short. ``packed(records)`` serves any record list, but only the main
    track is decoded: a multi-allelic record's row shows its calls of "REF vs any ALT" (the
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
        self._scratch = np.empty(0, dtype=np.uint8)

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

    def _changed(self, what: str) -> InputError:
        return InputError(f"{self.path}: file changed while a job read it ({what}); re-run the job once the"
                          " fileset is complete", kind=CHANGED_KIND)

    def _pread(self, lo: int, hi: int) -> np.ndarray:
        """Bytes ``lo .. hi`` of the file, in a scratch buffer reused by the next read (no fresh pages to fault in)."""
        if self._scratch.size < hi - lo:
            self._scratch = np.empty(hi - lo, dtype=np.uint8)
        buf = self._scratch[:hi - lo]
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

    def _span(self, first: int, last: int) -> np.ndarray:
        """Decode records ``start .. last`` where start is ``first`` or its LD base; rows ``(last + 1 - start, w)``."""
        start = self._ld_start(first)
        lo, hi = int(self.offsets[start]), int(self.offsets[last + 1])
        buf = self._pread(lo, hi)
        offsets = self.offsets[start:last + 2] - lo
        vrt = self.vrtypes[start:last + 1]
        groups = np.append(np.flatnonzero(vrt & 6 != 2), len(vrt)).astype(np.int64)
        out = np.empty((len(vrt), packed_width(self.n_samples)), dtype=np.uint8)
        err = np.zeros(len(vrt), dtype=np.uint8)
        _decode(buf, offsets, vrt, groups, self.n_samples, self._id_bytes, self._plink1, _EXPAND, out, err)
        if err.any():
            bad = start + int(np.flatnonzero(err)[0])
            raise _invalid(self.path, f"variant record {bad + 1} does not parse (cut short or damaged)")
        return out[first - start:]

    def packed(self, records: np.ndarray) -> np.ndarray:
        """.bed packed codes ``(len(records), ceil(n/4))`` uint8 of the main tracks of ``records`` (any order)."""
        rec = np.asarray(records, dtype=np.int64).reshape(-1)
        w = packed_width(self.n_samples)
        if not rec.size:
            return np.empty((0, w), dtype=np.uint8)
        if rec.min() < 0 or rec.max() >= self.n_records:
            raise IndexError(f"record index out of range [0, {self.n_records})")
        st = os.fstat(self._fh.fileno())
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise self._changed("size or modification time changed")
        first, last = int(rec[0]), int(rec[-1])
        if last - first + 1 == rec.size and np.all(np.diff(rec) == 1):
            return self._span(first, last)  # a block of consecutive records, the common case
        uniq, inv = np.unique(rec, return_inverse=True)
        cuts = np.flatnonzero(np.diff(uniq) > 64) + 1  # one read per run of nearby records
        out = np.empty((uniq.size, w), dtype=np.uint8)
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, uniq.size]):
            span = self._span(int(uniq[a]), int(uniq[b - 1]))
            out[a:b] = span[uniq[a:b] - uniq[a]]
        return out[inv.reshape(-1)]
