"""GWAS input checks decided on public pooled values, with a message for each cause (in-process transport).

A constant phenotype, a constant covariate, an all-case phenotype, sites that share
no variant and a site that contributes no sample each fail the job with their own
``PublicError``; a covariate with a small but real variance still runs.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.site import SiteData
from cipherome.mpc.errors import PublicError
from cipherome.mpc.local import run_local

N_SITES, N_PER, M = 3, 80, 120


def make_sites(y_fn=None, cov_fn=None, shift_site=None, binary=False, seed=3):
    rng = np.random.default_rng(seed)
    sites = []
    for s in range(N_SITES):
        g = rng.binomial(2, rng.uniform(0.1, 0.5, M)[:, None], (M, N_PER)).astype(np.int8)
        y = (rng.random(N_PER) < 0.4).astype(float) if binary else rng.normal(size=N_PER) + 0.3 * g[0]
        cov = np.column_stack([rng.integers(0, 2, N_PER) + 1.0, rng.normal(50, 10, N_PER)])
        if y_fn is not None:
            y = y_fn(s, y)
        if cov_fn is not None:
            cov = cov_fn(s, cov)
        pos = np.arange(M) * 100 + 1000 + (10**7 if s == shift_site else 0)
        vt = VariantTable.from_columns(["1"] * M, pos, [f"v{i}" for i in range(M)], ["A"] * M, ["G"] * M)
        sites.append(SiteData.from_arrays([f"s{s}_{i}" for i in range(N_PER)], y, cov, ["sex", "age"], vt, g,
                                          name=f"site{s}"))
    return sites


def run(sites, **kw):
    params = GwasParams(maf=0.01, block=64, **kw)
    return run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), N_SITES, frac=params.frac)


def test_valid_study_runs_with_a_rare_binary_covariate():
    # one sample of 240 differs: variance 1/240, far above the fixed-point resolution
    def rare(s, cov):
        cov[:, 0] = 1.0
        if s == 1:
            cov[5, 0] = 2.0
        return cov

    res = run(make_sites(cov_fn=rare)).results[0]
    assert res["n_assoc"] == N_SITES * N_PER
    p = res["assoc"]["columns"]["P"]
    assert len(p) > M // 2 and np.isfinite(p).all()
    assert p[np.flatnonzero(res["tested"] == 0)[0]] < 1e-4  # the planted effect of variant 0


def test_constant_phenotype_is_refused_as_such():
    with pytest.raises(PublicError, match="the phenotype is constant") as err:
        run(make_sites(y_fn=lambda s, y: np.full_like(y, 0.7)))
    assert "covariate" not in str(err.value)


def test_constant_covariate_is_refused_by_name():
    def sex_one(s, cov):
        cov[:, 0] = 1.0
        return cov

    with pytest.raises(PublicError, match=r"covariate\(s\) sex constant"):
        run(make_sites(cov_fn=sex_one))


def test_all_case_phenotype_is_not_called_collinear():
    with pytest.raises(PublicError, match="is a case; a case/control GWAS needs both") as err:
        run(make_sites(y_fn=lambda s, y: np.ones_like(y), binary=True))
    assert "collinear" not in str(err.value)


def test_sites_sharing_no_variant_fail():
    with pytest.raises(PublicError, match="share no variant"):
        run(make_sites(shift_site=2))


def test_site_without_samples_is_named():
    with pytest.raises(PublicError, match=r"site\(s\) p1 contribute no sample"):
        run(make_sites(y_fn=lambda s, y: np.full_like(y, np.nan) if s == 1 else y))
