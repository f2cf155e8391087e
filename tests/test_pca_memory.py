"""The PCA refuses, before allocating, a job whose matrices exceed a site's memory budget (daemons must not be
killed for want of memory); the refusal is the same at every party and names the site and what to change."""
import tracemalloc

import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.gwas.pca import PCAParams, check_memory, memory_need, secure_pca
from cipherome.genomics.gwas.pca_operator import kernel_for
from cipherome.mpc.local import run_local
from tests.conftest_sim import pca_small_data
from tests.test_pca_secure import _setup

GB = 1 << 30


@pytest.mark.parametrize("mode", ["shared", "pooled"])
def test_memory_need_is_a_lower_bound_of_the_measured_peak(mode):
    # in process the 3 parties and the dealer share one heap: its traced peak holds every party's arrays
    d = pca_small_data()
    s, sites, sv, passed = _setup(d)
    for site in sites:
        site.policy = {**(site.policy or {}), "pca_pooled_products": True}
    tracemalloc.start()
    try:
        run = run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool),
                                               PCAParams(k=4, mode=mode)), 3, frac=24, timeout=300)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    kernels = [kernel_for(True)] * 3  # hard calls: int8 on a VNNI host, else base-3 tables
    need = sum(memory_need(mode, run.results[0].variants.size, [site.n for site in sites], kernels))
    assert need <= peak <= 8 * need, (need, peak)
    # the 10,000 x 100,000 study: ~12 GB per party shared, ~1.3 GB per site pooled
    assert memory_need("shared", 80_000, [3334, 3333, 3333])[0] / GB > 11.9
    assert memory_need("pooled", 80_000, [3334, 3333, 3333])[0] / GB < 1.25
    one = {k: memory_need("pooled", 80_000, [3334], [k])[0] for k in ("vnni", "tables", "float")}
    assert one["vnni"] * 5 == one["float"] * 2 and one["tables"] * 4 == one["vnni"] * 3


def test_check_memory_names_the_site_and_the_remedies():
    with pytest.raises(InputError, match=r"--pca-mode shared\) need at least 11\.9 GB at party p2 but its policy "
                                         r"allows 1 GB .*--pca-extract\), --pca-mode pooled, or raise "
                                         r"max_job_memory_gb at p2"):
        check_memory(["p0", "p1", "p2"], "shared", 80_000, [3334, 3333, 3333], [64 * GB, 64 * GB, GB])
    check_memory(["p0", "p1", "p2"], "pooled", 80_000, [3334, 3333, 3333], [2 * GB] * 3)  # fits: no error


@pytest.mark.parametrize("mode", ["shared", "pooled"])
def test_a_pca_over_a_sites_budget_is_refused_at_every_party_before_it_starts(mode):
    d = pca_small_data()
    s, sites, sv, passed = _setup(d)
    for i, site in enumerate(sites):
        site.policy = {**(site.policy or {}), "pca_pooled_products": True,
                       **({"max_job_memory_gb": 1e-4} if i == 1 else {})}  # 0.1 MB at p1
    seen = []

    def party(ctx):
        try:
            return secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool),
                              PCAParams(k=4, mode=mode))
        except InputError as e:
            seen.append(str(e))
            raise

    with pytest.raises(InputError, match=r"at party p1 .* raise max_job_memory_gb at p1"):
        run_local(party, 3, frac=24, timeout=300)
    assert len(seen) == 3 and len(set(seen)) == 1  # every party refuses, with the same public message
