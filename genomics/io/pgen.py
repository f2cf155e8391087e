"""PLINK 2 filesets (.pgen/.pvar/.psam) read through ``pgenlib``, the reader maintained with PLINK 2.

Blocks are the same :class:`~cipherome.genomics.io.blocks.GenotypeBlock` s as a .bed
gives: int8 hard calls (the .pgen's own hard-call track, 0/1/2, -1 missing) and, when
the file carries dosages, ``float_dosage`` ``(m, n)`` float32 ALT dosages in [0, 2]
(NaN missing; PLINK 2 stores them in steps of 1/16384, which float32 holds exactly).
Where a variant has no stored dosage, its dosage is its hard call, as plink2 reads it.

Multi-allelic variants are split as plink2 splits them (``--make-pgen
multiallelics=-``): one row per ALT allele, same CHROM/POS/REF and ID ``.`` (plink2
leaves split variants without an ID), whose dosage counts that ALT; every other allele
counts as "not this ALT". The .afreq/.vmiss/.gcount rows then equal plink2's on the split file.

Hard calls of biallelic records are decoded straight from the file by
:mod:`~cipherome.genomics.io.pgen_records` (pgenlib's decoding to int8 alone cost more than
reading the same data as a .bed): a block keeps its records' bytes and decodes them to
int8 calls or to .bed packed codes, whichever is asked for first (the other form is decoded
again from the bytes when asked for too); multi-allelic records, dosages and header layouts
that module leaves alone are read through pgenlib.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numba import prange

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import resolve_samples, default_block_size, read_bim
from cipherome.genomics.io.blocks import GenotypeBlock, SampleTable, VariantTable
from cipherome.genomics.io.packed import pack_dosage, packed_width, unpack_dosage
from cipherome.genomics.io.pgen_records import PgenRecords, RecordBytes
from cipherome.genomics.local.threads import twin_kernel

__all__ = ["PgenReader", "pfile_paths", "read_psam", "read_pvar"]

_PGEN_MAGIC = b"\x6c\x1b"


def _pack_calls_kernel(calls, out):  # pragma: no cover - compiled
    """pgenlib's int8 calls (0, 1, 2, -9 missing) -> .bed codes, four per byte, without a table.

    The low two bits v of a call's byte are 0, 1, 2 or 3 (-9 = 0xF7); the code
    (v ^ 3) ^ (v >> 1) maps them to ``packed``'s CODE_HOM_REF 0b11, CODE_HET 0b10,
    CODE_HOM_ALT 0b00 and CODE_MISSING 0b01 (tests/test_genomics_pgen.py checks it against
    ``pack_dosage``): register arithmetic, where a table lookup per call cost as much CPU as
    pgenlib's own decoding.
    """
    m, n = calls.shape
    nfull = n // 4
    for v in prange(m):
        row = calls[v].view(np.uint8)
        o = out[v]
        for j in range(nfull):
            b0 = row[4 * j] & 3
            b1 = row[4 * j + 1] & 3
            b2 = row[4 * j + 2] & 3
            b3 = row[4 * j + 3] & 3
            o[j] = (((b0 ^ 3) ^ (b0 >> 1)) | (((b1 ^ 3) ^ (b1 >> 1)) << 2)
                    | (((b2 ^ 3) ^ (b2 >> 1)) << 4) | (((b3 ^ 3) ^ (b3 >> 1)) << 6))
        if nfull < o.shape[0]:
            byte = 0
            for t in range(n - 4 * nfull):
                b = row[4 * nfull + t] & 3
                byte |= ((b ^ 3) ^ (b >> 1)) << (2 * t)
            o[nfull] = byte


_pack_calls = twin_kernel(_pack_calls_kernel)


def pfile_paths(prefix: str | os.PathLike[str]) -> dict[str, Path]:
    """``{'pgen': prefix.pgen, 'pvar': prefix.pvar, 'psam': prefix.psam}``."""
    p = Path(prefix)
    return {ext: p.with_name(p.name + "." + ext) for ext in ("pgen", "pvar", "psam")}


def read_psam(path: str | os.PathLike[str]) -> SampleTable:
    """Read a .psam (header ``#FID IID ...`` or ``#IID ...``; SEX column optional) or a headerless .fam."""
    from cipherome.genomics.io.bed import read_fam

    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: cannot open .psam file ({e.strerror})",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid') from None
    with fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip() and not ln.startswith("##")]
    if not lines:
        raise InputError(f"{path}: the .psam file lists no samples",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
    if not lines[0].startswith("#"):
        return read_fam(path)  # plink2 accepts a .fam as .psam
    cols = lines[0][1:].split()
    if "IID" not in cols:
        raise InputError(f"{path}, line 1: the header has no IID column (expected #FID IID ... or #IID ...)",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
    i_iid, i_fid = cols.index("IID"), cols.index("FID") if "FID" in cols else None
    i_sex = cols.index("SEX") if "SEX" in cols else None
    fid, iid, sex = [], [], []
    for lineno, line in enumerate(lines[1:], 2):
        f = line.split()
        if len(f) != len(cols):
            raise InputError(f"{path}, line {lineno}: expected {len(cols)} columns as in the header, found {len(f)}",
                             kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
        iid.append(f[i_iid])
        if i_fid is not None:
            fid.append(f[i_fid])
        s = f[i_sex] if i_sex is not None else "0"
        sex.append(1 if s == "1" else 2 if s == "2" else 0)
    if not iid:
        raise InputError(f"{path}: the .psam file lists no samples",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
    return SampleTable.from_columns(iid, fid if i_fid is not None else None, sex)


def read_pvar(path: str | os.PathLike[str]) -> tuple[VariantTable, np.ndarray, np.ndarray, np.ndarray]:
    """Read a .pvar (``#CHROM POS ID REF ALT ...``) or a headerless .bim-style .pvar, multi-allelics split.

    Returns (variants: one row per ALT allele, file_variant (r,) int64: its record in the
    .pgen, allele (r,) int64: its allele index (1 = first ALT), allele_offsets (n_records + 1,)
    uintp: pgenlib's allele index offsets).
    """
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()  # one string, split into tokens at once: no Python string per line
    start, k = 0, 0  # start of line k
    while text.startswith("##", start):
        nl = text.find("\n", start)
        start, k = (len(text) if nl < 0 else nl + 1), k + 1
    if start >= len(text) or not text.startswith("#", start):
        bim = read_bim(path) if k == 0 else None
        if bim is None:
            raise InputError(f"{path}: no #CHROM header line after the ## lines",
                             kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
        m = len(bim)
        return bim, np.arange(m, dtype=np.int64), np.ones(m, dtype=np.int64), np.arange(0, 2 * m + 1, 2, dtype=np.uintp)
    nl = text.find("\n", start)
    cols = text[start + 1:len(text) if nl < 0 else nl].split()
    need = ["CHROM", "POS", "ID", "REF", "ALT"]
    if any(c not in cols for c in need):
        raise InputError(f"{path}, line {k + 1}: the header must name CHROM POS ID REF ALT (found {' '.join(cols)})",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
    ic = [cols.index(c) for c in need]
    body = "" if nl < 0 else text[nl + 1:]
    nc, m = len(cols), body.count("\n") + (bool(body) and not body.endswith("\n"))
    tok = body.split()
    if len(tok) == nc * m and _tabs_per_line_are(body, nc - 1):
        columns = [tok[i::nc] for i in ic]  # the usual .pvar: one tab-separated token per column
    else:
        lines = body.split("\n")[:m]
        rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in lines]
        bad = next((i for i, f in enumerate(rows) if len(f) < nc), None)
        if bad is not None:
            raise InputError(f"{path}, line {k + 2 + bad}: expected {nc} columns, found {len(rows[bad])}",
                             kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
        columns = [[f[i].strip() for f in rows] for i in ic]
    chrom, pos_text, ids, ref, alt = columns
    try:
        pos = np.array(pos_text, dtype=np.int64)
    except ValueError:
        bad = next(i for i, t in enumerate(pos_text) if not t.strip().isdigit())
        raise InputError(f"{path}, line {k + 2 + bad}: position {pos_text[bad]!r} is not an integer",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid') from None
    if "," not in "\t".join(alt):  # biallelic only: one row per record
        return (VariantTable.from_columns(chrom, pos, ids, ref, alt), np.arange(m, dtype=np.int64),
                np.ones(m, dtype=np.int64), np.arange(0, 2 * m + 1, 2, dtype=np.uintp))
    alts = [a.split(",") for a in alt]
    n_alt = np.array([len(a) for a in alts], dtype=np.int64)
    rec = np.repeat(np.arange(m, dtype=np.int64), n_alt)
    allele = np.concatenate([np.arange(1, a + 1, dtype=np.int64) for a in n_alt])
    offsets = np.zeros(m + 1, dtype=np.uintp)
    np.cumsum(n_alt + 1, out=offsets[1:])
    ids = np.array(ids, dtype=object)
    ids[n_alt > 1] = "."
    v = VariantTable.from_columns(np.array(chrom, dtype=object)[rec], pos[rec], ids[rec],
                                  np.array(ref, dtype=object)[rec], [a for aa in alts for a in aa])
    return v, rec, allele, offsets


def _tabs_per_line_are(text: str, k: int) -> bool:
    """Whether every line of ``text`` holds exactly ``k`` tab characters."""
    raw = np.frombuffer((text if text.endswith("\n") else text + "\n").encode(), dtype=np.uint8)
    tabs = np.cumsum(raw == 9)[raw == 10]
    return bool(np.all(np.diff(tabs, prepend=0) == k))


def _has_dosage_track(pgen: Path) -> bool:
    """Whether the .pgen may hold dosages (mode 0x10 with stored variant record types).

    A .pgen in fixed-width mode (0x01-0x04, .bed-like) or whose header says record types
    are not stored (low nibble of byte 11 below 4) holds hard calls only; otherwise some
    variants may carry dosages and they are read.
    """
    with open(pgen, "rb") as fh:
        head = fh.read(12)
    if len(head) < 3 or head[:2] != _PGEN_MAGIC:
        raise InputError(f"{pgen}: not a PLINK 2 .pgen file (magic bytes {head[:3].hex()}); re-create it with"
                         " plink2 --make-pgen",
                         kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
    return head[2] == 0x10 and len(head) == 12 and (head[11] & 15) >= 4


@dataclass(frozen=True)
class _Stored:
    """Hard calls of some rows as read from the file: biallelic records' bytes (None: none decoded directly)
    and pgenlib's int8 calls ``multi_calls`` of the rows at positions ``multi``."""

    records: RecordBytes | None
    multi: np.ndarray
    multi_calls: np.ndarray


class PgenReader:
    """A PLINK 2 fileset opened for block reading; checks the three files agree on open.

    ``samples``: None (all), IIDs or integer indices (kept in .psam order);
    ``block_size``: rows (split variants) per block; ``dosages``: read the dosage track
    (None: when the file may hold one). Attributes: ``samples``, ``variants`` (all rows),
    ``n_variants``, ``has_dosage``, ``paths``.
    """

    def __init__(self, prefix: str | os.PathLike[str], samples: Sequence[str] | np.ndarray | None = None,
                 block_size: int | None = None, dosages: bool | None = None):
        import pgenlib

        self.paths = pfile_paths(prefix)
        for ext, p in self.paths.items():
            if not p.is_file():
                raise InputError(f"{p}: .{ext} file not found (--pfile takes the prefix shared by"
                                 " .pgen/.pvar/.psam)",
                                 kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid')
        psam = read_psam(self.paths["psam"])
        self.variants, self._rec, self._allele, offsets = read_pvar(self.paths["pvar"])
        self.n_variants = len(self.variants)
        self._index = resolve_samples(psam, samples, self.paths["psam"])
        self.samples = psam if self._index is None else psam[self._index]
        self.has_dosage = _has_dosage_track(self.paths["pgen"]) if dosages is None else bool(dosages)
        multi = bool(len(offsets) and int(offsets[-1]) != 2 * (len(offsets) - 1))
        subset = None if self._index is None else self._index.astype(np.uint32)
        try:
            self._pgen = pgenlib.PgenReader(bytes(self.paths["pgen"]), raw_sample_ct=len(psam),
                                            variant_ct=len(offsets) - 1, sample_subset=subset,
                                            allele_idx_offsets=offsets if multi else None)
        except RuntimeError as e:
            raise InputError(f"{self.paths['pgen']}: pgenlib cannot open it ({e}); the .pgen, .pvar and .psam"
                             " must come from the same plink2 run",
                             kind='its PLINK 2 fileset (.pgen/.pvar/.psam) is invalid') from None
        self._records = PgenRecords.open(self.paths["pgen"], len(psam), len(offsets) - 1)
        self._multi = np.diff(offsets.astype(np.int64)) > 2 if multi else None  # per record: > 2 alleles
        self.block_size = int(block_size) if block_size else default_block_size(len(self.samples))
        if self.block_size < 1:
            raise ValueError("block_size must be >= 1")

    def check(self) -> None:
        """Raise the ``CHANGED_KIND`` error if the .pgen changed since it was opened (see ``PgenRecords.check``)."""
        if self._records is not None:
            self._records.check()

    def close(self) -> None:
        self._pgen.close()
        if self._records is not None:
            self._records.close()

    def __iter__(self) -> Iterator[GenotypeBlock]:
        return self.blocks()

    def _read(self, rows: np.ndarray, out: np.ndarray, dosage: bool) -> np.ndarray:
        """Fill ``out`` (r, n) with hard calls (int8) or dosages (float32) of ``rows``, grouped by ALT index."""
        rows = np.asarray(rows, dtype=np.int64)
        rng, lst = ((self._pgen.read_dosages_range, self._pgen.read_dosages_list) if dosage
                    else (self._pgen.read_range, self._pgen.read_list))
        alleles = self._allele[rows]
        for allele in np.unique(alleles):
            sel = np.flatnonzero(alleles == allele)
            rec = np.ascontiguousarray(self._rec[rows[sel]], dtype=np.uint32)
            contiguous = sel.size == rows.size and bool(np.all(np.diff(rec.astype(np.int64)) == 1))
            if contiguous:
                rng(int(rec[0]), int(rec[-1]) + 1, out, allele_idx=int(allele))
            else:
                part = np.empty((sel.size, out.shape[1]), dtype=out.dtype)
                lst(rec, part, allele_idx=int(allele))
                out[sel] = part
        return out

    def _pgenlib_calls(self, rows: np.ndarray) -> np.ndarray:
        """Hard calls ``(r, n)`` int8 of ``rows`` through pgenlib, -1 missing."""
        calls = self._read(rows, np.empty((len(rows), len(self.samples)), dtype=np.int8), False)
        return np.maximum(calls, -1, out=calls)

    def _pgenlib_packed(self, rows: np.ndarray) -> np.ndarray:
        """Hard calls of ``rows`` through pgenlib, packed to .bed codes."""
        return self._pack(self._pgenlib_calls(rows))

    def _pack(self, calls: np.ndarray) -> np.ndarray:
        out = np.empty((len(calls), packed_width(len(self.samples))), dtype=np.uint8)
        if out.size:
            _pack_calls(calls, out)
        return out

    def _stored(self, rows: np.ndarray) -> _Stored:
        """Read what the hard calls of ``rows`` need from the file now; :meth:`_calls_of`/:meth:`_packed_of` decode it.

        Biallelic records: their bytes (:class:`PgenRecords`, all samples, decoded later);
        rows of multi-allelic records (or every row, where the direct path does not
        apply): pgenlib's int8 calls.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._records is None:
            return _Stored(None, np.arange(len(rows)), self._pgenlib_calls(rows))
        rec = self._rec[rows]
        multi = np.flatnonzero(self._multi[rec]) if self._multi is not None else np.empty(0, dtype=np.int64)
        calls = self._pgenlib_calls(rows[multi]) if multi.size else np.empty((0, len(self.samples)), dtype=np.int8)
        return _Stored(self._records.read(rec), multi, calls)

    def _calls_of(self, st: _Stored) -> np.ndarray:
        """int8 calls ``(r, n)`` of stored rows: records decoded straight to int8 (a subset: from packed codes)."""
        if st.records is None:
            return st.multi_calls
        n = self._records.n_samples
        out = st.records.calls() if self._index is None else unpack_dosage(st.records.packed(), n, self._index)
        out[st.multi] = st.multi_calls
        return out

    def _packed_of(self, st: _Stored) -> np.ndarray:
        """.bed packed codes ``(r, ceil(n/4))`` of stored rows."""
        if st.records is None:
            return self._pack(st.multi_calls)
        out = st.records.packed()
        if self._index is not None:
            out = pack_dosage(unpack_dosage(out, self._records.n_samples, self._index))
        out[st.multi] = self._pack(st.multi_calls)
        return out

    def read_packed(self, rows: np.ndarray) -> np.ndarray:
        """Hard calls of ``rows`` as packed .bed codes ``(r, ceil(n/4))`` uint8."""
        return self._packed_of(self._stored(rows))

    def read_hard(self, rows: np.ndarray) -> np.ndarray:
        """Hard calls ``(r, n)`` int8 ALT counts, -1 missing, of rows (split variants) in any order."""
        return self._calls_of(self._stored(rows))

    def read_dosage(self, rows: np.ndarray) -> np.ndarray:
        """Dosages ``(r, n)`` float32 ALT counts in [0, 2], NaN missing (the hard call where none is stored)."""
        out = self._read(rows, np.empty((len(rows), len(self.samples)), dtype=np.float32), True)
        out[out < 0] = np.nan
        return out

    def blocks(self) -> Iterator[GenotypeBlock]:
        """Yield :class:`GenotypeBlock` s of up to ``block_size`` rows, in file order."""
        for start in range(0, self.n_variants, self.block_size):
            stop = min(start + self.block_size, self.n_variants)
            rows = np.arange(start, stop)
            dos = self.read_dosage(rows) if self.has_dosage else None
            st = self._stored(rows)  # read now, decoded to the form the consumer asks for
            if st.records is None:
                yield GenotypeBlock(self.variants[start:stop], start, dosage=st.multi_calls, float_dosage=dos)
            else:
                yield GenotypeBlock(self.variants[start:stop], start, n_samples=len(self.samples), float_dosage=dos,
                                    dosage_source=partial(self._calls_of, st), packed_source=partial(self._packed_of, st))
