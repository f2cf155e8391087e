"""Fault injection with real daemon processes (``LocalCluster``): each case states its expected outcome.

Run with ``-m faults`` (the cases are also marked ``slow``: about 5-10 minutes on
2 busy cores, so CI runs them as a separate step, see .ci/run).

| case                                   | expected outcome                                                  |
|----------------------------------------|-------------------------------------------------------------------|
| kill -9 of role R at stage S           | every survivor: state failed, its error names R, within           |
|   (R: lead p0, site p1, dealer;        |   round timeout + probe + margin (DEADLINE); no result at any     |
|    S: sample QC/metadata, variant QC,  |   survivor; R restarted, the next job runs at every party         |
|    PCA, association)                   |                                                                   |
| SIGSTOP of role R at stage S, held     | every other party: failed, its error names R ("does not answer"), |
|   beyond the round timeout             |   within DEADLINE; after SIGCONT R is up and the next job runs    |
| .bed truncated at p1 mid-job           | failed; p1's error: "its genotype file changed while a job read   |
|                                        |   it"; p1's daemon stays up (no SIGBUS); next job runs            |
| .bed rewritten in place at p1 mid-job  | same as truncation                                                |
| .bed replaced by rename mid-job        | done: the job reads the version it opened; results equal baseline |
| two submitters' concurrent GWAS        | both done, results equal to the sequential baseline               |
| submitting client killed mid-job       | the job finishes at every party; the submitter fetches it later   |
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cipherome.genomics.gwas.params import GwasParams
from cipherome.mpc.client import StudyClient
from cipherome.mpc.grpc_transport import PROBE_SECONDS
from cipherome.mpc.launcher import LocalCluster
from tests.site_study import small_study

pytestmark = [pytest.mark.faults, pytest.mark.slow]

TIMEOUT = 15.0  # the study's round timeout (above the longest local step between two messages under load)
DEADLINE = TIMEOUT + PROBE_SECONDS + 15.0  # a fault must surface at every survivor within this
PARAMS = GwasParams(pheno_name="quant_trait", maf=0.01, block=96, pca=2, pca_variants=600).to_dict()
#: without PCA: the results of two runs agree to fixed-point precision (compared with the baseline)
PLAIN = GwasParams(pheno_name="quant_trait", maf=0.01, block=96).to_dict()
ROLES = ["p0", "p1", "dealer"]
STAGES = ["metadata", "variant_qc", "pca", "association"]
#: every case run: (fault, role, stage reached when injected, seconds to failure at the slowest survivor)
RUN: list[tuple] = []


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    study, files, data = small_study(d / "data", n_variants=1500, n_samples=300)
    with LocalCluster(3, workdir=d / "cluster", data=data, round_timeout=TIMEOUT, log_level="INFO",
                      submitters={"alice": "submitter", "bob": "submitter"}) as c:
        base = c.run("gwas", PLAIN, timeout=300)
        yield c, data, base
    print("\nfault cases run:", len(RUN))
    for r in RUN:
        print("  ", r)


def _same(result: dict, base) -> None:
    """The lead's P column equals the baseline's to fixed-point precision (|d -log10 p| <= 1e-3)."""
    got = np.asarray(result["assoc"]["columns"]["P"], float)
    ref = np.asarray(base.results[0]["assoc"]["columns"]["P"], float)
    assert got.shape == ref.shape and np.isfinite(got).all()
    np.testing.assert_allclose(-np.log10(got), -np.log10(ref), atol=1e-3, rtol=0)


def _wait_stage(c, job_id: str, stage: str, limit: float = 120.0) -> str:
    """Poll the lead's progress until the job is in ``stage`` (or past it); returns the progress seen."""
    d = c.client.daemons["p0"]
    order = STAGES
    t_end = time.monotonic() + limit
    while time.monotonic() < t_end:
        info = d.status(job_id)[0]
        prog = info["progress"] or ""
        if info["state"] != "running":
            return f"ended:{info['state']}"
        cur = next((s for s in order if prog.startswith(s)), None)
        if cur is not None and order.index(cur) >= order.index(stage):
            return prog
        time.sleep(0.01)
    raise AssertionError(f"job never reached {stage}")


def _survivor_outcome(c, job_id: str, survivors: list[str], t0: float) -> dict:
    infos = {}
    for p in survivors:
        infos[p] = c.client.daemons[p].status(job_id, wait=DEADLINE)[0]
    took = time.monotonic() - t0
    return infos, took


def _next_job_runs(c) -> None:
    r = c.run("bench.open", {"size": 64}, timeout=60)
    assert all(x["ok"] is True for x in r.results)


def _fault_case(c, fault: str, role: str, stage: str, inject, release, expect: str = "") -> None:
    """Start a GWAS, ``inject`` the fault at ``role`` once the lead is in ``stage``, check every other party's
    outcome (failed, naming ``role`` and saying ``expect``, within DEADLINE, no result), ``release``; the next
    job must run."""
    job_id = c.client.submit("gwas", PARAMS)
    seen = _wait_stage(c, job_id, stage)
    if seen.startswith("ended"):
        pytest.fail(f"the job ended before {stage} could be reached ({seen})")
    t0 = time.monotonic()
    inject()
    try:
        infos, took = _survivor_outcome(c, job_id, [p for p in c.names if p != role], t0)
    finally:
        release()
    RUN.append((fault, role, seen, round(took, 1)))
    for p, info in infos.items():
        assert info["state"] == "failed", (p, info)
        assert f"'{role}'" in info["error"] and expect in info["error"], (p, info["error"])
        assert c.client.daemons[p].fetch(job_id)["result"] is None  # no partial output
    assert took <= DEADLINE
    assert c.procs[role].poll() is None  # restarted (kill -9) or running again (SIGCONT)
    c.wait_healthy([role])
    _next_job_runs(c)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("role", ROLES)
def test_kill9(fc, role, stage):
    c, _, _ = fc
    _fault_case(c, "kill -9", role, stage, lambda: c.kill(role), lambda: c.start_party(role))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("role", ROLES)
def test_sigstop(fc, role, stage):
    c, _, _ = fc
    proc = c.procs[role]
    _fault_case(c, "SIGSTOP", role, stage, lambda: proc.send_signal(signal.SIGSTOP),
                lambda: proc.send_signal(signal.SIGCONT), expect="does not answer")


def _bed(data, i: int) -> Path:
    return Path(data[i]["bfile"] + ".bed")


@pytest.mark.parametrize("how", ["truncate", "rewrite"])
def test_bed_changed_mid_job_fails_the_job_not_the_daemon(fc, how):
    c, data, _ = fc
    bed = _bed(data, 1)
    saved = bed.read_bytes()
    job_id = c.client.submit("gwas", PARAMS)
    seen = _wait_stage(c, job_id, "variant_qc")
    try:
        if how == "truncate":
            os.truncate(bed, 3 + (len(saved) - 3) // 3)
        else:  # same size, new content (and modification time)
            bed.write_bytes(saved[:3] + bytes(len(saved) - 3))
        infos, took = _survivor_outcome(c, job_id, c.names, time.monotonic())
    finally:
        bed.write_bytes(saved)
    RUN.append((f".bed {how}", "p1", seen, round(took, 1)))
    assert c.procs["p1"].poll() is None, c.log_tail("p1")  # no SIGBUS
    assert infos["p1"]["state"] == "failed"
    assert "its genotype file changed while a job read it" in infos["p1"]["error"], infos["p1"]
    assert all("'p1'" in i["error"] for i in infos.values()), infos
    _next_job_runs(c)


def test_bed_replaced_by_rename_mid_job_reads_the_opened_version(fc):
    c, data, base = fc
    bed = _bed(data, 1)
    saved = bed.read_bytes()
    job_id = c.client.submit("gwas", PLAIN)
    seen = _wait_stage(c, job_id, "variant_qc")
    tmp = bed.with_name(bed.name + ".new")
    tmp.write_bytes(saved[:3] + bytes(len(saved) - 3))
    os.replace(tmp, bed)
    try:
        infos = c.client.wait(job_id, 300)
        assert {i["state"] for i in infos.values()} == {"done"}, infos
        got = c.client.fetch(job_id)["p0"]["result"]
    finally:
        bed.write_bytes(saved)
    RUN.append(("bed replaced by rename", "p1", seen, 0))
    _same(got, base)


def test_concurrent_jobs_from_two_submitters(fc):
    c, _, base = fc
    bob = StudyClient(c.study, c.idents["bob"])
    try:
        a = c.client.submit("gwas", PLAIN)
        b = bob.submit("gwas", PLAIN)
        ia, ib = c.client.wait(a, 600), bob.wait(b, 600)
        assert {i["state"] for i in ia.values()} == {"done"} == {i["state"] for i in ib.values()}, (ia, ib)
        for cl, j in ((c.client, a), (bob, b)):
            _same(cl.fetch(j)["p0"]["result"], base)
    finally:
        bob.close()
    RUN.append(("two submitters concurrently", "-", "all", 0))


def test_client_killed_mid_job(fc):
    c, _, base = fc
    keys = c.dir / "keys"
    code = textwrap.dedent(f"""
        import json, sys, time
        from cipherome.mpc.client import StudyClient
        from cipherome.mpc.study import load_study
        from cipherome.mpc.tls import load_identity
        cl = StudyClient(load_study({str(c.study_path)!r}), load_identity("alice", {str(keys / 'alice.key')!r},
                         {str(keys / 'alice.crt')!r}))
        job_id = cl.submit("gwas", json.loads(sys.argv[1]))
        print(job_id, flush=True)
        cl.wait(job_id, 600)
    """)
    import json

    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(PLAIN)], stdout=subprocess.PIPE, text=True)
    job_id = proc.stdout.readline().strip()
    _wait_stage(c, job_id, "variant_qc")
    proc.kill()
    proc.wait(10)
    infos = c.client.wait(job_id, 600)
    assert {i["state"] for i in infos.values()} == {"done"}, infos
    got = c.client.fetch(job_id)["p0"]["result"]
    _same(got, base)
    RUN.append(("client killed mid-job", "submitter", "variant_qc", 0))
