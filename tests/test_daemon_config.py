"""Study files and site configs: what is accepted, and the errors (naming file and fix) for what is not."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cipherome.cli.main import cli
from cipherome.mpc.study import ConfigError, load_site_config, load_study, site_toml, study_toml
from cipherome.mpc.tls import make_identity, write_identity


@pytest.fixture
def world(tmp_path):
    ids = {n: make_identity(n) for n in ("site-a", "site-b", "dealer", "alice")}
    for ident in ids.values():
        write_identity(ident, tmp_path / "keys")

    def party(n, role="site", port=7000):
        return {"name": n, "role": role, "address": f"127.0.0.1:{port}", "fingerprint": ids[n].fingerprint,
                "cert": f"keys/{n}.crt"}

    parties = [party("site-a"), party("site-b", port=7001), party("dealer", "dealer", 7002)]
    subs = [{"name": "alice", "fingerprint": ids["alice"].fingerprint, "cert": "keys/alice.crt"}]
    (tmp_path / "study.toml").write_text(study_toml("s1", parties, subs, ["bench"], 30))
    (tmp_path / "site-a.toml").write_text(site_toml(
        {"name": "site-a", "key": "keys/site-a.key", "cert": "keys/site-a.crt", "listen": "127.0.0.1:7000",
         "studies": ["study.toml"]},
        {"bfile": "data/cohort"}, {"workloads": ["bench"], "min_cell_size": 5}))
    return tmp_path, ids, parties, subs


def test_valid_study_and_site(world):
    d, ids, parties, subs = world
    st = load_study(d / "study.toml")
    assert st.sites == ["site-a", "site-b"] and st.dealer == "dealer" and st.round_timeout == 30
    assert st.submitter_by_fingerprint(ids["alice"].fingerprint).name == "alice"
    assert st.party_by_fingerprint(ids["alice"].fingerprint) is None
    assert st.allows_workload("bench.mul") and not st.allows_workload("gwas.linear")
    cfg = load_site_config(d / "site-a.toml")
    assert cfg.name == "site-a" and list(cfg.studies) == ["s1"]
    assert cfg.site.path("bfile") == d / "data" / "cohort"
    assert cfg.site.policy["min_cell_size"] == 5
    # inline PEM works as well as a path
    parties[0] = {**parties[0], "cert_pem": ids["site-a"].cert_pem.decode()}
    del parties[0]["cert"]
    (d / "inline.toml").write_text(study_toml("s1", parties, subs, ["bench"], 30))
    assert load_study(d / "inline.toml").digest == st.digest


def _bad_study(d, parties, subs, **over):
    (d / "bad.toml").write_text(study_toml("s1", parties, subs, ["bench"]))
    return d / "bad.toml"


@pytest.mark.parametrize("change,match", [
    (lambda p: p[0].update(fingerprint="0" * 64), "fingerprint is .* not the listed"),
    (lambda p: p[0].update(fingerprint="xyz"), "invalid certificate fingerprint"),
    (lambda p: p[1].update(name="site-a"), "party names must be unique"),
    (lambda p: p[2].update(role="site"), "exactly one party with role"),
    (lambda p: p.pop(1), "at least two parties"),
    (lambda p: p[0].update(address="nowhere"), "address must be host:port"),
    (lambda p: p[0].update(role="boss"), "role must be 'site' or 'dealer'"),
    (lambda p: p[0].update(cert="keys/missing.crt"), "cannot read certificate"),
    (lambda p: p[0].pop("fingerprint"), "missing 'fingerprint'"),
])
def test_study_errors(world, change, match):
    d, ids, parties, subs = world
    parties = [dict(p) for p in parties]
    change(parties)
    path = _bad_study(d, parties, subs)
    with pytest.raises(ConfigError, match=match) as err:
        load_study(path)
    assert str(path) in str(err.value)


def test_site_config_errors(world):
    d, ids, parties, subs = world
    base = {"name": "site-a", "key": "keys/site-a.key", "cert": "keys/site-a.crt", "listen": "127.0.0.1:7000",
            "studies": ["study.toml"]}
    cases = [
        ({**base, "name": "site-c"}, "has no party named 'site-c'"),
        ({**base, "cert": "keys/site-b.crt"}, "do not belong together"),
        ({**base, "listen": "7000"}, "listen must be host:port"),
        ({**base, "studies": ["nope.toml"]}, "study file .* not found"),
    ]
    for party, match in cases:
        (d / "bad-site.toml").write_text(site_toml(party))
        with pytest.raises(ConfigError, match=match):
            load_site_config(d / "bad-site.toml")
    # the study lists another certificate for this site
    other = make_identity("site-a")
    write_identity(other, d / "other")
    (d / "bad-site.toml").write_text(site_toml({**base, "key": "other/site-a.key", "cert": "other/site-a.crt"}))
    with pytest.raises(ConfigError, match="send the study owner your current fingerprint"):
        load_site_config(d / "bad-site.toml")
    (d / "bad-site.toml").write_text("[party\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_site_config(d / "bad-site.toml")


def test_serve_with_bad_config_is_a_clean_error(world):
    d, *_ = world
    (d / "bad-site.toml").write_text('[party]\nname = "site-a"\n')
    res = CliRunner().invoke(cli, ["party", "serve", "--config", str(d / "bad-site.toml")])
    assert res.exit_code != 0
    assert "missing 'key'" in res.output and "Traceback" not in res.output
