"""LocalCluster hands daemons absolute paths only: they run in the cluster folder, not in the caller's."""
from __future__ import annotations

from pathlib import Path

from cipherome.mpc.launcher import LocalCluster
from cipherome.mpc.study import load_site_config


def test_relative_workdir_data_and_pythonpath_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = LocalCluster(2, workdir="rel/cluster", data={"bfile": "data/site", "region": "chr1"}, pythonpath=["helpers"])
    c._write()
    assert c.dir == tmp_path / "rel" / "cluster"
    assert c.pythonpath == [str(tmp_path / "helpers")]
    for name in c.names:
        assert c.configs[name].is_absolute()
    cfg = load_site_config(c.configs["p0"])
    assert cfg.data == {"bfile": str(tmp_path / "data" / "site"), "region": "chr1"}
    assert cfg.site.path("bfile") == tmp_path / "data" / "site"
    assert Path(cfg.key_path).is_file()
