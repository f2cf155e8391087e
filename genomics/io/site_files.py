"""A site's ``SiteData`` from the files its daemon's config names (``[data]`` table).

Genotypes come from a PLINK 1 fileset (``bfile``: rows read with ``pread`` and
checked, any variant in constant time; a file changed underneath fails the job), a PLINK 2
fileset (``pfile``: through pgenlib, hard calls and the dosages it stores), a BGEN file
(``bgen`` with ``sample``, optional ``bgen_ref = "first"``: dosages through cbgen) or a VCF/BCF
(``vcf_dosage = "DS"`` or ``"GP"``: its dosages, as ``plink2 --vcf FILE dosage=DS``) (``vcf``,
optional ``region``: read once into
two-bit packed codes, a quarter byte per genotype). Phenotype (``pheno``) and
covariate (``covar``) files are matched to the genotype samples by FID/IID.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cipherome.genomics.io.bed import BedReader, BedRows, read_bim
from cipherome.genomics.io.blocks import concat_variants
from cipherome.genomics.errors import InputError
from cipherome.genomics.io.packed import PackedCalls, packed_width, subset_packed, unpack_dosage
from cipherome.genomics.io.bgen import BgenReader
from cipherome.genomics.io.pgen import PgenReader
from cipherome.genomics.io.vcf_dosage import VcfDosageReader
from cipherome.genomics.io.pheno import align_to_samples, read_covar, read_pheno
from cipherome.genomics.site import SiteData
from cipherome.genomics.io.vcf import VcfReader

__all__ = ["site_from_config", "load_genotypes", "site_inclusion", "site_genotypes_only"]


def _data_path(site, key: str) -> Path:
    return site.path(key) if hasattr(site, "path") else Path(site["data"][key])


def load_genotypes(site):
    """(samples SampleTable, variants VariantTable, read(idx, mask) -> int8, read_dosage or None) for the site's file.

    read_dosage(idx, mask) -> float32 ALT dosages (NaN missing) when the file has dosages.
    """
    data = site.data if hasattr(site, "data") else site["data"]
    if "pfile" in data:
        reader = PgenReader(_data_path(site, "pfile"))

        def read(idx, mask):
            return reader.read_hard(idx)[:, np.asarray(mask, bool)]

        def read_dosage(idx, mask):
            return reader.read_dosage(idx)[:, np.asarray(mask, bool)]

        read.check = reader.check  # SiteData.check_inputs: the .pgen unchanged since it was opened
        return reader.samples, reader.variants, read, read_dosage if reader.has_dosage else None
    if "bgen" in data:
        ref = str(data.get("bgen_ref", "last"))
        if ref not in ("first", "last"):
            raise InputError(f"site {getattr(site, 'name', '?')}: bgen_ref must be \"first\" or \"last\" (which"
                             " BGEN allele is REF; plink2's default is last)",
                             kind='its config has an invalid bgen_ref')
        reader = BgenReader(_data_path(site, "bgen"), _data_path(site, "sample") if "sample" in data else None,
                            ref_first=ref == "first")

        def read(idx, mask):
            return reader.read_hard(idx)[:, np.asarray(mask, bool)]

        def read_dosage(idx, mask):
            return reader.read_dosage(idx)[:, np.asarray(mask, bool)]

        return reader.samples, reader.variants, read, read_dosage
    if "bfile" in data:
        reader = BedReader(_data_path(site, "bfile"))
        variants = read_bim(reader.paths["bim"])
        n = len(reader.samples)
        w = packed_width(n)
        rows = BedRows(reader.paths["bed"], reader.n_variants, w)
        samples = reader.samples

        return samples, variants, BedCalls(rows, n), None
    if "vcf" in data and "vcf_dosage" in data:
        reader = VcfDosageReader(_data_path(site, "vcf"), str(data["vcf_dosage"]), region=data.get("region"))
        variants, hard, dos = reader.read_all()

        def read(idx, mask):
            return hard[np.asarray(idx)][:, np.asarray(mask, bool)]

        def read_dosage(idx, mask):
            return dos[np.asarray(idx)][:, np.asarray(mask, bool)]

        return reader.samples, variants, read, read_dosage
    if "vcf" in data:
        reader = VcfReader(_data_path(site, "vcf"), region=data.get("region"))
        blocks = list(reader.blocks())
        if not blocks:
            raise InputError(f"{_data_path(site, 'vcf')}: no variants (after region and multi-allelic handling)",
                             kind='its VCF has no variants after region and multi-allelic handling')
        variants = concat_variants([b.variants for b in blocks])
        packed = np.concatenate([b.packed for b in blocks])
        n = len(reader.samples)

        def read(idx, mask):
            return unpack_dosage(packed[np.asarray(idx)], n, np.flatnonzero(mask))

        return reader.samples, variants, read, None
    raise InputError(f"site {getattr(site, 'name', '?')}: its config has no genotype file; "
                     "add bfile = PREFIX, pfile = PREFIX, bgen = FILE (with sample = FILE) or vcf = FILE to its"
                     " [data] table",
                     kind='its config has no genotype file')


class BedCalls:
    """A .bed file's hard calls: ``read(idx, mask)`` gives int8 ALT dosages (``SiteData.read``);
    ``packed(idx, mask)`` gives the same calls still packed (``PackedCalls``), for the counting
    kernels, without decoding every call to a byte and packing it again."""

    def __init__(self, rows: BedRows, n: int):
        self.rows, self.n = rows, int(n)

    def __call__(self, idx, mask) -> np.ndarray:
        sel = np.flatnonzero(mask)  # every sample kept: the byte-table decoder, 2.6x faster than by index
        return unpack_dosage(self.rows.rows(idx), self.n, None if sel.size == self.n else sel)

    def check(self) -> None:
        """Raise if the .bed changed since it was opened (``SiteData.check_inputs``)."""
        self.rows.check()

    def packed(self, idx, mask) -> PackedCalls:
        sel = np.flatnonzero(mask)
        raw = self.rows.rows(idx)
        if sel.size == self.n:
            return PackedCalls(raw, self.n)
        return PackedCalls(subset_packed(raw, self.n, sel), int(sel.size))


def site_from_config(site, params) -> SiteData:
    """Build the site's ``SiteData`` for a GWAS with ``params`` (pheno_name, covar_names)."""
    data = site.data
    samples, variants, read, read_dosage = load_genotypes(site)
    if "pheno" not in data:
        raise InputError(f"site {site.name}: no phenotype file; add pheno = FILE to its [data] table",
                         kind='its config has no phenotype file')
    names = [params.pheno_name] if params.pheno_name else None
    pheno = read_pheno(_data_path(site, "pheno"), names, control_zero=params.case_control_01)
    y = align_to_samples(pheno, samples)[:, 0]
    if "covar" in data and params.covar_names != []:  # [] = --glm allow-no-covars
        cov_table = read_covar(_data_path(site, "covar"), params.covar_names)
        cov, cov_names = align_to_samples(cov_table, samples), list(cov_table.names)
    else:
        if params.covar_names:
            raise InputError(f"site {site.name}: --covar-name given but its config has no covar file",
                             kind='--covar-name given but its config has no covariate file')
        cov, cov_names = np.zeros((len(samples), 0)), []
    geno_key = next(k for k in ("bfile", "pfile", "bgen", "vcf") if k in data)
    out_dir = _data_path(site, "output_dir") if "output_dir" in data else _data_path(site, geno_key).parent
    return SiteData(np.asarray(samples.iid, dtype=object), y, cov, cov_names, variants, read,
                    dict(site.policy), site.name, pheno.names[0], read_dosage, site_inclusion(site, samples),
                    samples.sex, fid=None if samples.fid is None else np.asarray(samples.fid, dtype=object),
                    output_dir=str(out_dir), check_inputs=getattr(read, "check", None))


def site_inclusion(site, samples) -> np.ndarray | None:
    """(n,) bool of the samples left in by the site's ``keep``/``remove`` lists (plink2 --keep/--remove); None: all."""
    data = site.data
    if "keep" not in data and "remove" not in data:
        return None
    from cipherome.genomics.gwas.select import sample_selection

    return sample_selection(samples, _data_path(site, "keep") if "keep" in data else None,
                            _data_path(site, "remove") if "remove" in data else None)


def site_genotypes_only(site) -> SiteData:
    """The site's ``SiteData`` for a workload without phenotypes (``gwas.freq``): genotypes, samples, lists."""
    samples, variants, read, read_dosage = load_genotypes(site)
    n = len(samples)
    return SiteData(np.asarray(samples.iid, dtype=object), np.full(n, np.nan), np.zeros((n, 0)), [], variants, read,
                    dict(site.policy), site.name, "PHENO1", read_dosage, site_inclusion(site, samples), samples.sex)
