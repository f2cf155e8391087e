"""Genotype blocks: the unit every genotype reader yields, a slice of variants over all selected samples.

A block pairs a :class:`VariantTable` (one row per variant) with the genotypes of those
variants, held as int8 ALT dosages ``(m, n)`` (0/1/2, -1 missing) and/or as packed
two-bit codes ``(m, ceil(n/4))``; each form is given, made by a source the reader
passes (a callable), or derived from the other on first use.
Readers of imputed data (.pgen, BGEN, VCF ``DS``) add ``float_dosage`` ``(m, n)``
float32 expected ALT counts in [0, 2] (NaN missing) beside the hard calls.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cipherome.genomics.io.packed import pack_dosage, packed_width, unpack_dosage

__all__ = ["VariantTable", "SampleTable", "GenotypeBlock", "concat_variants"]


def _obj(values, n: int | None = None) -> np.ndarray:
    a = np.empty(len(values), dtype=object)
    a[:] = list(values) if not isinstance(values, np.ndarray) else values
    if n is not None and a.shape[0] != n:
        raise ValueError(f"expected {n} values, got {a.shape[0]}")
    return a


@dataclass(frozen=True, eq=False)
class VariantTable:
    """Variant descriptions, one row per variant.

    chrom, id, ref, alt: ``(m,)`` object arrays of str (chromosome names as in the
    file; ``id`` may be "."); pos: ``(m,)`` int64, 1-based.  ``alt`` is the allele
    whose dosage the genotype arrays count.
    """

    chrom: np.ndarray
    pos: np.ndarray
    id: np.ndarray
    ref: np.ndarray
    alt: np.ndarray

    @classmethod
    def from_columns(cls, chrom: Sequence[str], pos: Sequence[int], id: Sequence[str],
                     ref: Sequence[str], alt: Sequence[str]) -> VariantTable:
        """Build from any sequences of equal length (copied into numpy arrays)."""
        n = len(pos)
        return cls(_obj(chrom, n), np.asarray(pos, dtype=np.int64).reshape(n),
                   _obj(id, n), _obj(ref, n), _obj(alt, n))

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def __getitem__(self, index) -> VariantTable:
        """Rows selected by a slice, an integer array or a boolean mask."""
        return VariantTable(self.chrom[index], self.pos[index], self.id[index],
                            self.ref[index], self.alt[index])


def concat_variants(tables: Sequence[VariantTable]) -> VariantTable:
    """Concatenate variant tables row-wise."""
    if not tables:
        return VariantTable.from_columns([], [], [], [], [])
    return VariantTable(*(np.concatenate([getattr(t, f) for t in tables])
                          for f in ("chrom", "pos", "id", "ref", "alt")))


@dataclass(frozen=True, eq=False)
class SampleTable:
    """Samples of a genotype file, in genotype column order.

    iid: ``(n,)`` object array of str; fid: ``(n,)`` object array of str, or None when
    the file has no family IDs (VCF); sex: ``(n,)`` int8, 1 male, 2 female, 0 unknown.
    """

    iid: np.ndarray
    fid: np.ndarray | None
    sex: np.ndarray

    @classmethod
    def from_columns(cls, iid: Sequence[str], fid: Sequence[str] | None = None,
                     sex: Sequence[int] | None = None) -> SampleTable:
        n = len(iid)
        return cls(_obj(iid, n), None if fid is None else _obj(fid, n),
                   np.zeros(n, np.int8) if sex is None else np.asarray(sex, dtype=np.int8).reshape(n))

    def __len__(self) -> int:
        return int(self.iid.shape[0])

    def __getitem__(self, index) -> SampleTable:
        return SampleTable(self.iid[index], None if self.fid is None else self.fid[index],
                           self.sex[index])


class GenotypeBlock:
    """Genotypes of ``m`` consecutive variants (rows ``start .. start+m-1`` of the file) for ``n`` samples.

    Attributes: ``variants`` (:class:`VariantTable`, m rows), ``start`` (int),
    ``n_samples`` (int); properties ``dosage`` ``(m, n)`` int8 and ``packed``
    ``(m, ceil(n/4))`` uint8; ``float_dosage``: ``(m, n)`` float32 ALT dosages (NaN
    missing) or None for hard calls only.

    Each of ``dosage``/``packed`` is, on first access, the array given for it; else what its
    source gives (``dosage_source``/``packed_source``: a zero-argument callable, called at
    most once, e.g. decoding bytes a reader kept for the block); else derived from the
    other form. A reader that can produce either form directly (a .pgen) gives both sources
    and a consumer pays only for the form it asks for.
    """

    __slots__ = ("variants", "start", "n_samples", "_dosage", "_packed", "_dosage_source", "_packed_source",
                 "float_dosage")

    def __init__(self, variants: VariantTable, start: int, *, dosage: np.ndarray | None = None,
                 packed: np.ndarray | None = None, n_samples: int | None = None,
                 float_dosage: np.ndarray | None = None,
                 dosage_source: Callable[[], np.ndarray] | None = None,
                 packed_source: Callable[[], np.ndarray] | None = None):
        if dosage is None and packed is None and dosage_source is None and packed_source is None:
            raise ValueError("a block needs dosage or packed genotypes (or a source of them)")
        if dosage is not None:
            if dosage.dtype != np.int8 or dosage.ndim != 2:
                raise ValueError("dosage must be a 2-D int8 array")
            n_samples = dosage.shape[1]
        elif n_samples is None:
            raise ValueError("a block without a dosage array needs n_samples")
        m = len(variants)
        if dosage is not None and dosage.shape[0] != m:
            raise ValueError(f"dosage has {dosage.shape[0]} rows for {m} variants")
        if packed is not None and packed.shape != (m, packed_width(n_samples)):
            raise ValueError(f"packed shape {packed.shape} does not fit {m} x {n_samples}")
        if float_dosage is not None and float_dosage.shape != (m, n_samples):
            raise ValueError(f"float_dosage shape {float_dosage.shape} does not fit {m} x {n_samples}")
        self.variants = variants
        self.float_dosage = float_dosage
        self.start = int(start)
        self.n_samples = int(n_samples)
        self._dosage = dosage
        self._packed = packed
        self._dosage_source = dosage_source
        self._packed_source = packed_source

    def __len__(self) -> int:
        return len(self.variants)

    @property
    def dosage(self) -> np.ndarray:
        """``(m, n)`` int8 ALT dosage, -1 missing."""
        if self._dosage is None:
            if self._dosage_source is not None:
                d, self._dosage_source = self._dosage_source(), None
                if d.dtype != np.int8 or d.shape != (len(self), self.n_samples):
                    raise ValueError(f"dosage source gave {d.dtype} {d.shape} for {len(self)} x {self.n_samples}")
            else:
                d = unpack_dosage(self.packed, self.n_samples)
            self._dosage = d
        return self._dosage

    @property
    def packed(self) -> np.ndarray:
        """``(m, ceil(n/4))`` uint8 two-bit codes (see :mod:`cipherome.genomics.io.packed`)."""
        if self._packed is None:
            if self._packed_source is not None:
                p, self._packed_source = self._packed_source(), None
                if p.dtype != np.uint8 or p.shape != (len(self), packed_width(self.n_samples)):
                    raise ValueError(f"packed source gave {p.dtype} {p.shape} for {len(self)} x {self.n_samples}")
            else:
                p = pack_dosage(self.dosage)
            self._packed = p
        return self._packed
