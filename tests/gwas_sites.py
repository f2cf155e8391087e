"""Build in-memory ``SiteData`` for each site of a simulated study (tests and benchmarks)."""
from __future__ import annotations

import numpy as np

from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.site import SiteData


def sites_from_study(study, covariates: np.ndarray, names: list[str], trait: str = "quant") -> list[SiteData]:
    """One SiteData per site; ``covariates`` (n, c) over the pooled samples; trait 'quant' or 'binary'."""
    vt = VariantTable.from_columns(study.chrom.astype(str), study.pos, study.variant_id, study.ref, study.alt)
    sites = []
    for s in range(study.config.n_sites):
        idx = study.site_samples(s)
        y = (study.quant if trait == "quant" else study.binary)[idx]
        sites.append(SiteData.from_arrays(study.iid[idx], y, covariates[idx], names, vt,
                                          study.genotypes[:, idx], name=f"site{s + 1}"))
    return sites


def site_data_tables(files: dict, n_sites: int, vcf_site: int | None = 1) -> list[dict]:
    """Each site's [data] table for files written by ``write_study``; site ``vcf_site`` brings a VCF."""
    data = []
    for s in range(n_sites):
        f = files[f"site{s + 1}"]
        site = {"pheno": str(f["pheno"]), "covar": str(f["covar"])}
        if s == vcf_site:
            site["vcf"] = str(f["vcf"])
        else:
            site["bfile"] = str(f["bed"].with_suffix(""))
        data.append(site)
    return data
