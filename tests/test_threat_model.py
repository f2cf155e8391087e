"""Every ledger label of every workload is documented in docs/threat_model.md, and nothing individual-level is 'public'.

Runs each GWAS mode not already run by ``test_gwas_privacy.py`` (the trend test; linear,
PCA and logistic are checked there) and the filtering models of each family (cohort,
trio, compound-het, gene-level) in process, collects the labels of every party's
ledger (the dealer's included) and asserts that each appears in a table of the
threat model. Labels of kind 'public' are limited to study metadata and key
contributions, and results are listed with the submitter as a recipient.
"""
import numpy as np
import pytest

from cipherome.genomics.filtering.job import run_filter
from cipherome.genomics.filtering.params import FilterParams
from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.simulate import demo_config, simulate_study
from cipherome.mpc.local import run_local
from tests.filter_sim import GENES, simulate, site_variants
from tests.gwas_sites import sites_from_study
from tests.threat_model_doc import documented_labels

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: study metadata and fresh key material: the only values a site sends in the clear
PUBLIC = {"gwas.site_counts", "gwas.study_key_contribution", "pca.site_counts", "logistic.site_counts",
          "filter.job_key_contribution", "filter.study_metadata", "input.shape"}

FILTER_MODELS = [
    {"model": "carrier", "table_size": 64, "lanes": 8},
    {"model": "denovo", "table_size": 64, "lanes": 8},
    {"model": "comphet", "genes": GENES, "lanes": 10},
    {"model": "comphet", "genes": GENES, "table_size": 64, "lanes": 10},
    {"model": "max-gene", "genes": GENES, "top": 3},
    {"model": "top-genes", "genes": GENES, "top": 3},
    {"model": "gene-intersect", "genes": GENES, "top": 3},
    {"model": "gene-diff", "genes": GENES, "top": 3},
]


def _labels(run) -> dict:
    out = {}
    for name, rep in run.reports.items():
        for e in rep["ledger"]:
            out.setdefault(e["label"], set()).add((e["kind"], tuple(e["recipients"])))
    return out


def _check(run, results_label: str) -> None:
    labels = _labels(run)
    missing = set(labels) - documented_labels()
    assert not missing, f"ledger labels not in docs/threat_model.md: {sorted(missing)}"
    public = {lab for lab, kinds in labels.items() if any(k == "public" for k, _ in kinds)}
    assert public <= PUBLIC, public - PUBLIC
    assert labels[results_label] == {("disclosed", ("submitter",))}


def test_documented_labels_parse():
    doc = documented_labels()
    assert {"gwas.common_variants", "logistic.null_beta", "pca.gram", "filter.counts", "mul"} <= doc
    assert "gwas.variant_keys" not in doc  # the unkeyed variant hashes are gone


def test_trend_gwas_labels_are_documented():
    st = simulate_study(demo_config().replace(n_samples=300, n_variants=200, seed=4))
    sites = sites_from_study(st, st.covariates, list(st.covariate_names), "binary")
    p = GwasParams(pheno_name="disease", glm="trend", maf=0.02, geno=0.05, hwe=1e-6, block=128)  # every QC filter
    _check(run_local(lambda ctx: run_gwas(ctx, p, sites[ctx.index]), 3, frac=p.frac), "gwas.results")


@pytest.mark.parametrize("params", FILTER_MODELS, ids=lambda p: p["model"])
def test_filter_labels_are_documented(params):
    st = simulate(11, n_positions=70)
    svs = [site_variants(st, s) for s in range(3)]
    p = FilterParams.from_dict(dict(params))
    run = run_local(lambda ctx, i: run_filter(ctx, p, svs[i], {"min_cell_size": 2}), 3, args=lambda i: {"i": i})
    _check(run, "filter.results")


def test_two_sites_refused_by_default():
    """min_sites (default 3): a two-site study releases nothing unless every site's policy allows two."""
    from cipherome.genomics.errors import InputError

    st = simulate_study(demo_config().replace(n_samples=200, n_variants=150, n_sites=2, seed=4))
    sites = sites_from_study(st, st.covariates, list(st.covariate_names), "quant")
    p = GwasParams(pheno_name="quant_trait", maf=0.02, block=128)
    with pytest.raises(InputError, match="min_sites"):
        run_local(lambda ctx: run_gwas(ctx, p, sites[ctx.index]), 2, frac=p.frac)
    for s in sites:
        s.policy["min_sites"] = 2
    res = run_local(lambda ctx: run_gwas(ctx, p, sites[ctx.index]), 2, frac=p.frac).results[0]
    assert len(res["tested"]) > 100 and np.isfinite(res["assoc"]["columns"]["P"]).any()


def test_consented_variant_lists_in_the_gwas():
    """share_variant_list at every site: the GWAS exchanges keyed lists (documented) and gives the same result."""
    st = simulate_study(demo_config().replace(n_samples=300, n_variants=200, seed=4))
    sites = sites_from_study(st, st.covariates, list(st.covariate_names), "binary")
    p = GwasParams(pheno_name="disease", glm="trend", maf=0.02, block=128)
    secure = run_local(lambda ctx: run_gwas(ctx, p, sites[ctx.index]), 3, frac=p.frac)
    for s in sites:
        s.policy["share_variant_list"] = True
    shared = run_local(lambda ctx: run_gwas(ctx, p, sites[ctx.index]), 3, frac=p.frac)
    _check(shared, "gwas.results")
    assert "gwas.variant_list" in _labels(shared) and "gwas.common_variants" not in _labels(shared)
    np.testing.assert_array_equal(secure.results[0]["tested"], shared.results[0]["tested"])
