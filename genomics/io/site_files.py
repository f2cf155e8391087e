"""A site's ``SiteData`` from the files its daemon's config names (``[data]`` table).

Genotypes come from a PLINK 1 fileset (``bfile``: rows read with ``pread`` and
checked, any variant in constant time; a file changed underneath fails the job) or a VCF/BCF (``vcf``, optional ``region``: read once into
two-bit packed codes, a quarter byte per genotype). Phenotype (``pheno``) and
covariate (``covar``) files are matched to the genotype samples by FID/IID.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cipherome.genomics.io.bed import BedReader, BedRows, read_bim
from cipherome.genomics.io.blocks import concat_variants
from cipherome.genomics.errors import InputError
from cipherome.genomics.io.packed import packed_width, unpack_dosage
from cipherome.genomics.io.pheno import align_to_samples, read_covar, read_pheno
from cipherome.genomics.site import SiteData
from cipherome.genomics.io.vcf import VcfReader

__all__ = ["site_from_config", "load_genotypes"]


def _data_path(site, key: str) -> Path:
    return site.path(key) if hasattr(site, "path") else Path(site["data"][key])


def load_genotypes(site):
    """(samples SampleTable, variants VariantTable, read(idx, mask) -> int8) for the site's genotype file."""
    data = site.data if hasattr(site, "data") else site["data"]
    if "bfile" in data:
        reader = BedReader(_data_path(site, "bfile"))
        variants = read_bim(reader.paths["bim"])
        n = len(reader.samples)
        w = packed_width(n)
        rows = BedRows(reader.paths["bed"], reader.n_variants, w)
        samples = reader.samples

        def read(idx, mask):
            return unpack_dosage(rows.rows(idx), n, np.flatnonzero(mask))

        return samples, variants, read
    if "vcf" in data:
        reader = VcfReader(_data_path(site, "vcf"), region=data.get("region"))
        blocks = list(reader.blocks())
        if not blocks:
            raise InputError(f"{_data_path(site, 'vcf')}: no variants (after region and multi-allelic handling)")
        variants = concat_variants([b.variants for b in blocks])
        packed = np.concatenate([b.packed for b in blocks])
        n = len(reader.samples)

        def read(idx, mask):
            return unpack_dosage(packed[np.asarray(idx)], n, np.flatnonzero(mask))

        return reader.samples, variants, read
    raise InputError(f"site {getattr(site, 'name', '?')}: its config has no genotype file; "
                     "add bfile = PREFIX or vcf = FILE to its [data] table")


def site_from_config(site, params) -> SiteData:
    """Build the site's ``SiteData`` for a GWAS with ``params`` (pheno_name, covar_names)."""
    data = site.data
    samples, variants, read = load_genotypes(site)
    if "pheno" not in data:
        raise InputError(f"site {site.name}: no phenotype file; add pheno = FILE to its [data] table")
    names = [params.pheno_name] if params.pheno_name else None
    pheno = read_pheno(_data_path(site, "pheno"), names, control_zero=params.case_control_01)
    y = align_to_samples(pheno, samples)[:, 0]
    if "covar" in data:
        cov_table = read_covar(_data_path(site, "covar"), params.covar_names)
        cov, cov_names = align_to_samples(cov_table, samples), list(cov_table.names)
    else:
        if params.covar_names:
            raise InputError(f"site {site.name}: --covar-name given but its config has no covar file")
        cov, cov_names = np.zeros((len(samples), 0)), []
    return SiteData(np.asarray(samples.iid, dtype=object), y, cov, cov_names, variants, read,
                    dict(site.policy), site.name, pheno.names[0])
