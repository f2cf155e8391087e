"""Shared simulated studies for the reference-twin tests, built once per test session and cached.

Test modules import the builders (``gwas_data()``, ``pca_data()``), which return the study
with its files and derived covariates in a temporary directory removed at exit.
"""
from __future__ import annotations

import sys as _sys

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cipherome.genomics.reference.pca import pca_exact, thin_by_count
from cipherome.genomics.reference.qc import qc_filter
from cipherome.genomics.simulate import SimConfig, Study, demo_config, simulate_study, write_study
from cipherome.genomics.io.writers import write_covar

# One module object whether imported as ``conftest_sim`` (tests/ on sys.path) or as
# ``tests.conftest_sim`` (repository root on sys.path), so caches and classes are shared.
_sys.modules.setdefault("conftest_sim", _sys.modules[__name__])
_sys.modules.setdefault("tests.conftest_sim", _sys.modules[__name__])

__all__ = ["SimData", "scratch_dir", "gwas_config", "gwas_data", "pca_config", "pca_data", "pca_small_data",
           "pca_gwas_data", "N_PCS", "rare_variants", "plink_firth_reports"]

#: PCs added to the 4 simulated covariates -> 12 covariates in the GWAS tests.
N_PCS = 8


@functools.lru_cache(maxsize=None)
def scratch_dir() -> Path:
    """One temporary directory for the session's simulated files (removed at exit)."""
    d = Path(tempfile.mkdtemp(prefix="cipherome-sim-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@dataclass
class SimData:
    """A simulated study with its files.

    bfile        PLINK prefix of the pooled data (str, for --bfile)
    pheno, covar pooled phenotype / 4-covariate files
    covar12      covariate file with the 4 covariates + N_PCS PCs (PCs scaled to unit variance)
    covariates12 (n, 12) float64 matching ``covar12`` (NaN where missing)
    pcs_raw      (n, N_PCS) float64 unit-norm eigenvectors (PLINK's .eigenvec scale)
    qc           QCResult of --geno 0.05 --hwe 1e-6 --maf 0.01
    thinned      (M,) int64 variant indices used for the PCs
    """

    study: Study
    dir: Path
    bfile: str
    pheno: Path
    covar: Path
    covar12: Path | None = None
    covariates12: np.ndarray | None = None
    pcs_raw: np.ndarray | None = None
    qc: object = None
    thinned: np.ndarray | None = None


def gwas_config() -> SimConfig:
    """3 sites, 2 populations mixed unevenly, 2,000 samples x 3,000 variants, 1% missing calls,
    1% missing phenotypes, 0.2% missing covariate values."""
    return demo_config().replace(
        n_samples=2000, n_variants=3000, pheno_missing_rate=0.01, covar_missing_rate=0.002, seed=7
    )


def pca_config() -> SimConfig:
    """3 populations over 3 sites (two axes of structure), 1,500 samples x 4,000 variants."""
    return demo_config().replace(n_samples=1500, n_variants=4000, n_populations=3, seed=11)


def _build(cfg: SimConfig, name: str, with_pcs: bool) -> SimData:
    study = simulate_study(cfg)
    d = scratch_dir() / name
    paths = write_study(study, d, prefix="pooled", sites=False, vcf=False)["pooled"]
    data = SimData(
        study=study,
        dir=d,
        bfile=str(paths["bed"])[: -len(".bed")],
        pheno=paths["pheno"],
        covar=paths["covar"],
    )
    data.qc = qc_filter(study.genotypes, geno=0.05, hwe=1e-6, maf=0.01)
    data.thinned = thin_by_count(1500, data.qc.variant_keep)
    if with_pcs:
        # unit-norm eigenvectors (PLINK's .eigenvec scale, ~0.02) times sqrt(n): unit
        # variance, so plink2 --glm accepts them beside age without
        # --covar-variance-standardize (it refuses the raw scale: see test_reference_linear)
        pcs = pca_exact(study.genotypes[data.thinned], N_PCS).eigenvectors * np.sqrt(study.n_samples)
        data.pcs_raw = pcs / np.sqrt(study.n_samples)
        data.covariates12 = np.column_stack([study.covariates, pcs])
        names = list(study.covariate_names) + [f"PC{i + 1}" for i in range(N_PCS)]
        data.covar12 = d / "pooled.pcs.covar"
        write_covar(data.covar12, study.fid, study.iid, data.covariates12, names)
    return data


@functools.lru_cache(maxsize=None)
def gwas_data() -> SimData:
    """The GWAS test study (:func:`gwas_config`) with 12 covariates (4 + 8 PCs)."""
    return _build(gwas_config(), "gwas", with_pcs=True)


@functools.lru_cache(maxsize=None)
def pca_data() -> SimData:
    """The PCA test study (:func:`pca_config`)."""
    return _build(pca_config(), "pca", with_pcs=False)


@functools.lru_cache(maxsize=None)
def pca_small_data() -> SimData:
    """3 populations over 3 sites, 600 x 2,400, 1% missing calls (plus bad variants and samples):
    two axes of structure, and noise eigenvalues 0.1-0.5% apart from PC3 on (the clustered case)."""
    return _build(demo_config().replace(n_samples=600, n_variants=2400, n_populations=3, seed=11), "pca_small",
                  with_pcs=False)


@functools.lru_cache(maxsize=None)
def pca_gwas_data() -> SimData:
    """2 populations mixed unevenly over 3 sites, 800 x 2,000, population-confounded traits, 1% missing
    calls, 1% missing phenotypes: the study of the --pca 10 association comparison with plink2."""
    return _build(demo_config().replace(n_samples=800, n_variants=2000, pheno_missing_rate=0.01, seed=7),
                  "pca_gwas", with_pcs=False)


def rare_variants(genotypes: np.ndarray, lo: int = 1, hi: int = 15) -> np.ndarray:
    """Indices of the variants whose minor allele count (over called samples) is within [lo, hi]."""
    alt = np.where(genotypes >= 0, genotypes, 0).sum(1)
    mac = np.minimum(alt, 2 * (genotypes >= 0).sum(1) - alt)
    return np.flatnonzero((mac >= lo) & (mac <= hi))


def plink_firth_reports(d: SimData, ids, tag: str) -> tuple[dict, dict]:
    """``plink2 --glm firth`` and ``--glm firth-fallback`` (hybrid) reports of the GWAS study's binary trait with
    its 12 covariates on the variants ``ids``, each with its rows in the order of ``ids``."""
    from cipherome.genomics.simulate import BINARY_PHENO
    from plink_runner import read_glm, run_plink

    extract = d.dir / f"{tag}.txt"
    extract.write_text("\n".join(ids) + "\n")
    base = ["--bfile", d.bfile, "--pheno", d.pheno, "--pheno-name", BINARY_PHENO, "--covar", d.covar12,
            "--covar-variance-standardize", "--extract", extract, "--glm", "hide-covar"]
    out = []
    for mode, suffix in (("firth", "glm.firth"), ("firth-fallback", "glm.logistic.hybrid")):
        t = read_glm(run_plink([*base, mode], d.dir / f"{tag}_{mode}", out="log").path(f".{BINARY_PHENO}.{suffix}"))
        pos = {v: i for i, v in enumerate(t["ID"])}
        rows = np.array([pos[v] for v in ids])
        out.append({k: v[rows] for k, v in t.items()})
    return out[0], out[1]
