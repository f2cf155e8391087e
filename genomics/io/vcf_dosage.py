"""Imputed dosages from a VCF/BCF's ``DS`` (or ``GP``) field through pysam, as ``plink2 --vcf FILE dosage=DS|GP`` imports them.

Per sample and ALT allele: the ``DS`` value (``Number=A``: one per ALT) or, from ``GP``
(biallelic records), P(het) + 2 P(hom ALT); where the field is absent or ``.`` (or the header lacks it, with a warning, as plink2) the
sample's GT call stands in (plink2 writes ``DS`` only where it differs from the call,
``--export vcf vcf-dosage=DS``); neither gives a missing dosage. Dosages are rounded to
PLINK 2's 1/16384 step and hard calls derived from them at its 0.1 threshold
(:mod:`cipherome.genomics.io.dosage`), as plink2's import does. Multi-allelic records
are split into one row per ALT as :mod:`cipherome.genomics.io.vcf` splits them (GT:
the other ALTs count as "not this ALT"); ``GP`` on a multi-allelic record is an error.

pysam decodes the record; the per-sample values are taken from its Python objects, so
this reader costs about a microsecond per genotype: fine for imputed panels of
thousands of samples, not a .bed-speed path.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import default_block_size
from cipherome.genomics.io.blocks import GenotypeBlock, SampleTable, VariantTable
from cipherome.genomics.io.dosage import hard_calls, quantize
from cipherome.genomics.io.vcf import open_variant_file

__all__ = ["VcfDosageReader", "DOSAGE_FIELDS"]

DOSAGE_FIELDS = ("DS", "GP")

log = logging.getLogger(__name__)


class VcfDosageReader:
    """A VCF/BCF read as dosage blocks from ``field`` (``"DS"`` or ``"GP"``); ``region`` needs an index.

    Attributes: ``samples``, ``path``, ``field``; :meth:`read_all` returns the whole file.
    """

    has_dosage = True

    def __init__(self, path: str | os.PathLike[str], field: str = "DS", region: str | None = None,
                 block_size: int | None = None):
        if field not in DOSAGE_FIELDS:
            raise InputError(f"dosage field {field!r}: use DS or GP (as plink2 --vcf FILE dosage=DS)",
                             kind='its VCF dosage (DS/GP) data is invalid')
        self.path, self.field, self.region = Path(path), field, region
        if not self.path.is_file():
            raise InputError(f"{self.path}: VCF/BCF file not found",
                             kind='its VCF dosage (DS/GP) data is invalid')
        with open_variant_file(self.path) as vf:
            names = list(vf.header.samples)
            formats = set(vf.header.formats.keys())
        if field not in formats:  # as plink2: a warning, and the GT calls are the dosages
            log.warning("%s: no FORMAT/%s in the header; dosages are the GT calls", self.path, field)
        if field not in formats and "GT" not in formats:
            raise InputError(f"{self.path}: the header declares neither FORMAT/{field} nor FORMAT/GT; there are no"
                             " genotypes to read",
                             kind='its VCF dosage (DS/GP) data is invalid')
        if not names:
            raise InputError(f"{self.path}: the VCF has no samples",
                             kind='its VCF dosage (DS/GP) data is invalid')
        self.samples = SampleTable.from_columns(names)
        self.block_size = int(block_size) if block_size else default_block_size(len(names))

    def _records(self):
        with open_variant_file(self.path) as vf:
            try:
                it = vf.fetch(region=self.region) if self.region else vf
            except ValueError as e:
                raise InputError(f"{self.path}: cannot read region {self.region!r} ({e}); index the file"
                                 " (bcftools index) or drop the region",
                                 kind='its VCF dosage (DS/GP) data is invalid') from None
            yield from it

    def _rows(self, rec) -> tuple[list, np.ndarray]:
        alts = rec.alts or ()
        n = len(self.samples)
        d = np.full((len(alts), n), np.nan)
        if self.field == "GP" and len(alts) > 1:
            raise InputError(f"{self.path}: {rec.chrom}:{rec.pos} is multi-allelic; GP dosages are read for"
                             " biallelic records only (use DS, or split the file with bcftools norm -m-)",
                             kind='its VCF dosage (DS/GP) data is invalid')
        for i, s in enumerate(rec.samples.values()):
            v = s.get(self.field)
            if v is not None and not isinstance(v, tuple):
                v = (v,)
            if v is not None and all(x is not None for x in v):
                if self.field == "DS":
                    d[:, i] = v[: len(alts)]
                else:
                    d[0, i] = v[1] + 2.0 * v[2]
                continue
            gt = s.get("GT")
            if gt is None or any(a is None for a in gt):
                continue
            for j in range(len(alts)):
                c = sum(1 for a in gt if a == j + 1)
                d[j, i] = 2.0 * c if len(gt) == 1 else c  # haploid calls stored as homozygous, as plink2
        meta = [(rec.chrom, rec.pos, rec.id or ".", rec.ref, a) for a in alts]
        return meta, d

    def blocks(self) -> Iterator[GenotypeBlock]:
        """Yield :class:`GenotypeBlock` s (hard calls and ``float_dosage``) of up to ``block_size`` rows."""
        meta, rows, start = [], [], 0
        for rec in self._records():
            m, d = self._rows(rec)
            meta += m
            rows.append(d)
            if len(meta) >= self.block_size:
                yield self._block(meta, rows, start)
                start += len(meta)
                meta, rows = [], []
        if meta:
            yield self._block(meta, rows, start)

    def __iter__(self) -> Iterator[GenotypeBlock]:
        return self.blocks()

    @staticmethod
    def _block(meta, rows, start) -> GenotypeBlock:
        d = quantize(np.concatenate(rows))
        v = VariantTable.from_columns(*zip(*meta)) if meta else VariantTable.from_columns([], [], [], [], [])
        return GenotypeBlock(v, start, dosage=hard_calls(d), float_dosage=d)

    def read_all(self) -> tuple[VariantTable, np.ndarray, np.ndarray]:
        """(variants, hard calls (m, n) int8, dosages (m, n) float32) of the whole file (or region)."""
        from cipherome.genomics.io.blocks import concat_variants

        blocks = list(self.blocks())
        if not blocks:
            raise InputError(f"{self.path}: no variants{' in ' + self.region if self.region else ''}",
                             kind='its VCF dosage (DS/GP) data is invalid')
        return (concat_variants([b.variants for b in blocks]), np.concatenate([b.dosage for b in blocks]),
                np.concatenate([b.float_dosage for b in blocks]))
