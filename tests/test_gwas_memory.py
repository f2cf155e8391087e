"""The GWAS refuses, before its association arrays exist, a run whose tested variants cannot fit in a site's memory
budget: the same public error at every party, naming the site and what to change; with room it runs."""
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.gwas.job import association_memory, run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.simulate import demo_config, simulate_study
from cipherome.mpc.local import run_local
from tests.gwas_sites import sites_from_study

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def test_association_memory_grows_with_variants_and_design_columns():
    # measured in process (3 parties + dealer, per party): 3.1 kB at k = 5, 9.4 kB at 13, 20.9 kB at 23 per variant
    assert association_memory(1, 5) == pytest.approx(3.06e3, rel=0.05)
    assert 0.85 * 9.4e3 < association_memory(1, 13) <= 9.4e3
    assert association_memory(1, 23) == pytest.approx(20.9e3, rel=0.05)
    assert association_memory(10**6, 23) == 10**6 * association_memory(1, 23)


def test_a_run_over_a_sites_budget_is_refused_and_one_within_runs():
    study = simulate_study(demo_config().replace(n_samples=300, n_variants=400, n_sites=3, seed=5))
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.01, glm="linear")

    def run(gb):
        sites = sites_from_study(study, study.covariates, list(study.covariate_names), "quant")
        sites[2].policy = {**(sites[2].policy or {}), "max_job_memory_gb": gb}
        return run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac, timeout=300)

    # ~380 tested variants x ~5 kB: 2 MB; 1 MB is too little, 64 MB is plenty
    with pytest.raises(InputError, match=r"the association of \d+ tested variants with \d+ design columns needs "
                                         r"about 0\.00[0-9]+ GB at party p2 but its policy allows 0\.000977 GB .*--extract\), "
                                         r"or raise max_job_memory_gb at p2"):
        run(2 ** -10)
    res = run(2 ** -4)
    assert len(res.results[0]["tested"]) > 300
