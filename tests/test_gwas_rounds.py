"""Rounds of the secure GWAS do not grow with the number of variants (a dry run of the schedule).

A small 3-site study is run in process, then the same study with its variants
repeated 10 times (new positions, same genotypes, hence the same missing-call
pattern and the same Neumann lengths): every stage must take exactly the same
number of rounds at the lead, for QC + linear and QC + logistic. This is the
protocol schedule the 10,000 x 1,000,000 benchmark would run: one protocol run
per stage, whatever the number of variants or blocks.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.simulate import demo_config, simulate_study
from cipherome.genomics.site import SiteData
from cipherome.mpc.local import run_local

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _sites(study, reps: int, binary: bool) -> list[SiteData]:
    m = study.genotypes.shape[0]
    vt = VariantTable.from_columns(np.tile(study.chrom.astype(str), reps),
                                   np.concatenate([study.pos + r * 10**8 for r in range(reps)]),
                                   [f"{v}_{r}" for r in range(reps) for v in study.variant_id],
                                   np.tile(study.ref, reps), np.tile(study.alt, reps))
    g = np.tile(study.genotypes, (reps, 1))
    assert g.shape[0] == reps * m
    y = study.binary if binary else study.quant
    return [SiteData.from_arrays(study.iid[idx], y[idx], study.covariates[idx], list(study.covariate_names), vt,
                                 g[:, idx], name=f"site{s + 1}")
            for s in range(3) for idx in [study.site_samples(s)]]


def _rounds(study, reps: int, glm: str) -> dict:
    sites = _sites(study, reps, glm == "logistic")
    params = GwasParams(geno=0.1, maf=0.01, hwe=1e-6, glm=glm, block=64, logistic_top=5)
    run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac, timeout=600)
    assert len(run.results[0]["tested"]) > 0.5 * reps * study.genotypes.shape[0]
    return {s["stage"]: s["rounds"] for s in run.reports["p0"]["stages"]}


@pytest.mark.parametrize("glm", ["linear", "logistic"])
def test_rounds_do_not_grow_with_variants(glm):
    # 500 variants: above the size where ``normalize`` switches from comparisons to bit decomposition
    study = simulate_study(demo_config().replace(n_samples=300, n_variants=500, n_sites=3, seed=5))
    one, ten = _rounds(study, 1, glm), _rounds(study, 10, glm)
    # 500 variants in blocks of 64: 8 blocks; 5,000 variants: 79 blocks; the schedule is the same
    assert one == ten
    # logistic: the secret null model (10 fixed Newton steps, about 37 rounds each) and the Wald fits'
    # fixed 16 Newton steps (no data-dependent count for the dealer) take about 960 rounds; the Firth fallback's
    # fixed 12 steps on its public slots (plink2's default firth-fallback) about 990 more
    assert one["variant_qc"] < 100 and one["association"] < (200 if glm == "linear" else 2100)
