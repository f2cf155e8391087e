"""VCF and BCF genotypes (bgzipped or plain, indexed or not) read through pysam as bounded-memory blocks of ALT dosages.

pysam/htslib parses and, for BCF, decodes each record; the record's text form is then
cut into GT calls for all samples at once by a numba kernel, so no Python code runs
per sample. (For BCF the text is a round trip, but pysam offers no array access to
decoded genotypes: its per-sample API, ``rec.samples[i].allele_indices``, took 20 ms
per 10,000-sample record against 1.6 ms for ``str(rec)`` plus parsing, measured on the
local-statistics benchmark's BCF on a loaded 2-core machine.) Conventions, chosen to match PLINK 2's VCF import:

* dosage counts the ALT allele of the output row: 0/1/2, -1 for a missing call;
* multi-allelic records are either ``"split"`` into one biallelic row per ALT (the
  dosage of that ALT; every other allele, REF or another ALT, counts as "not this
  ALT", as ``bcftools norm -m-`` writes it) or ``"skip"``-ped; either way the number
  is logged;
* a haploid call (``0``, ``1``, e.g. chrX in males, chrY, MT) is coded as homozygous,
  0 or 2, as PLINK stores haploid calls; ``.`` is missing; the count is logged;
* a half-call (``./1``) raises an :class:`InputError` by default, as PLINK 2 does;
  ``half_call="missing"``, ``"haploid"`` (the known allele as a haploid call) or
  ``"reference"`` (the missing allele as REF) mirror ``--vcf-half-call``;
* calls of ploidy above 2 are set to missing and counted (PLINK 2 does the same);
* a record without a GT field gives missing calls.
"""
from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import make_dataclass
from pathlib import Path

import numpy as np
from numba import prange

from cipherome.genomics.io.bed import default_block_size
from cipherome.genomics.io.blocks import GenotypeBlock, SampleTable, VariantTable, concat_variants
from cipherome.genomics.errors import InputError, unknown_samples
from cipherome.genomics.local.threads import twin_kernel

__all__ = ["VcfReader", "VcfStats", "iter_vcf", "open_variant_file", "MULTIALLELIC_MODES", "HALF_CALL_MODES"]

log = logging.getLogger(__name__)

MULTIALLELIC_MODES = ("split", "skip")
# Record text parsed at a time (bytes): bounds the text, allele-code and dosage buffers
# next to a block, whose own size is set by block_size.
_TEXT_BUDGET = 16 << 20
HALF_CALL_MODES = ("error", "missing", "haploid", "reference")

# Per-sample allele codes written by the parser (int16).
_MISSING = -1  # "." allele
_ABSENT = -2  # second allele of a haploid call
_POLY = -3  # ploidy above 2 (both alleles set to this)

# Error codes of the parser.
_E_COLUMNS = 1  # fewer than 10 columns
_E_FEW_SAMPLES = 2
_E_MANY_SAMPLES = 3
_E_BAD_GT = 4
_E_ALLELE = 5  # allele index beyond the record's alleles
_ERRORS = {
    _E_COLUMNS: "has fewer than 10 tab-separated columns (no FORMAT/sample columns)",
    _E_FEW_SAMPLES: "has fewer sample columns than the header's samples",
    _E_MANY_SAMPLES: "has more sample columns than the header's samples",
    _E_BAD_GT: "has a GT value that is not alleles separated by / or |",
    _E_ALLELE: "has a GT allele index beyond the record's ALT alleles",
}


def _parse_gt_kernel(buf, starts, n_alleles, n, a1, a2, err, err_sample, n_hap, n_half, n_poly):  # pragma: no cover
    """Cut the GT of each sample out of VCF text lines.

    buf: uint8 text; line r is buf[starts[r]:starts[r+1]-1] (the newline excluded).
    Writes a1, a2 (m, n) int16 allele codes and per-line error/count arrays.
    """
    m = starts.shape[0] - 1
    for r in prange(m):
        p = starts[r]
        end = starts[r + 1] - 1
        tabs = 0
        while p < end and tabs < 8:
            if buf[p] == 9:
                tabs += 1
            p += 1
        if tabs < 8 or p >= end:
            err[r] = _E_COLUMNS
            continue
        # FORMAT: which colon-separated key is GT
        gt_idx = -1
        key = 0
        q = p
        while q < end and buf[q] != 9:
            if (buf[q] == 71 and q + 1 < end and buf[q + 1] == 84
                    and (q + 2 >= end or buf[q + 2] == 58 or buf[q + 2] == 9)
                    and (q == p or buf[q - 1] == 58)):
                gt_idx = key
            if buf[q] == 58:
                key += 1
            q += 1
        fmt_len = q - p
        p = q + 1
        hap = 0
        half = 0
        poly = 0
        na = n_alleles[r]
        # Fast path: FORMAT is just GT and every call is "a/b" or "a|b" with single-digit or
        # '.' alleles (what plink2 and most callers write for biallelic sites).
        if gt_idx == 0 and fmt_len == 2 and end - p == 4 * n - 1 and na <= 10:
            ok = True
            for s in range(n):
                b = p + 4 * s
                c1 = buf[b + 1]
                if (c1 != 47 and c1 != 124) or (s < n - 1 and buf[b + 3] != 9):
                    ok = False
                    break
                c0 = np.int64(buf[b])
                c2 = np.int64(buf[b + 2])
                x = c0 - 48 if 48 <= c0 < 48 + na else (-1 if c0 == 46 else -99)
                y = c2 - 48 if 48 <= c2 < 48 + na else (-1 if c2 == 46 else -99)
                if x == -99 or y == -99:
                    ok = False
                    break
                if (x < 0) != (y < 0):
                    half += 1
                a1[r, s] = x
                a2[r, s] = y
            if ok:
                n_hap[r] = 0
                n_half[r] = half
                n_poly[r] = 0
                continue
            half = 0  # the general parser below redoes this line
        for s in range(n):
            if p > end:
                err[r] = _E_FEW_SAMPLES
                err_sample[r] = s
                break
            # skip to the GT sub-field
            k = 0
            while k < gt_idx and p < end and buf[p] != 9:
                if buf[p] == 58:
                    k += 1
                p += 1
            if gt_idx < 0 or k < gt_idx:
                a1[r, s] = _MISSING
                a2[r, s] = _MISSING
            else:
                cnt = 0
                x = _MISSING
                y = _ABSENT
                cur = -1
                have = False
                bad = False
                while p < end and buf[p] != 58 and buf[p] != 9:
                    c = buf[p]
                    if c >= 48 and c <= 57:
                        cur = (cur if cur >= 0 else 0) * 10 + (c - 48)
                        if cur > 30000:
                            bad = True
                        have = True
                    elif c == 46:  # '.'
                        if have:
                            bad = True
                        cur = -1
                        have = True
                    elif c == 47 or c == 124:  # '/' '|'
                        if not have:
                            bad = True
                        if cnt == 0:
                            x = cur
                        elif cnt == 1:
                            y = cur
                        cnt += 1
                        cur = -1
                        have = False
                    else:
                        bad = True
                    p += 1
                if have:
                    if cnt == 0:
                        x = cur
                    elif cnt == 1:
                        y = cur
                    cnt += 1
                elif cnt > 0:
                    bad = True
                if cnt == 0:  # empty GT sub-field: missing
                    x = _MISSING
                    y = _MISSING
                if bad:
                    err[r] = _E_BAD_GT
                    err_sample[r] = s
                    break
                if x >= na or y >= na:
                    err[r] = _E_ALLELE
                    err_sample[r] = s
                    break
                if cnt > 2:
                    x = _POLY
                    y = _POLY
                    poly += 1
                elif cnt == 1:
                    if x >= 0:
                        hap += 1
                elif (x < 0) != (y < 0):
                    half += 1
                a1[r, s] = x
                a2[r, s] = y
            # skip the rest of the sample column
            while p < end and buf[p] != 9:
                p += 1
            p += 1
        else:
            if p <= end:
                err[r] = _E_MANY_SAMPLES
                err_sample[r] = n
        n_hap[r] = hap
        n_half[r] = half
        n_poly[r] = poly


def _dosage_kernel(a1, a2, rec_of_row, alt_of_row, half_mode, out):  # pragma: no cover
    """Dosage of allele alt_of_row[i] for output row i from the allele codes of its record."""
    rows, n = out.shape
    for i in prange(rows):
        r = rec_of_row[i]
        a = alt_of_row[i]
        for s in range(n):
            x = a1[r, s]
            y = a2[r, s]
            if y == _ABSENT:
                d = -1 if x < 0 else (2 if x == a else 0)
            elif x >= 0 and y >= 0:
                d = (1 if x == a else 0) + (1 if y == a else 0)
            elif x == _POLY or (x < 0 and y < 0):
                d = -1
            else:  # half-call
                known = x if x >= 0 else y
                if half_mode == 2:  # haploid
                    d = 2 if known == a else 0
                elif half_mode == 3:  # reference
                    d = 1 if known == a else 0
                else:
                    d = -1
            out[i, s] = d


_parse_gt = twin_kernel(_parse_gt_kernel)
_dosage = twin_kernel(_dosage_kernel)


#: The counts a read collects (the fields of :class:`VcfStats`) and, for those logged after the read
#: when non-zero, the log level and what they count.
_COUNTS = {
    "records": None,  # records read from the file
    "rows": None,  # variant rows produced (a split multi-allelic record gives one per ALT allele)
    "multiallelic_split": (logging.INFO, "multi-allelic records split into one row per ALT allele"),
    "multiallelic_skipped": (logging.INFO, "multi-allelic records skipped"),
    "haploid_calls": (logging.INFO, "haploid calls coded as homozygous (PLINK convention)"),
    "half_calls": (logging.INFO, "half-calls treated as {half_call}"),
    "polyploid_calls": (logging.WARNING, "calls of ploidy > 2 set to missing"),
}

VcfStats = make_dataclass("VcfStats", [(name, int, 0) for name in _COUNTS])
VcfStats.__module__ = __name__
VcfStats.__doc__ = """Counts collected while reading (logged at the end): records, rows, skipped/split multi-allelics, odd calls.

One ``int`` field per key of ``_COUNTS``, all starting at 0."""


def open_variant_file(path: Path):
    """Open a VCF/BCF with pysam, quietly (no htslib chatter about a missing index)."""
    import pysam

    # htslib looks for an index on open and prints "Could not retrieve index file" when
    # there is none; an index is only needed for regions, so keep it quiet while opening.
    old = pysam.set_verbosity(0)
    try:
        return pysam.VariantFile(str(path), "r")
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot open as VCF/BCF ({e}); check that it is a VCF, bgzipped VCF"
                         " or BCF file with a complete header",
                         kind='cannot open its VCF/BCF file') from None
    finally:
        pysam.set_verbosity(old)


class VcfReader:
    """A VCF/BCF file opened for block reading.

    ``samples``: None (all) or a sequence of sample names (output keeps the file's
    order); ``region``: None or ``"chrom"``/``"chrom:start-end"`` (1-based, needs a
    .tbi/.csi index); ``block_size``: output rows per block; ``multiallelic``: one of
    :data:`MULTIALLELIC_MODES`; ``half_call``: one of :data:`HALF_CALL_MODES`.
    Attributes: ``samples`` (:class:`SampleTable`, fid None, sex unknown), ``stats``
    (:class:`VcfStats`, complete after iteration).
    """

    def __init__(self, path: str | os.PathLike[str], samples: Sequence[str] | None = None,
                 region: str | None = None, block_size: int | None = None,
                 multiallelic: str = "split", half_call: str = "error"):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: VCF/BCF file not found",
                             kind='its VCF/BCF file is missing')
        if multiallelic not in MULTIALLELIC_MODES:
            raise ValueError(f"multiallelic must be one of {MULTIALLELIC_MODES}")
        if half_call not in HALF_CALL_MODES:
            raise ValueError(f"half_call must be one of {HALF_CALL_MODES}")
        self.region = region
        self.multiallelic = multiallelic
        self.half_call = half_call
        vf = open_variant_file(self.path)
        try:
            all_samples = list(vf.header.samples)
            if "GT" not in vf.header.formats:
                raise InputError(f"{self.path}: the header defines no GT FORMAT field, so there are no"
                                 " genotypes to read",
                                 kind='its VCF/BCF header defines no GT field')
        finally:
            vf.close()
        if samples is not None:
            have = set(all_samples)
            wanted = set(samples)
            unknown = [s for s in samples if s not in have]
            if unknown:
                raise unknown_samples(self.path, unknown, "the header",
                                      "requested samples are not in its VCF/BCF header")
            names = [s for s in all_samples if s in wanted]
        else:
            names = all_samples
        if len(set(names)) != len(names):
            raise InputError(f"{self.path}: duplicate sample names in the header",
                             kind='its VCF/BCF header has duplicate sample names')
        self._subset = None if samples is None else names
        self.samples = SampleTable.from_columns(names)
        self.block_size = int(block_size) if block_size else default_block_size(len(names))
        self.stats = VcfStats()

    def __iter__(self) -> Iterator[GenotypeBlock]:
        return self.blocks()

    def blocks(self, records: bool = False) -> Iterator:
        """Yield :class:`GenotypeBlock` s of up to ``block_size`` rows with int8 dosages.

        With ``records``: yield (block, recs) instead, recs the (pysam record, record text)
        of every record whose rows are in the block, in order (the text has the selected
        samples' columns only), for callers that need more of each record than its
        genotypes (FILTER, INFO, other FORMAT fields) in the same single pass.
        """
        self.stats = st = VcfStats()
        vf = open_variant_file(self.path)
        try:
            if self._subset is not None:
                vf.subset_samples(self._subset)
            if self.region is None:
                it = iter(vf)
            else:
                try:
                    it = vf.fetch(region=self.region)
                except ValueError as e:
                    raise InputError(f"{self.path}: cannot select region {self.region!r} ({e}); region"
                                     " selection needs an index beside the file (.tbi or .csi: run"
                                     " `bcftools index` or `tabix -p vcf`) and a contig named as in"
                                     " the header",
                                     kind='cannot select a region of its VCF/BCF file (index missing?)') from None
            batch: list = []  # records whose text is not parsed yet
            parts: list = []  # parsed (variants, dosage) pieces of the current block
            rows = text_size = 0
            done = 0
            last = None
            recs: list = []  # (record, text) of the block's records, if asked for
            while True:
                try:
                    rec = next(it)
                except StopIteration:
                    break
                except (OSError, ValueError) as e:
                    raise self._record_error(st.records + 1, last, e) from None
                st.records += 1
                last = (rec.chrom, rec.pos)
                alts = rec.alts or (".",)
                if len(alts) > 1:
                    if self.multiallelic == "skip":
                        st.multiallelic_skipped += 1
                        continue
                    st.multiallelic_split += 1
                text = str(rec)
                batch.append((st.records, rec.chrom, rec.pos, rec.id or ".", rec.ref, alts, text))
                if records:
                    recs.append((rec, text))
                text_size += len(text)
                rows += len(alts)
                if text_size >= _TEXT_BUDGET:  # parse now: record text is ~4 bytes per call
                    parts.append(self._parse(batch))
                    batch, text_size = [], 0
                if rows >= self.block_size:
                    if batch:
                        parts.append(self._parse(batch))
                    block = _assemble(parts, done)
                    done += len(block)
                    yield (block, recs) if records else block
                    batch, parts, rows, text_size, recs = [], [], 0, 0, []
            if batch:
                parts.append(self._parse(batch))
            if parts:
                block = _assemble(parts, done)
                done += len(block)
                yield (block, recs) if records else block
            st.rows = done
        finally:
            vf.close()
        self._log_stats()

    def _log_stats(self) -> None:
        st = self.stats
        log.info("%s: %d records read, %d variant rows", self.path, st.records, st.rows)
        for name, note in _COUNTS.items():
            count = getattr(st, name)
            if note is not None and count:
                level, what = note
                log.log(level, "%s: %d %s", self.path, count, what.format(half_call=self.half_call))

    def _parse(self, batch: list) -> tuple[VariantTable, np.ndarray]:
        n = len(self.samples)
        m = len(batch)
        text = "".join(b[6] for b in batch).encode("utf-8", "surrogateescape")
        buf = np.frombuffer(text, dtype=np.uint8)
        nl = np.flatnonzero(buf == 10)
        if nl.shape[0] != m:  # pragma: no cover - pysam always ends a record with one newline
            raise AssertionError("unexpected record text from pysam")
        starts = np.empty(m + 1, dtype=np.int64)
        starts[0] = 0
        starts[1:] = nl + 1
        n_alleles = np.array([len(b[5]) + 1 for b in batch], dtype=np.int64)
        a1 = np.empty((m, n), dtype=np.int16)
        a2 = np.empty((m, n), dtype=np.int16)
        err = np.zeros(m, dtype=np.int64)
        err_sample = np.zeros(m, dtype=np.int64)
        n_hap = np.zeros(m, dtype=np.int64)
        n_half = np.zeros(m, dtype=np.int64)
        n_poly = np.zeros(m, dtype=np.int64)
        if n:
            _parse_gt(buf, starts, n_alleles, n, a1, a2, err, err_sample, n_hap, n_half, n_poly)
        bad = np.flatnonzero(err)
        if bad.size:
            r = int(bad[0])
            recno, chrom, pos = batch[r][0], batch[r][1], batch[r][2]
            code = int(err[r])
            who = ""
            if code in (_E_BAD_GT, _E_ALLELE, _E_FEW_SAMPLES):
                s = int(err_sample[r])
                who = f" (sample {self.samples.iid[s]!r})" if s < n else ""
            raise InputError(f"{self.path}, record {recno} ({chrom}:{pos}){self._line_hint(recno)}: the"
                             f" record {_ERRORS[code]}{who}; fix or remove the record",
                             kind='its VCF/BCF file has an invalid record')
        st = self.stats
        st.haploid_calls += int(n_hap.sum())
        st.half_calls += int(n_half.sum())
        st.polyploid_calls += int(n_poly.sum())
        if self.half_call == "error" and n_half.any():
            r = int(np.flatnonzero(n_half)[0])
            recno, chrom, pos = batch[r][0], batch[r][1], batch[r][2]
            raise InputError(f"{self.path}, record {recno} ({chrom}:{pos}){self._line_hint(recno)}: GT"
                             " half-call such as ./1; choose how to treat half-calls (half_call="
                             "'missing', 'haploid' or 'reference', like plink2 --vcf-half-call)",
                             kind='its VCF/BCF file has a GT half-call (set half_call)')
        rec_of_row = np.repeat(np.arange(m, dtype=np.int64), n_alleles - 1)
        alt_of_row = np.concatenate([np.arange(1, k, dtype=np.int64) for k in n_alleles]) \
            if m else np.zeros(0, np.int64)
        chrom, pos, ids, ref, alt = [], [], [], [], []
        for (_, c, p, i, rf, alts, _), k in zip(batch, n_alleles, strict=True):
            chrom += [c] * (k - 1)
            pos += [p] * (k - 1)
            ids += [i] * (k - 1)
            ref += [rf] * (k - 1)
            alt += list(alts)
        dosage = np.empty((rec_of_row.shape[0], n), dtype=np.int8)
        if dosage.size:
            mode = HALF_CALL_MODES.index(self.half_call)
            _dosage(a1, a2, rec_of_row, alt_of_row, mode, dosage)
        return VariantTable.from_columns(chrom, pos, ids, ref, alt), dosage

    def _line_hint(self, recno: int) -> str:
        """", line L" for a plain or bgzipped text VCF read from its start, else ""."""
        if self.region is not None or not self._is_text():
            return ""
        try:
            n_head = 0
            with self._open_text() as fh:
                for line in fh:
                    if not line.startswith(b"#"):
                        break
                    n_head += 1
            return f", line {n_head + recno}"
        except OSError:  # pragma: no cover
            return ""

    def _is_text(self) -> bool:
        with open(self.path, "rb") as fh:
            head = fh.read(2)
        if head == b"\x1f\x8b":
            try:
                with gzip.open(self.path, "rb") as gz:
                    return gz.read(5) == b"##fil"
            except OSError:
                return False
        return head == b"##"

    def _open_text(self):
        with open(self.path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        return gzip.open(self.path, "rb") if gz else open(self.path, "rb")

    def _record_error(self, recno: int, last, exc: Exception) -> InputError:
        after = f" (after {last[0]}:{last[1]})" if last else ""
        reason = self._diagnose(recno) or f"htslib could not parse it ({exc}; its message is on stderr)"
        return InputError(f"{self.path}, record {recno}{after}{self._line_hint(recno)}: {reason};"
                          " fix or remove the record",
                          kind='its VCF/BCF file has a malformed record')

    def _diagnose(self, recno: int) -> str | None:
        """Say what is wrong with data line ``recno`` of a text VCF, if we can tell."""
        if self.region is not None or not self._is_text():
            return None
        try:
            with self._open_text() as fh:
                k = 0
                n_cols = None
                for raw in fh:
                    if raw.startswith(b"##"):
                        continue
                    if raw.startswith(b"#"):
                        n_cols = len(raw.rstrip(b"\r\n").split(b"\t"))
                        continue
                    k += 1
                    if k == recno:
                        return _diagnose_line(raw.rstrip(b"\r\n").decode("utf-8", "replace"), n_cols)
        except OSError:
            return None
        return "the file ends inside this record (truncated?)"


def _assemble(parts: list, start: int) -> GenotypeBlock:
    if len(parts) == 1:
        variants, dosage = parts[0]
    else:
        variants = concat_variants([p[0] for p in parts])
        dosage = np.concatenate([p[1] for p in parts])
    return GenotypeBlock(variants, start, dosage=dosage)


def _diagnose_line(line: str, n_cols: int | None) -> str | None:
    f = line.split("\t")
    if n_cols is not None and len(f) != n_cols:
        return f"it has {len(f)} tab-separated columns, the header line has {n_cols}"
    if len(f) < 8:
        return f"it has {len(f)} tab-separated columns, a VCF record needs at least 8"
    if not f[1].isdigit():
        return f"POS {f[1]!r} is not a positive integer"
    if len(f) > 9:
        keys = f[8].split(":")
        for j, cell in enumerate(f[9:]):
            vals = cell.split(":")
            if len(vals) > len(keys):
                return f"sample column {j + 1} has {len(vals)} values for {len(keys)} FORMAT keys"
            if keys and keys[0] == "GT":
                parts = vals[0].replace("|", "/").split("/")
                if not all(p == "." or p.isdigit() for p in parts):
                    return f"sample column {j + 1} has GT {vals[0]!r}, not alleles separated by / or |"
    return None


def iter_vcf(path: str | os.PathLike[str], samples: Sequence[str] | None = None, region: str | None = None,
             block_size: int | None = None, multiallelic: str = "split",
             half_call: str = "error") -> Iterator[GenotypeBlock]:
    """Blocks of a VCF/BCF file; see :class:`VcfReader`."""
    yield from VcfReader(path, samples=samples, region=region, block_size=block_size,
                         multiallelic=multiallelic, half_call=half_call).blocks()
