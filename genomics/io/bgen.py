"""BGEN 1.2/1.3 genotype probabilities (zlib or zstd, 1-32 bits) read through ``cbgen`` as dosage blocks.

``cbgen`` is the C BGEN library's thin binding (the same code ``bgen-reader`` uses
underneath): it reads one variant's probabilities by file offset, with no dask or
xarray layer and no metadata cache written into the user's home folder, which is what
a site daemon wants. Variant descriptions come from the ``.bgi`` index (SQLite, written
by ``bgenix``) when it exists beside the file, else from a cbgen metafile built once in
a temporary folder. Samples come from the ``sample = FILE`` Oxford .sample file (ID_1
as FID, ID_2 as IID, an optional ``sex`` column), else from the IDs stored in the BGEN.

Conventions (``plink2 --bgen FILE ref-last``, its default, and what ``plink2 --export
bgen-1.2`` writes): the last allele is REF and the first ALT; dosages are rounded to
PLINK 2's 1/16384 step and hard calls derived at its 0.1 threshold
(:mod:`cipherome.genomics.io.dosage`). Biallelic diploid variants only; another ploidy
or allele count raises an :class:`InputError` naming the variant.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import resolve_samples, default_block_size
from cipherome.genomics.io.blocks import GenotypeBlock, SampleTable, VariantTable
from cipherome.genomics.io.dosage import dosage_from_probs, hard_calls, probability_bits

__all__ = ["BgenReader", "read_sample_file"]


def read_sample_file(path: str | os.PathLike[str]) -> SampleTable:
    """Oxford .sample (``ID_1 ID_2 missing [sex]``, a type line ``0 0 0 D``, one line per sample)."""
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError as e:
        raise InputError(f"{path}: cannot read the .sample file ({e.strerror})",
                         kind='its BGEN file or its sample file is invalid') from None
    if len(lines) < 2 or lines[0][:2] != ["ID_1", "ID_2"]:
        raise InputError(f"{path}, line 1: not an Oxford .sample file (the header must start with ID_1 ID_2)",
                         kind='its BGEN file or its sample file is invalid')
    head = lines[0]
    body = lines[2:]
    bad = next((i for i, f in enumerate(body) if len(f) != len(head)), None)
    if bad is not None:
        raise InputError(f"{path}, line {bad + 3}: expected {len(head)} columns as in the header, found {len(body[bad])}",
                         kind='its BGEN file or its sample file is invalid')
    if not body:
        raise InputError(f"{path}: the .sample file lists no samples",
                         kind='its BGEN file or its sample file is invalid')
    isex = head.index("sex") if "sex" in head else None
    sex = [(1 if f[isex] == "1" else 2 if f[isex] == "2" else 0) if isex is not None else 0 for f in body]
    return SampleTable.from_columns([f[1] for f in body], [f[0] for f in body], sex)


def _variants_from_bgi(bgi: Path) -> tuple[list, np.ndarray]:
    con = sqlite3.connect(f"file:{bgi}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT chromosome, position, rsid, number_of_alleles, allele1, allele2,"
                           " file_start_position FROM Variant ORDER BY file_start_position").fetchall()
    except sqlite3.Error as e:
        raise InputError(f"{bgi}: not a bgenix .bgi index ({e}); remove it or re-create it with bgenix -index",
                         kind='its BGEN file or its sample file is invalid') from None
    finally:
        con.close()
    meta = [(str(c), int(p), str(r), int(k), [str(a1), str(a2)]) for c, p, r, k, a1, a2, _ in rows]
    return meta, np.array([r[6] for r in rows], dtype=np.int64)


def _variants_from_metafile(bgen) -> tuple[list, np.ndarray]:
    import cbgen

    meta, offsets = [], []
    with tempfile.TemporaryDirectory(prefix="cipherome-bgen-") as tmp:
        mf_path = Path(tmp) / "variants.metafile"
        bgen.create_metafile(mf_path)
        with cbgen.bgen_metafile(mf_path) as mf:
            for part in range(mf.npartitions):
                v = mf.read_partition(part).variants
                for i in range(len(v.offset)):
                    rsid, vid = v.rsid[i].decode(), v.id[i].decode()
                    alleles = v.allele_ids[i].decode().split(",")
                    meta.append((v.chromosome[i].decode(), int(v.position[i]), rsid or vid, int(v.nalleles[i]), alleles))
                    offsets.append(int(v.offset[i]))
    return meta, np.array(offsets, dtype=np.int64)


class BgenReader:
    """A BGEN file opened for dosage blocks (see the module doc).

    ``sample_file``: the Oxford .sample path (None: the IDs inside the BGEN);
    ``samples``: None, IIDs or indices to keep; ``ref_first``: the first allele is REF
    (``plink2 --bgen ... ref-first``). Attributes: ``samples``, ``variants``, ``n_variants``,
    ``has_dosage`` (True), ``path``.
    """

    has_dosage = True

    def __init__(self, path: str | os.PathLike[str], sample_file: str | os.PathLike[str] | None = None,
                 samples: Sequence[str] | np.ndarray | None = None, block_size: int | None = None,
                 ref_first: bool = False):
        import cbgen

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: BGEN file not found",
                             kind='its BGEN file or its sample file is invalid')
        try:
            self._bgen = cbgen.bgen_file(self.path)
        except RuntimeError as e:
            raise InputError(f"{self.path}: cbgen cannot open it as a BGEN file ({e})",
                             kind='its BGEN file or its sample file is invalid') from None
        n_file = self._bgen.nsamples
        if sample_file is not None:
            table = read_sample_file(sample_file)
            if len(table) != n_file:
                raise InputError(f"{sample_file}: lists {len(table)} samples but {self.path.name} holds {n_file};"
                                 " the .sample file must belong to this BGEN",
                                 kind='its BGEN file or its sample file is invalid')
        elif self._bgen.contain_samples:
            ids = [s.decode() if isinstance(s, bytes) else str(s) for s in self._bgen.read_samples()]
            table = SampleTable.from_columns(ids, ids)
        else:
            raise InputError(f"{self.path}: the BGEN stores no sample IDs; name its .sample file (sample = FILE)",
                             kind='its BGEN file or its sample file is invalid')
        self._index = resolve_samples(table, samples, Path(sample_file or self.path))
        self.samples = table if self._index is None else table[self._index]
        bgi = self.path.with_name(self.path.name + ".bgi")
        meta, self._offsets = _variants_from_bgi(bgi) if bgi.is_file() else _variants_from_metafile(self._bgen)
        multi = [m for m in meta if m[3] != 2]
        if multi:
            c, p, r = multi[0][:3]
            raise InputError(f"{self.path}: variant {r} ({c}:{p}) has {multi[0][3]} alleles; only biallelic BGEN"
                             " variants are read (split it with plink2 --bgen ... --make-pgen multiallelics=-)",
                             kind='its BGEN file or its sample file is invalid')
        self._alt_first = not ref_first
        a = 0 if self._alt_first else 1
        self.variants = VariantTable.from_columns([m[0] for m in meta], [m[1] for m in meta], [m[2] for m in meta],
                                                  [m[4][1 - a] for m in meta], [m[4][a] for m in meta])
        self.n_variants = len(meta)
        self.block_size = int(block_size) if block_size else default_block_size(len(self.samples))

    def close(self) -> None:
        self._bgen.close()

    def read_dosage(self, rows: np.ndarray) -> np.ndarray:
        """Dosages ``(r, n)`` float32 (NaN missing) of variant rows, in PLINK 2's 1/16384 steps."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, len(self.samples)), dtype=np.float32)
        for k, r in enumerate(rows.tolist()):
            gt = self._bgen.read_genotype(int(self._offsets[r]))
            if not np.all(gt.ploidy == 2) or gt.probability.shape[1] != (4 if gt.phased else 3):
                v = self.variants
                raise InputError(f"{self.path}: variant {v.id[r]} ({v.chrom[r]}:{v.pos[r]}) is not diploid for every"
                                 " sample; only diploid BGEN variants are read",
                                 kind='its BGEN file or its sample file is invalid')
            bits = probability_bits(gt.probability)
            p = gt.probability if self._index is None else gt.probability[self._index]
            out[k] = dosage_from_probs(p, bool(gt.phased), self._alt_first, bits)
        return out

    def read_hard(self, rows: np.ndarray) -> np.ndarray:
        """Hard calls ``(r, n)`` int8 of the dosages at plink2's 0.1 threshold, -1 missing."""
        return hard_calls(self.read_dosage(rows))

    def __iter__(self) -> Iterator[GenotypeBlock]:
        return self.blocks()

    def blocks(self) -> Iterator[GenotypeBlock]:
        """Yield :class:`GenotypeBlock` s (hard calls and ``float_dosage``) of up to ``block_size`` variants."""
        for start in range(0, self.n_variants, self.block_size):
            rows = np.arange(start, min(start + self.block_size, self.n_variants))
            d = self.read_dosage(rows)
            yield GenotypeBlock(self.variants[rows], start, dosage=hard_calls(d), float_dosage=d)
