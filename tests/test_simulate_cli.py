"""``cipherome simulate`` writes per-site data and configs that load once the fingerprints are filled in."""
from __future__ import annotations

from click.testing import CliRunner

from cipherome.cli.main import cli
from cipherome.genomics.io.bed import BedReader
from cipherome.genomics.filtering.local import read_ped
from cipherome.mpc.study import ConfigError, load_site_config, load_study


def test_simulate_kit_loads_after_keys(tmp_path):
    run = CliRunner().invoke(cli, ["simulate", "--sites", "2", "--out", str(tmp_path / "s"), "--samples", "120",
                                   "--variants", "80", "--first-port", "17400"])
    assert run.exit_code == 0, run.output
    s = tmp_path / "s"
    for name in ("site1", "site2"):
        for ext in ("bed", "bim", "fam", "pheno", "covar", "vcf.gz", "vcf.gz.tbi", "ped"):
            assert (s / name / "data" / f"{name}.{ext}").is_file()
    n = [len(BedReader(s / f"site{i}" / "data" / f"site{i}").samples) for i in (1, 2)]
    assert sum(n) == 120 and min(n) > 0
    assert len(read_ped(s / "site1" / "data" / "site1.ped")) == n[0]
    try:
        load_study(s / "study.toml")
        raise AssertionError("a study with placeholder fingerprints must not load")
    except ConfigError as exc:
        assert "fingerprint" in str(exc)
    text = (s / "study.toml").read_text()
    for party, folder in (("site1", "site1/keys"), ("site2", "site2/keys"), ("dealer", "dealer/keys"),
                          ("alice", "alice")):
        r = CliRunner().invoke(cli, ["keys", "init", "--party", party, "--out", str(s / folder)])
        fp = r.output.split("fingerprint:")[1].strip()
        text = text.replace(f"PASTE-FINGERPRINT-OF-{party}", fp)
    (s / "study.toml").write_text(text)
    study = load_study(s / "study.toml")
    assert study.sites == ["site1", "site2"] and study.dealer == "dealer"
    assert [p.address for p in study.parties] == ["127.0.0.1:17400", "127.0.0.1:17401", "127.0.0.1:17402"]
    for name in ("site1", "site2", "dealer"):
        cfg = load_site_config(s / name / f"{name}.toml")
        assert cfg.workloads == ["gwas", "filter"]
        if name != "dealer":
            assert cfg.site.path("bfile").with_suffix(".bed").is_file() and cfg.policy["min_cell_size"] == 5
    again = CliRunner().invoke(cli, ["simulate", "--out", str(s)])
    assert again.exit_code == 1 and "exists" in again.output
