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
| kill -9 / SIGSTOP of role R in the     | as above, for a variant-filtering job (carrier model) stopped in  |
|   filtering reveal (opening of the     |   its reveal stage, on a second cluster whose links emulate a WAN |
|   candidates' keys and texts)          |   (``FILTER_WAN``, so that the stage lasts over a second); the    |
|                                        |   next filter job's rows equal the baseline's                     |
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
from tests.filter_sim import simulate, write_site_files
from tests.site_study import small_study

pytestmark = [pytest.mark.faults, pytest.mark.slow]

TIMEOUT = 15.0  # the study's round timeout (above the longest local step between two messages under load)
DEADLINE = TIMEOUT + PROBE_SECONDS + 15.0  # a fault must surface at every survivor within this
PARAMS = GwasParams(pheno_name="quant_trait", maf=0.01, block=96, pca=2, pca_variants=600).to_dict()
#: without PCA: the results of two runs agree to fixed-point precision (compared with the baseline)
PLAIN = GwasParams(pheno_name="quant_trait", maf=0.01, block=96).to_dict()
ROLES = ["p0", "p1", "dealer"]
STAGES = ["metadata", "variant_qc", "pca", "association"]
#: the filtering job's stages at the lead, in order (``genomics.filtering.job.run_filter``)
FILTER_STAGES = ["metadata", "secure_filter", "reveal", "confirm"]
#: a carrier search whose reveal opens a few dozen candidates in 8-24 rounds
FILTER = {"model": "carrier", "max_cohort_af": "0.9", "table_size": 1024, "lanes": 8}
#: the filter cluster's emulated links: ~0.15 s per round, so that the reveal stage lasts 1.2-4 s
FILTER_WAN = "200ms,1gbit"
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


@pytest.fixture(scope="module", autouse=True)
def _summary():
    """Print every case run (fault, role, stage seen at injection, seconds to failure) at the end (``-s``)."""
    yield
    print("\nfault cases run:", len(RUN))
    for r in RUN:
        print("  ", r)


def _same(result: dict, base) -> None:
    """The lead's P column equals the baseline's to fixed-point precision (|d -log10 p| <= 1e-3)."""
    got = np.asarray(result["assoc"]["columns"]["P"], float)
    ref = np.asarray(base.results[0]["assoc"]["columns"]["P"], float)
    assert got.shape == ref.shape and np.isfinite(got).all()
    np.testing.assert_allclose(-np.log10(got), -np.log10(ref), atol=1e-3, rtol=0)


@pytest.fixture(scope="module")
def ffc(tmp_path_factory):
    """A filtering study (VCF + PED per site, ``tests.filter_sim``) behind emulated WAN links; its baseline rows."""
    d = tmp_path_factory.mktemp("faults_filter")
    st = simulate(31, n_positions=300, missing=0.05)
    data = [write_site_files(st, s, d / f"site{s}") for s in range(3)]
    with LocalCluster(3, workdir=d / "cluster", data=data, round_timeout=TIMEOUT, log_level="INFO",
                      wan=FILTER_WAN) as c:
        base = c.run("filter", FILTER, timeout=300).results[0]["rows"]
        assert base, "the filter baseline releases no row: the reveal stage would open nothing"
        yield c, base


def _wait_stage(c, job_id: str, stage: str, limit: float = 120.0, order: list[str] = STAGES) -> str:
    """Poll the lead's progress until the job is in ``stage`` (or past it, in ``order``); returns the progress."""
    d = c.client.daemons["p0"]
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


def _fault_case(c, fault: str, role: str, stage: str, inject, release, expect: str = "", job=("gwas", PARAMS),
                order: list[str] = STAGES, next_job=_next_job_runs) -> None:
    """Start ``job`` (a GWAS), ``inject`` the fault at ``role`` once the lead is in ``stage``, check every other
    party's outcome (failed, naming ``role`` and saying ``expect``, within DEADLINE, no result), ``release``;
    ``next_job(c)`` must run."""
    job_id = c.client.submit(*job)
    seen = _wait_stage(c, job_id, stage, order=order)
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
    next_job(c)


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


def _filter_faults(ffc, fault: str, role: str, inject, release, expect: str = "") -> None:
    """A fault in the filtering job's reveal stage; the next filter job must release the baseline's rows."""
    c, base = ffc

    def next_filter(c):
        run = c.run("filter", FILTER, timeout=300)
        assert all(r["rows"] == base for r in run.results)

    _fault_case(c, fault, role, "reveal", inject, release, expect, job=("filter", FILTER), order=FILTER_STAGES,
                next_job=next_filter)
    assert RUN[-1][2] == "reveal", RUN[-1]  # injected while the lead was in the reveal stage, not after it


@pytest.mark.parametrize("role", ROLES)
def test_kill9_in_filtering_reveal(ffc, role):
    c, _ = ffc
    _filter_faults(ffc, "kill -9 (filter)", role, lambda: c.kill(role), lambda: c.start_party(role))


@pytest.mark.parametrize("role", ROLES)
def test_sigstop_in_filtering_reveal(ffc, role):
    c, _ = ffc
    proc = c.procs[role]
    _filter_faults(ffc, "SIGSTOP (filter)", role, lambda: proc.send_signal(signal.SIGSTOP),
                   lambda: proc.send_signal(signal.SIGCONT), expect="does not answer")


def _bed(data, i: int) -> Path:
    return Path(data[i]["bfile"] + ".bed")


@pytest.mark.parametrize("how,params", [("truncate", PARAMS), ("rewrite", PARAMS), ("truncate", PLAIN)],
                         ids=["truncate", "rewrite", "truncate-no-pca"])
def test_bed_changed_mid_job_fails_the_job_not_the_daemon(fc, how, params):
    """(Without --pca the association's sums are read in a background thread during QC; a change after those
    reads fails the job too, at the check before the association's openings: the outcome does not depend on timing.)"""
    c, data, _ = fc
    bed = _bed(data, 1)
    saved = bed.read_bytes()
    job_id = c.client.submit("gwas", params)
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
