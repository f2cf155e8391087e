"""Variant filtering end to end: real party daemons (mutual TLS on loopback) reading VCFs, PEDs written by the test.

One cluster serves every test: three sites whose VCFs (bgzipped, CSQ, GQ/DP,
multi-allelic records, haploid male X calls, missing and low-quality calls) hold
three trios, one split over all three sites. Every model's released rows or
genes must equal the plaintext twin on the pooled files, also with a 2-slot
table where every slot collides; the CLI writes the same rows as TSV and VCF.
"""
import json

import numpy as np
import pytest

from cipherome.genomics.filtering.local import PreFilter, read_site
from cipherome.genomics.reference.filtering import reference_filter
from cipherome.mpc.client import JobFailed
from cipherome.mpc.launcher import LocalCluster
from tests.filter_sim import GENES, simulate, write_site_files

POLICY_MIN_CELL = [0, 2, 3]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("filter_e2e")
    st = simulate(31, n_positions=70, missing=0.05)
    rng = np.random.default_rng(3)
    low = {(int(p), int(j)): 7 for p, j in zip(rng.integers(0, 70, 60), rng.integers(0, len(st.ped), 60))}
    data = [write_site_files(st, s, d / f"site{s}", low_quality=low) for s in range(3)]
    policy = [{"min_cell_size": m} for m in POLICY_MIN_CELL]
    with LocalCluster(3, workdir=d / "cluster", data=data, policy=policy, log_level="WARNING") as cluster:
        yield {"cluster": cluster, "data": data, "dir": d}


def _twin(study, params):
    pf = PreFilter.from_params(params)
    svs = [read_site(x["vcf"], x["ped"], prefilter=pf) for x in study["data"]]
    return reference_filter(svs, params, max(POLICY_MIN_CELL))


CASES = [
    {"model": "carrier", "max_cohort_af": "0.2", "min_gq": 20},
    {"model": "carrier", "min_affected": 2, "max_unaffected": 1, "table_size": 2, "lanes": 60},
    {"model": "dominant", "table_size": 64, "lanes": 10},
    {"model": "recessive", "min_affected": 1, "table_size": 64, "lanes": 10},
    {"model": "xlinked", "min_affected": 1, "table_size": 64, "lanes": 10},
    {"model": "denovo", "min_gq": 20, "table_size": 64, "lanes": 10},
    {"model": "denovo", "table_size": 40, "lanes": 40},
    {"model": "comphet", "genes": GENES, "lanes": 12},
    {"model": "comphet", "genes": GENES, "max_member_variants": 40},
    {"model": "max-gene", "genes": GENES},
    {"model": "top-genes", "genes": GENES, "top": 4},
    {"model": "gene-intersect", "genes": GENES},
    {"model": "gene-diff", "genes": GENES},
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: "-".join(str(v) for k, v in p.items() if k != "genes"))
def test_daemons_equal_twin(study, params):
    run = study["cluster"].run("filter", params)
    got = run.results[0]
    want = _twin(study, params)
    key = "rows" if "rows" in want else "genes"
    assert got[key] == want[key]
    assert all(r[key] == got[key] for r in run.results)
    assert got["min_cell_size"] == max(POLICY_MIN_CELL)
    if params["model"] == "denovo":
        assert any(r["family"] == "FA" for r in got["rows"])  # the trio split over three sites
    for name, rep in run.reports.items():
        disclosed = {e["label"] for e in rep["ledger"] if e["kind"] == "disclosed"}
        assert disclosed <= {"filter.trio_requests", "filter.trio_answers", "filter.trios", "filter.candidate_slots", "filter.candidate_fingerprints", "filter.candidate_text_bytes",
                             "filter.candidate_texts",
                             "filter.confirm", "filter.counts", "filter.max_genes", "filter.top_genes",
                             "filter.intersect_genes", "filter.diff_genes", "filter.results"}
        if name == "dealer":
            assert not disclosed


def test_cli_writes_tsv_vcf_and_report(study):
    import pysam
    from click.testing import CliRunner

    from cipherome.cli.main import cli

    c = study["cluster"]
    out = study["dir"] / "out" / "trio"
    keys = c.dir / "keys"
    res = CliRunner().invoke(cli, ["filter", "--study", str(c.study_path), "--key", str(keys / "submitter.key"),
                                   "--cert", str(keys / "submitter.crt"), "--model", "denovo", "--out", str(out),
                                   "--table-size", "64", "--lanes", "10", "--min-gq", "20"])
    assert res.exit_code == 0, res.output
    want = _twin(study, {"model": "denovo", "min_gq": 20})["rows"]
    lines = (out.parent / "trio.filter.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:9] == ["#CHROM", "POS", "REF", "ALT", "GENE", "CONSEQUENCE", "MODEL", "FAMILY",
                                        "INHERITANCE"]
    got = [ln.split("\t") for ln in lines[1:]]
    assert [(g[0], int(g[1]), g[2], g[3], g[7]) for g in got] == \
        [(r["chrom"], r["pos"], r["ref"], r["alt"], r["family"]) for r in want]
    vf = pysam.VariantFile(str(out.parent / "trio.filter.vcf"))
    recs = [(r.chrom, r.pos, r.ref, r.alts[0], r.info["FAMILY"]) for r in vf]
    assert sorted(recs) == sorted((r["chrom"], r["pos"], r["ref"], r["alt"], r["family"]) for r in want)
    report = json.loads((out.parent / "trio.run.json").read_text())
    assert report["model"] == "denovo" and "ledger" in report["reports"]["p0"]
    # gene-level output
    genes = study["dir"] / "genes.txt"
    genes.write_text("\n".join(GENES) + "\n")
    res = CliRunner().invoke(cli, ["filter", "--study", str(c.study_path), "--key", str(keys / "submitter.key"),
                                   "--cert", str(keys / "submitter.crt"), "--model", "max-gene", "--genes",
                                   str(genes), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = (out.parent / "trio.genes.tsv").read_text().splitlines()
    want = _twin(study, {"model": "max-gene", "genes": GENES})["genes"]
    assert [r.split("\t")[0] for r in rows[1:]] == [g["gene"] for g in want]


def test_cli_usage_errors(study, tmp_path):
    from click.testing import CliRunner

    from cipherome.cli.main import cli

    c = study["cluster"]
    keys = c.dir / "keys"
    base = ["filter", "--study", str(c.study_path), "--key", str(keys / "submitter.key"), "--cert",
            str(keys / "submitter.crt"), "--out", str(tmp_path / "x")]
    res = CliRunner().invoke(cli, base + ["--model", "comphet"])
    assert res.exit_code != 0 and "needs the public gene list" in res.output
    res = CliRunner().invoke(cli, base + ["--model", "carrier", "--max-cohort-af", "2"])
    assert res.exit_code != 0 and "max_cohort_af" in res.output
    assert not list(tmp_path.iterdir())


def test_overflow_fails_with_a_clear_message_and_writes_nothing(study):
    with pytest.raises(JobFailed, match=r"fall into one slot .* rerun with more lanes"):
        study["cluster"].run("filter", {"model": "carrier", "table_size": 1, "lanes": 3})
    # the daemons are still fine afterwards
    assert study["cluster"].run("filter", {"model": "dominant", "table_size": 64, "lanes": 10}).results[0]["rows"]


def test_plan_over_budget_is_refused_and_daemons_keep_serving(study, tmp_path):
    """Site p1 allows 2 MB per job: a de novo plan of 36 MB per trio is refused before any table is built, with
    a message saying what to change; the same daemons then run a plan that fits."""
    policy = [{}, {"max_job_memory_gb": 0.002}, {}]
    with LocalCluster(3, workdir=tmp_path / "c", data=study["data"], policy=policy, log_level="WARNING") as cluster:
        pids = {name: proc.pid for name, proc in cluster.procs.items()}
        with pytest.raises(JobFailed, match=r"site p1 allows 0\.00 GB \(policy max_job_memory_gb\); lower "
                                            r"--max-member-variants"):
            cluster.run("filter", {"model": "denovo", "table_size": 4096, "lanes": 14})
        params = {"model": "denovo", "table_size": 48, "lanes": 14}
        run = cluster.run("filter", params)
        assert run.results[0]["rows"] == _twin(study, params)["rows"] and run.results[0]["rows"]
        assert {name: proc.pid for name, proc in cluster.procs.items()} == pids
        assert all(proc.poll() is None for proc in cluster.procs.values())  # no daemon exited or was killed


def test_member_genotyped_at_two_sites_through_daemons(tmp_path):
    """Real daemons reading VCF/PED files where child A1 (site p0) is also in p2's files, child C1 (p2) also in p1's
    and father B2 (p1) also in p0's, each second copy with discordant calls: de novo and comphet equal the twin that
    pools the first copy of each individual; each trio once, with a note; the sites' logs name the other site."""
    from tests.filter_sim import genotype_again

    st = simulate(31, n_positions=70, missing=0.05)
    for k, (iid, site) in enumerate((("A1", 2), ("C1", 1), ("B2", 0))):
        genotype_again(st, iid, site, seed=k)
    data = [write_site_files(st, s, tmp_path / f"site{s}") for s in range(3)]
    with LocalCluster(3, workdir=tmp_path / "cluster", data=data, log_level="INFO") as cluster:
        for params in ({"model": "denovo", "table_size": 64, "lanes": 10},
                       {"model": "comphet", "genes": GENES, "lanes": 12}):
            run = cluster.run("filter", params)
            got = run.results[0]
            want = _twin({"data": data}, params)
            assert got["rows"] == want["rows"] and got["rows"]
            assert sorted(got["trios"]) == ["FA", "FB", "FC"]
            assert sorted(n.split(":")[0] for n in got["notes"]) == ["family FA", "family FB", "family FC"]
        logs = {p.name: p.read_text() for p in (tmp_path / "cluster" / "logs").glob("*.*")}
    assert any("child A1 is also genotyped at site p0" in t for t in logs.values())
    assert not any("Traceback" in t for t in logs.values())
