"""Secure filtering (in-process parties) against the plaintext twin on pooled data, for every model.

Studies have trios split across sites, multi-allelic indels, missing calls and
haploid X calls; tables range from a realistic size down to one or two slots,
where every slot collides. The secure rows and genes must equal the twin's.
"""
import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.params import FilterParams
from cipherome.genomics.reference.filtering import reference_filter
from cipherome.genomics.filtering.job import run_filter
from cipherome.mpc.local import run_local
from tests.filter_sim import GENES, simulate, site_variants


def _run(svs, params: dict, policies=None):
    p = FilterParams.from_dict(dict(params))
    pol = policies or [{}] * len(svs)
    return run_local(lambda ctx, i: run_filter(ctx, p, svs[i], pol[i]), len(svs), args=lambda i: {"i": i})


def _check(svs, params: dict, mc: int = 0):
    # a two-site study needs every site's explicit consent (min_sites = 2; default 3)
    run = _run(svs, params, [{"min_cell_size": mc, "min_sites": min(3, len(svs))}] * len(svs))
    got = run.results[0]
    assert all(r == got for r in run.results[1:]) or all(
        (r.get("rows"), r.get("genes")) == (got.get("rows"), got.get("genes")) for r in run.results)
    want = reference_filter(svs, params, mc)
    key = "rows" if "rows" in want else "genes"
    assert got[key] == want[key]
    return got[key], run


@pytest.fixture(scope="module")
def study():
    st = simulate(11, n_positions=70)
    return [site_variants(st, s) for s in range(3)]


COHORT = [
    {"model": "carrier"},
    {"model": "carrier", "min_affected": 2, "max_cohort_af": "0.1"},
    {"model": "carrier", "max_unaffected": 1, "min_affected": 2},
    {"model": "dominant"},
    {"model": "recessive"},
    {"model": "recessive", "min_affected": 1},
    {"model": "xlinked"},
    {"model": "xlinked", "min_affected": 2},
]


@pytest.mark.parametrize("params", COHORT, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_cohort_models_equal_twin(study, params):
    rows, _ = _check(study, {**params, "table_size": 64, "lanes": 8}, mc=0)
    if params == {"model": "dominant"}:  # the planted dominant variant (GENE4) is found
        assert [r["gene"] for r in rows] == ["GENE4"]


@pytest.mark.parametrize("params", COHORT, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_cohort_models_cuckoo_tables_equal_twin(study, params):
    """Default geometry: each site's cuckoo anchors against the other sites' simple-hashing tables."""
    rows, run = _check(study, {**params, "max_variants": 100}, mc=0)
    assert run.results[0]["table"] == {"bins": 200, "lanes": 13}


def test_planted_candidates_are_found(study):
    rec, _ = _check(study, {"model": "recessive", "table_size": 64, "lanes": 8})
    assert "GENE5" in [r["gene"] for r in rec]
    xl, _ = _check(study, {"model": "xlinked", "table_size": 64, "lanes": 8})
    assert "GENE6" in [r["gene"] for r in xl]
    dn, _ = _check(study, {"model": "denovo", "table_size": 64, "lanes": 8})
    assert any(r["family"] == "FA" and r["ref"] == "ACT" and r["alt"] == "A" for r in dn)  # split trio, multi-allelic
    ch, _ = _check(study, {"model": "comphet", "genes": GENES, "lanes": 10})
    fams = {(r["family"], r["gene"], r["inheritance"]) for r in ch}
    assert {("FA", "GENE1", "paternal"), ("FA", "GENE1", "maternal"), ("FB", "GENE2", "paternal"),
            ("FB", "GENE2", "maternal")} <= fams
    assert not any(g == "GENE3" and f == "FC" for f, g, _ in fams)  # only one side planted


# slots come from a per-job random key: L must hold a site's worst slot with near certainty (66-70 variants per
# site; at T = 2, L = 48 a slot overflowed about once in 300 runs, 49 of 70 on one side; T = 7, L = 24 once in 2,000)
@pytest.mark.parametrize("T,L", [(1, 80), (2, 64), (7, 28)])
@pytest.mark.parametrize("model", ["carrier", "dominant", "xlinked"])
def test_tiny_tables_force_collisions_and_still_agree(study, model, T, L):
    keys = [k for sv in study for k in sv.keys]
    assert len(set(keys)) > T  # every slot is shared by several variants
    params = {"model": model, "table_size": T, "lanes": L}
    if model == "carrier":
        params["max_cohort_af"] = "0.2"
    _check(study, params)


@pytest.mark.parametrize("bins,L", [(40, 40), (64, 8)])
def test_denovo_small_cuckoo_tables_agree(study, bins, L):
    """Few bins: every parent bin holds several variants (the child's cuckoo table is nearly full)."""
    _check(study, {"model": "denovo", "table_size": bins, "lanes": L})


@pytest.mark.parametrize("buckets,L", [(1, 10), (2, 8)])
def test_comphet_gene_tables(study, buckets, L):
    _check(study, {"model": "comphet", "genes": GENES, "gene_buckets": buckets, "lanes": L})


@pytest.mark.parametrize("model", ["max-gene", "top-genes", "gene-intersect", "gene-diff"])
def test_gene_level_models(study, model):
    genes, _ = _check(study, {"model": model, "genes": GENES, "top": 3}, mc=2)
    assert genes or model == "gene-intersect"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_studies_all_models(seed):
    st = simulate(seed, n_positions=40, missing=0.08)
    svs = [site_variants(st, s) for s in range(3)]
    for params in ({"model": "carrier", "max_cohort_af": "0.3", "table_size": 16, "lanes": 16},
                   {"model": "recessive", "min_affected": 1, "table_size": 16, "lanes": 16},
                   {"model": "denovo", "table_size": 40, "lanes": 16},
                   {"model": "comphet", "genes": GENES, "lanes": 12},
                   {"model": "top-genes", "genes": GENES, "top": 4}):
        _check(svs, params, mc=3 if seed == 2 else 0)


def test_min_cell_size_suppresses_small_counts(study):
    rows, run = _check(study, {"model": "carrier", "min_affected": 1, "max_unaffected": 2, "table_size": 64,
                               "lanes": 8}, mc=3)
    assert any(r["AFF_CARRIERS"] is None for r in rows)  # 1 or 2 carriers: withheld
    assert all(r["AFF_CARRIERS"] is None or r["AFF_CARRIERS"] >= 3 for r in rows)
    assert all(r["UNAFF_CARRIERS"] in (None, 0) or r["UNAFF_CARRIERS"] >= 3 for r in rows)
    assert run.results[0]["min_cell_size"] == 3


def test_two_sites_and_four_sites():
    for n in (2, 4):
        st = simulate(5, n_sites=n, n_positions=40)
        svs = [site_variants(st, s) for s in range(n)]
        _check(svs, {"model": "carrier", "table_size": 8, "lanes": 20})
        _check(svs, {"model": "denovo", "table_size": 48, "lanes": 20})


def test_disclosures_are_the_documented_ones(study):
    _, run = _check(study, {"model": "carrier", "table_size": 64, "lanes": 8})
    documented = {"filter.candidate_slots", "filter.candidate_fingerprints", "filter.candidate_text_bytes",
                  "filter.candidate_texts",
                  "filter.confirm", "filter.counts", "filter.results"}
    for name, rep in run.reports.items():
        disclosed = {e["label"] for e in rep["ledger"] if e["kind"] == "disclosed"}
        public = {e["label"] for e in rep["ledger"] if e["kind"] == "public"}
        if name != "dealer":
            assert disclosed <= documented and "filter.candidate_slots" in disclosed
            assert public == {"filter.study_metadata", "filter.job_key_contribution"}
        else:
            assert not disclosed and not public


def test_overflow_is_a_clear_error(study):
    with pytest.raises(InputError, match=r"variants fall into one slot .* \(1 slots\); rerun .* --lanes"):
        _run(study, {"model": "carrier", "table_size": 1, "lanes": 4})


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        FilterParams.from_dict({"model": "nope"})
    with pytest.raises(ValueError, match="needs the public gene list"):
        FilterParams.from_dict({"model": "comphet"})
    with pytest.raises(ValueError, match="unknown filter parameter"):
        FilterParams.from_dict({"model": "carrier", "tablesize": 3})


@pytest.mark.parametrize("model", ["carrier", "denovo", "comphet", "gene-diff", "max-gene", "gene-intersect"])
def test_site_without_variants_and_study_without_trios(study, model):
    from cipherome.genomics.filtering.local import Pedigree, SiteVariants

    params = {"model": model}
    if model == "carrier":
        params.update(table_size=16, lanes=16)
    elif model == "denovo":
        params.update(table_size=32, lanes=16)
    else:
        params.update(genes=GENES, lanes=12)
    _check([study[0], study[1], SiteVariants.from_rows(study[2].ped, [])], params)
    lone = [SiteVariants.from_rows(Pedigree.from_rows([["Z", f"Z{i}", "0", "0", 1, 1]]),
                                   [("1:5:A:G", "1", 5, "A", "G", ("GENE1",), "x", np.array([1], np.int8))])
            for i in range(3)]
    rows, _ = _check(lone, params)
    assert rows or model in ("denovo", "comphet", "gene-diff")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [41, 42])
def test_larger_studies_default_geometry(seed):
    st = simulate(seed, n_positions=400, missing=0.03, carrier_p=0.05)
    svs = [site_variants(st, s) for s in range(3)]
    for params in ({"model": "carrier", "max_cohort_af": "0.05", "max_variants": 400},
                   {"model": "carrier", "min_affected": 2, "max_unaffected": 1, "max_variants": 400},
                   {"model": "recessive", "min_affected": 1, "max_variants": 400},
                   {"model": "xlinked", "min_affected": 1, "max_variants": 400},
                   {"model": "denovo", "max_variants": 400},
                   {"model": "comphet", "genes": GENES, "lanes": 40},
                   {"model": "top-genes", "genes": GENES, "top": 5}):
        _check(svs, params, mc=3)


@pytest.mark.parametrize("params,gb", [
    ({"model": "carrier", "max_cohort_af": "0.2", "table_size": 64, "lanes": 8}, 0.0005),
    ({"model": "recessive", "min_affected": 1, "table_size": 64, "lanes": 8}, 0.0005),
    ({"model": "carrier", "max_cohort_af": "0.2", "max_variants": 100}, 0.002),
    ({"model": "denovo", "table_size": 48, "lanes": 14}, 0.0005),
    ({"model": "comphet", "genes": GENES, "lanes": 10}, 0.001),
], ids=lambda x: x["model"] if isinstance(x, dict) else str(x))
def test_chunked_equals_unchunked(study, params, gb):
    """A small memory budget streams slots (cohort) or trios (family) in several chunks: the same released answer."""
    whole = _run(study, params)
    chunked = _run(study, params, [{"max_job_memory_gb": gb}] + [{}] * 2)
    a, b = whole.results[0], chunked.results[0]
    key = "rows" if "rows" in a else "genes"
    assert a[key] == b[key] == reference_filter(study, params, 0)[key]
    ra, rb = whole.reports["p0"]["rounds"], chunked.reports["p0"]["rounds"]
    assert rb > ra  # more chunks, each with the constant rounds of one batch


def test_plan_over_budget_is_refused_before_it_starts(study):
    with pytest.raises(InputError, match=r"plan needs at least .* GB per party but site p1 allows 0\.00 GB "
                                         r"\(policy max_job_memory_gb\); lower --max-member-variants .* raise "
                                         r"max_job_memory_gb at site p1"):
        _run(study, {"model": "denovo", "table_size": 48, "lanes": 14}, [{}, {"max_job_memory_gb": 0.0001}, {}])


def test_trio_with_missing_parent_is_skipped_not_an_error(study, caplog):
    """A child whose father is genotyped nowhere: no trio, a note in its site's log; the other trios (one with all
    members at one site, two split across sites) give the twin's rows."""
    from cipherome.genomics.filtering.local import Pedigree, SiteVariants

    ped = study[2].ped.rows()
    j = [r[1] for r in ped].index("U2a")
    ped[j][2], ped[j][3] = "GHOST", "U2c"
    sv = SiteVariants.from_rows(Pedigree.from_rows(ped), [
        (k, c, p, r, a, g, cons, d) for k, c, p, r, a, g, cons, d in zip(
            study[2].keys, study[2].chrom, study[2].pos, study[2].ref, study[2].alt, study[2].genes,
            study[2].consequence, study[2].dosage)])
    svs = [study[0], study[1], sv]
    with caplog.at_level("WARNING", logger="cipherome.filter"):
        rows, run = _check(svs, {"model": "denovo", "table_size": 64, "lanes": 14})
    assert sorted(run.results[0]["trios"]) == ["FA", "FB", "FC"] and rows
    assert any("genotyped at no site" in r.getMessage() and "trio skipped" in r.getMessage() for r in caplog.records)
    _check(svs, {"model": "comphet", "genes": GENES, "lanes": 10})


def test_member_genotyped_at_two_sites_is_used_once_from_the_first_site(caplog):
    """Child A1 (site p0) also at p2, child C1 (p2) also at p1, father B2 (p1) also at p0, each second copy with
    discordant calls: every trio is analysed once, from the copy at the first site in the study's order (the twin
    pools the first copy), with a public note; no error."""
    from tests.filter_sim import genotype_again

    st = simulate(11, n_positions=70)
    for k, (iid, site) in enumerate((("A1", 2), ("C1", 1), ("B2", 0))):
        genotype_again(st, iid, site, seed=k)
    svs = [site_variants(st, s) for s in range(3)]
    with caplog.at_level("WARNING", logger="cipherome.filter"):
        rows, run = _check(svs, {"model": "denovo", "table_size": 64, "lanes": 14})
    res = run.results[0]
    assert sorted(res["trios"]) == ["FA", "FB", "FC"] and {r["family"] for r in rows} >= {"FA", "FC"}
    assert sorted(n.split(":")[0] for n in res["notes"]) == ["family FA", "family FB", "family FC"]
    assert "the child genotyped at more than one site" in " ".join(res["notes"])
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "child C1 is also genotyped at site p1" in msgs and "the father is also genotyped at site p1" in msgs
    # the second copies differ: using them instead would change the answer
    later = [site_variants(st, s) for s in range(3)]
    wrong = reference_filter([later[0], later[1], later[2]][::-1], {"model": "denovo"}, 0)["rows"]
    assert wrong != rows
    _check(svs, {"model": "comphet", "genes": GENES, "lanes": 12})
