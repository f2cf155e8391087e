"""A small simulated study written as per-site PLINK files, for tests with real daemons.

``small_study(dir)`` writes 3 sites x 100 samples x ``n_variants`` variants
(.bed/.bim/.fam, .pheno, .covar per site) and returns the files by site plus each
site's ``[data]`` table for ``LocalCluster``.
"""
from __future__ import annotations

from pathlib import Path

from cipherome.genomics.simulate import demo_config, simulate_study, write_study


def small_study(d: Path, n_variants: int = 200, n_samples: int = 300, seed: int = 5):
    cfg = demo_config().replace(n_samples=n_samples, n_variants=n_variants, seed=seed)
    study = simulate_study(cfg)
    files = write_study(study, Path(d), prefix="s", pooled=False, sites=True, vcf=False)
    data = [{"bfile": str(files[f"site{s + 1}"]["bed"].with_suffix("")), "pheno": str(files[f"site{s + 1}"]["pheno"]),
             "covar": str(files[f"site{s + 1}"]["covar"])} for s in range(cfg.n_sites)]
    return study, files, data
