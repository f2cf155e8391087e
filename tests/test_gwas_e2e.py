"""Secure GWAS through real party daemons (separate processes, mutual TLS, 127.0.0.1).

Each site's daemon reads its own .bed/.bim/.fam, phenotype and covariate files
from its config; the results must equal PLINK 2 on the pooled files, and bad
input must fail the job with a clear error while the daemons keep serving.
"""
import numpy as np
import pytest

from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.simulate import demo_config, simulate_study, write_study
from cipherome.mpc.client import JobFailed
from cipherome.mpc.launcher import LocalCluster
from tests.gwas_sites import site_data_tables
from tests.plink_runner import read_glm, run_plink


@pytest.fixture(scope="module")
def study_cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("gwas_e2e")
    cfg = demo_config().replace(n_samples=900, n_variants=1200, seed=5, pheno_missing_rate=0.01)
    study = simulate_study(cfg)
    files = write_study(study, d / "data", prefix="s", pooled=True, sites=True, vcf=True)
    data = site_data_tables(files, cfg.n_sites)  # site 2 brings a bgzipped VCF: both readers in one study
    with LocalCluster(cfg.n_sites, workdir=d / "cluster", data=data, log_level="WARNING") as cluster:
        yield study, files, cluster, d


def test_daemon_gwas_matches_plink2(study_cluster):
    study, files, cluster, d = study_cluster
    params = GwasParams(pheno_name="quant_trait", geno=0.05, maf=0.01, block=512)
    res = cluster.run("gwas", params.to_dict())
    r = res.results[0]
    assert r["glm"] == "linear" and r["n_variants"] == study.n_variants
    for other in res.results[1:]:  # the other sites return the summary only: the variant arrays come once
        assert "assoc" not in other and "tested" not in other
        assert (other["qc"], other["n_assoc"]) == (r["qc"], r["n_assoc"])
    pooled = files["pooled"]
    plink = run_plink(["--bfile", str(pooled["bed"].with_suffix("")), "--pheno", pooled["pheno"],
                       "--pheno-name", "quant_trait", "--covar", pooled["covar"], "--geno", "0.05",
                       "--maf", "0.01", "--glm", "hide-covar"], d / "plink")
    ref = read_glm(plink.path(".quant_trait.glm.linear"))
    ids = np.asarray(study.variant_id)[np.asarray(r["tested"])]
    assert set(ids) == set(ref["ID"])
    pos = {v: i for i, v in enumerate(ref["ID"])}
    j = np.array([pos[v] for v in ids])
    p = np.asarray(r["assoc"]["columns"]["P"], float)
    ok = np.isfinite(p) & np.isfinite(ref["P"][j])
    assert ok.mean() >= 0.99, ok.mean()  # coverage: the comparison is not emptied by NaN rows
    assert np.max(np.abs(np.log10(p[ok]) - np.log10(ref["P"][j][ok]))) <= 0.01
    # every compute party's report carries stages with bytes and rounds, and its ledger;
    # the dealer is never a recipient of anything the compute parties open
    for name, rep in res.reports.items():
        assert all("rounds" in s for s in rep["stages"])
        if name != "dealer":  # each stage carries the daemon's CPU time; the job's stages used some
            assert all(s["process_cpu_s"] >= 0 for s in rep["stages"])
            assert sum(s["process_cpu_s"] for s in rep["stages"]) > 0
            assert rep["ledger"] and all("dealer" not in e["recipients"] for e in rep["ledger"]), rep["ledger"]


def test_bad_input_fails_cleanly_and_daemons_keep_serving(study_cluster):
    study, files, cluster, d = study_cluster
    # the kind of problem and the party cross sites; the file's detail stays in each site's log
    with pytest.raises(JobFailed, match="phenotype file lacks a requested column; see its log"):
        cluster.run("gwas", GwasParams(pheno_name="no_such_trait").to_dict())
    # the next job runs fine on the same daemons
    res = cluster.run("gwas", GwasParams(pheno_name="disease", glm="trend", maf=0.05, block=1024).to_dict())
    assert res.results[0]["glm"] == "trend"


def test_gwas_command_writes_plink_files(study_cluster, tmp_path):
    """`cipherome gwas` as a submitter would run it: files appear only after success."""
    from click.testing import CliRunner

    from cipherome.cli.main import cli
    from tests.plink_runner import read_table

    study, files, cluster, d = study_cluster
    keys = cluster.dir / "keys"
    prefix = tmp_path / "res"
    args = ["gwas", "--study", str(cluster.study_path), "--key", str(keys / "submitter.key"),
            "--cert", str(keys / "submitter.crt"), "--out", str(prefix), "--pheno-name", "quant_trait",
            "--covar-name", "age,sex", "--maf", "0.02", "--ci", "0.95"]
    got = CliRunner().invoke(cli, args)
    assert got.exit_code == 0, got.output
    table = read_table(f"{prefix}.quant_trait.glm.linear")
    assert list(table)[:8] == ["CHROM", "POS", "ID", "REF", "ALT", "A1", "TEST", "OBS_CT"]
    assert {"BETA", "SE", "L95", "U95", "T_STAT", "P", "ERRCODE"} <= set(table)
    for suffix in (".qc.json", ".manhattan.png", ".qq.png", ".run.json"):
        assert (tmp_path / f"res.quant_trait{suffix}").stat().st_size > 0
    # a failing job leaves nothing behind
    bad = tmp_path / "bad"
    got = CliRunner().invoke(cli, args[:8] + [str(bad), "--pheno-name", "nope"])
    assert got.exit_code != 0 and "nothing written" in got.output
    assert not list(tmp_path.glob("bad*"))
