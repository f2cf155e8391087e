"""End-to-end: real party daemons (separate processes, mutual TLS, 127.0.0.1) run jobs that match numpy."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from cipherome.mpc.launcher import LocalCluster

HERE = Path(__file__).parent


def _cluster(n: int, **kw) -> LocalCluster:
    return LocalCluster(n, plugins=["grpc_test_jobs"], pythonpath=[str(HERE)], **kw)


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda n: f"{n}parties")
def cluster(request):
    n = request.param
    data = [{"cohort": f"/data/site{i}.bed", "index": i} for i in range(n)]
    policy = [{"workloads": ["bench", "test"], "min_cell_size": 5 + i} for i in range(n)]
    with _cluster(n, data=data, policy=policy) as c:
        yield c


@pytest.mark.parametrize("op,size", [("mul", 5000), ("matmul", 40), ("open", 5000)])
def test_bench_jobs(cluster, op, size):
    run = cluster.run(f"bench.{op}", {"size": size})
    assert len(run.results) == cluster.n
    for r in run.results:
        assert r["ok"] is True, r  # the opened product equals the plaintext one
        assert r["bytes_sent"] > 0 and r["rounds"] >= 1
    assert set(run.reports) == set(cluster.names)
    lead = run.reports["p0"]
    assert lead["bytes_sent"] > 0 and lead["rounds"] > 0
    # the dealer never learns anything: it is no recipient of any opening in the compute parties' ledgers
    for p in cluster.sites:
        ledger = run.reports[p]["ledger"]
        assert ledger, p  # the check below is not vacuous: the bench opened its result
        assert all("dealer" not in entry["recipients"] for entry in ledger), ledger


def test_product_matches_numpy(cluster):
    run = cluster.run("test.check_mul", {"n": 16, "seed": 3})
    rng = np.random.default_rng(3)
    xv, yv = rng.uniform(-4, 4, (16, 16)), rng.uniform(-4, 4, (16, 16))
    for r in run.results:
        assert r["ok"], r["max_err"]
        assert isinstance(r["product"], np.ndarray) and r["product"].shape == (16, 16)
        np.testing.assert_allclose(r["product"], xv @ yv, atol=1e-3)


def test_site_tables_reach_jobs(cluster):
    run = cluster.run("test.site")
    for i, r in enumerate(run.results):
        assert r["party"] == f"p{i}" and r["name"] == f"p{i}"
        assert r["data"] == {"cohort": f"/data/site{i}.bed", "index": i}
        assert r["policy"]["min_cell_size"] == 5 + i
        assert r["blas_threads"] and set(r["blas_threads"]) == {1}  # mpc/blas.py: one BLAS thread per daemon


def test_two_jobs_at_once(cluster):
    out = {}

    def go(seed):
        out[seed] = cluster.run("test.check_mul", {"n": 24, "seed": seed})

    threads = [threading.Thread(target=go, args=(s,)) for s in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        xv, yv = rng.uniform(-4, 4, (24, 24)), rng.uniform(-4, 4, (24, 24))
        for r in out[seed].results:
            assert r["ok"] and r["seed"] == seed
            np.testing.assert_allclose(r["product"], xv @ yv, atol=1e-3)


def test_large_message_is_chunked(cluster):
    """A message far above gRPC's 4 MB default limit crosses as chunks (3 MB per share x 2 operands)."""
    if cluster.n != 2:
        pytest.skip("once is enough")
    run = cluster.run("bench.exchange", {"size": 24 << 20})
    assert run.results[0]["ok"] is True
    assert run.reports["p0"]["bytes_sent"] >= 24 << 20


def test_cli_job_and_party_status(cluster, tmp_path):
    if cluster.n != 3:
        pytest.skip("once is enough")
    import json

    from click.testing import CliRunner

    from cipherome.cli.main import cli

    runner = CliRunner()
    auth = ["--study", str(cluster.study_path), "--key", str(cluster.dir / "keys/submitter.key"),
            "--cert", str(cluster.dir / "keys/submitter.crt")]
    out = tmp_path / "res.job.json"
    res = runner.invoke(cli, ["job", "submit", *auth, "bench.open", "--params", '{"size": 100}',
                              "--out", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    job_id = res.output.strip().splitlines()[-1]
    doc = json.loads(out.read_text())
    assert set(doc) == set(cluster.names) and doc["p0"]["result"]["ok"] is True
    assert doc["p0"]["report"]["ledger"]
    res = runner.invoke(cli, ["job", "status", *auth, job_id])
    assert res.exit_code == 0 and res.output.count("done") == 4, res.output
    res = runner.invoke(cli, ["party", "status", "--config", str(cluster.configs["p1"])])
    assert res.exit_code == 0, res.output
    assert "party p1 (site)" in res.output and job_id in res.output
    res = runner.invoke(cli, ["party", "status", "--config", str(cluster.configs["p1"]), "--json"])
    assert json.loads(res.output)["health"]["studies"] == ["local"]
    # a refusal is one clear line, no traceback
    res = runner.invoke(cli, ["job", "submit", *auth, "bench.nope"])
    assert res.exit_code != 0 and "unknown job 'bench.nope'" in res.output and "Traceback" not in res.output


def _peak_rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
def test_one_gigabyte_exchange_memory(cluster):
    """1 GB crosses in chunks; neither daemon's peak memory grows by much more than the array itself."""
    if cluster.n != 2:
        pytest.skip("once is enough")
    cluster.run("bench.open", {"size": 10})
    before = {p: _peak_rss(cluster.procs[p].pid) for p in ("p0", "p1")}
    run = cluster.run("bench.exchange", {"size": 1 << 30})
    assert run.results[0]["ok"] is True
    for p in ("p0", "p1"):
        grown = _peak_rss(cluster.procs[p].pid) - before[p]
        assert grown < (1 << 30) * 1.25, (p, grown)


def test_no_orphans_when_the_parent_dies(tmp_path):
    """Daemons started by a launcher exit by themselves when the launching process is killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "launch.py"  # the cluster's folder (its keys) under tmp_path: SIGKILL leaves no cleanup
    script.write_text(
        "import sys, time\n"
        "from cipherome.mpc.launcher import LocalCluster\n"
        f"c = LocalCluster(2, log_level='WARNING', workdir={str(tmp_path / 'cluster')!r}).start()\n"
        "print(' '.join(str(p.pid) for p in c.procs.values()), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in parent.stdout.readline().split()]
        assert len(pids) == 3
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[1].split()[0] != "Z":
                        alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
    assert not alive, f"daemons still running after their parent died: {alive}"
