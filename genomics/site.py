"""What one site brings to a study: its samples, phenotype, covariates and genotype access.

Workload jobs see a site only through ``SiteData``, so the same job runs on
in-memory arrays (tests, the demo's simulator) and on the site's files (PLINK
.bed or VCF/BCF, phenotype and covariate files) named in its daemon's config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cipherome.genomics.io.blocks import VariantTable

__all__ = ["SiteData", "binary_trait"]


def binary_trait(y: np.ndarray) -> bool:
    """Whether phenotype values (NaN missing, cases already coded 1 and controls 0) are binary."""
    v = np.asarray(y, float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(np.all((v == 0) | (v == 1)))


@dataclass
class SiteData:
    """One site's data; arrays over its n samples in genotype-file order.

    iid (n,) str; y (n,) float64 with NaN for missing (binary traits: 1 case, 0
    control); covariates (n, c) float64 with NaN for missing; covar_names (c,);
    variants: the site's variant table (m rows);
    read(local_indices (V,) int64, sample_mask (n,) bool) -> (V, n_sel) int8 ALT dosages.
    ``policy``: the site's disclosure policy table (e.g. min_cell_size).
    read_dosage: None for hard calls only, else the same signature returning (V, n_sel)
    float32 ALT dosages in [0, 2], NaN missing (imputed data: .pgen, BGEN, VCF DS);
    association then uses the dosages and QC the hard calls, as plink2 does.
    included: (n,) bool, the samples the site's keep/remove lists leave in (None: all);
    sex: (n,) int8 1 male, 2 female, 0 unknown (None: unknown), for plink2's ploidy rules.
    ``policy``: the site's disclosure policy table (e.g. min_cell_size). ``fid`` (n,) str or None;
    ``output_dir``: the site's own output folder (``[data] output_dir``, default beside its
    genotype file) for files that never leave the site (``PREFIX.SITE.eigenvec``).
    ``check_inputs``: raises ``InputError`` (kind ``CHANGED_KIND``) if the genotype file changed in place since
    it was opened; a job calls it after its last read, before its last collective step.
    """

    iid: np.ndarray
    y: np.ndarray
    covariates: np.ndarray
    covar_names: list[str]
    variants: VariantTable
    read: Callable[[np.ndarray, np.ndarray], np.ndarray]
    policy: dict = field(default_factory=dict)
    name: str = "site"
    pheno_name: str = "PHENO1"
    read_dosage: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    included: np.ndarray | None = None
    sex: np.ndarray | None = None
    fid: np.ndarray | None = None
    output_dir: str | None = None  # where site-only outputs go (PREFIX.SITE.eigenvec); None: not written
    check_inputs: Callable[[], None] | None = None  # raises if the genotype file changed since it was opened

    @property
    def n(self) -> int:
        return len(self.iid)

    @classmethod
    def from_arrays(cls, iid, y, covariates, covar_names, variants: VariantTable, genotypes: np.ndarray,
                    policy: dict | None = None, name: str = "site", pheno_name: str = "PHENO1",
                    dosages: np.ndarray | None = None) -> "SiteData":
        """In-memory site: ``genotypes`` (m, n) int8 ALT dosage, -1 missing; ``dosages`` (m, n) float, NaN missing."""
        g = np.asarray(genotypes, dtype=np.int8)

        def read(idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return g[np.asarray(idx)][:, np.asarray(mask, bool)]

        read_dosage = None
        if dosages is not None:
            d = np.asarray(dosages, dtype=np.float32)

            def read_dosage(idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
                return d[np.asarray(idx)][:, np.asarray(mask, bool)]

        return cls(np.asarray(iid, dtype=object), np.asarray(y, float), np.asarray(covariates, float).reshape(len(iid), -1),
                   list(covar_names), variants, read, policy or {}, name, pheno_name, read_dosage)

    def select_covariates(self, names: list[str] | None) -> tuple[np.ndarray, list[str]]:
        """Covariate columns by name (None: all), in the order given."""
        if names is None:
            return self.covariates, list(self.covar_names)
        missing = [c for c in names if c not in self.covar_names]
        if missing:
            raise ValueError(f"site {self.name}: covariate(s) {', '.join(missing)} not in its covariate file "
                             f"(it has: {', '.join(self.covar_names) or 'none'})")
        idx = [self.covar_names.index(c) for c in names]
        return self.covariates[:, idx], list(names)
