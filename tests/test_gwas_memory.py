"""The GWAS refuses, before its association arrays exist, a run whose tested variants cannot fit in a site's memory
budget: the same public error at every party, naming the site and what to change; with room it runs."""
import tracemalloc

import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.gwas.job import association_memory, run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.simulate import demo_config, simulate_study
from cipherome.mpc.local import run_local
from tests.gwas_sites import sites_from_study

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def test_association_memory_errs_low_against_the_measured_peak():
    # in process the 3 parties and the dealer share one heap; the estimate is per party, so the traced peak
    # of the whole run over 4 must not be below it (no job that fits is refused), nor far above it
    study = simulate_study(demo_config().replace(n_samples=1500, n_variants=3000, n_sites=3, seed=5))
    rng = np.random.default_rng(1)
    cov = np.column_stack([study.covariates, rng.normal(size=(1500, 12 - study.covariates.shape[1]))])
    names = list(study.covariate_names) + [f"X{i}" for i in range(12 - len(study.covariate_names))]
    sites = sites_from_study(study, cov, names, "quant")
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.01, glm="linear")
    tracemalloc.start()
    try:
        run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac, timeout=600)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = association_memory(len(run.results[0]["tested"]), 13)
    assert est <= peak / 4 <= 1.6 * est, (est, peak / 4)
    assert association_memory(10**6, 23) == 10**6 * association_memory(1, 23)


def test_a_run_over_a_sites_budget_is_refused_and_one_within_runs():
    study = simulate_study(demo_config().replace(n_samples=300, n_variants=800, n_sites=3, seed=5))
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.01, glm="linear")

    def run(gb):
        sites = sites_from_study(study, study.covariates, list(study.covariate_names), "quant")
        sites[2].policy = {**(sites[2].policy or {}), "max_job_memory_gb": gb}
        return run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac, timeout=300)

    # ~760 tested variants x 2.3 kB (k = 5): 1.7 MB; 1 MiB (budgets travel in MiB) is too little, 64 MB plenty
    with pytest.raises(InputError, match=r"the association of \d+ tested variants with \d+ design columns needs "
                                         r"about 0\.00[0-9]+ GB at party p2 but its policy allows 0\.000977 GB .*--extract\), "
                                         r"or raise max_job_memory_gb at p2"):
        run(2 ** -10)
    res = run(2 ** -4)
    assert len(res.results[0]["tested"]) > 600


def test_association_sums_wait_for_qc_when_every_common_variant_would_not_fit(caplog):
    """The sums computed beside the QC rounds cover every common variant, not only the tested ones: a site
    whose budget holds the tested variants but not all common ones computes them after QC, with the same
    results (the case of a study of mostly rare variants)."""
    study = simulate_study(demo_config().replace(n_samples=300, n_variants=800, n_sites=3, seed=5))
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.3, glm="linear")  # most variants fail --maf

    def run(gb):
        sites = sites_from_study(study, study.covariates, list(study.covariate_names), "quant")
        sites[1].policy = {**(sites[1].policy or {}), "max_job_memory_gb": gb}
        return run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac, timeout=300)

    with caplog.at_level("INFO", logger="cipherome.gwas"):
        big = run(1.0)
    assert not [r for r in caplog.records if "association sums after QC" in r.getMessage()]
    tested = len(big.results[0]["tested"])
    k = 1 + study.covariates.shape[1]
    assert tested < 500  # the budget below holds the tested variants and not the 800 common ones
    gb = (association_memory(tested, k) + association_memory(800, k)) / 2 / 2**30
    caplog.clear()
    with caplog.at_level("INFO", logger="cipherome.gwas"):
        small = run(gb)
    assert len([r for r in caplog.records if "association sums after QC" in r.getMessage()]) == 1  # site p1 only
    np.testing.assert_array_equal(small.results[0]["tested"], big.results[0]["tested"])
    p_small, p_big = (np.asarray(r.results[0]["assoc"]["columns"]["P"], float) for r in (small, big))
    # the same statistics up to the secure arithmetic's randomness (probabilistic truncations)
    np.testing.assert_allclose(-np.log10(p_small), -np.log10(p_big), rtol=0, atol=1e-3)
