"""Simulated GWAS benchmark studies: per-site and pooled PLINK files with 12 covariates.

Studies are cached under ``bench/.data`` (git-ignored) by size, so repeated
benchmark runs do not regenerate them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cipherome.genomics.simulate import demo_config, simulate_study, write_study
from cipherome.genomics.io.writers import write_covar

CACHE = Path(__file__).parent / ".data"
N_EXTRA = 8  # 4 simulated covariates + 8 more -> 12


def _site_tables(d: Path, sites: int) -> list[dict]:
    return [{"bfile": str(d / f"b.site{s + 1}"), "pheno": str(d / f"b.site{s + 1}.pheno"),
             "covar": str(d / f"b.site{s + 1}.covar12")} for s in range(sites)]


def gwas_site_tables(n_samples: int, n_variants: int, sites: int = 3) -> list[dict]:
    """The sites' [data] tables of the cached n x m study (simulated and written only if not cached)."""
    d = CACHE / f"gwas_{n_samples}x{n_variants}x{sites}"
    if not (d / "done").exists():
        gwas_study(n_samples, n_variants, sites)
    return _site_tables(d, sites)


def gwas_study(n_samples: int, n_variants: int, sites: int = 3):
    """(study, files, site data tables, pooled covar path) for an n x m study with 12 covariates."""
    d = CACHE / f"gwas_{n_samples}x{n_variants}x{sites}"
    cfg = demo_config().replace(n_samples=n_samples, n_variants=n_variants, n_sites=sites, seed=101)
    study = simulate_study(cfg)
    names = list(study.covariate_names) + [f"PC{i + 1}" for i in range(N_EXTRA)]
    rng = np.random.default_rng(7)
    cov12 = np.column_stack([study.covariates, rng.normal(size=(study.n_samples, N_EXTRA))])
    marker = d / "done"
    if not marker.exists():
        files = write_study(study, d, prefix="b", pooled=True, sites=True, vcf=False)
        write_covar(d / "b.covar12", study.fid, study.iid, cov12, names)
        for s in range(sites):
            idx = study.site_samples(s)
            write_covar(d / f"b.site{s + 1}.covar12", study.fid[idx], study.iid[idx], cov12[idx], names)
        marker.write_text("ok\n")
    return study, d, _site_tables(d, sites), names
