"""Daemon policies with real daemons: per-submitter job visibility and study admins, who cancelled, the job
digest agreed between parties, results retained by bytes and age; certificate validity and key modes."""
from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

import pytest

from cipherome.mpc.client import ClientError, StudyClient
from cipherome.mpc.launcher import LocalCluster
from cipherome.mpc.tls import TLSError, check_cert_valid, load_identity, make_identity, write_identity
from cipherome.proto import cipherome_pb2 as pb

HERE = Path(__file__).parent
TIMEOUT = 6.0


@pytest.fixture(scope="module")
def cluster():
    policy = {"workloads": ["bench", "test"], "keep_results_mb": 0.006, "keep_results_hours": 4 / 3600}
    subs = {"alice": "submitter", "bob": "submitter", "carol": "admin"}
    with LocalCluster(3, plugins=["grpc_test_jobs"], pythonpath=[str(HERE)], round_timeout=TIMEOUT,
                      workloads=("bench", "test"), policy=policy, submitters=subs) as c:
        clients = {nm: StudyClient(c.study, c.idents[nm]) for nm in ("bob", "carol")}
        yield c, c.client, clients["bob"], clients["carol"]
        for cl in clients.values():
            cl.close()


def _log(c, name: str) -> str:
    return "".join(p.read_text(errors="replace") for p in (c.dir / "logs").glob(f"{name}.*"))


def test_submitters_see_only_their_own_jobs_and_admins_are_logged(cluster):
    c, alice, bob, carol = cluster
    run = alice.run("test.check_mul", {"n": 8, "seed": 5})
    for p, d in bob.daemons.items():
        assert run.job_id not in {j["job_id"] for j in d.status()}, p
        with pytest.raises(ClientError, match="no job"):
            d.fetch(run.job_id)
        with pytest.raises(ClientError, match="no job"):
            d.cancel(run.job_id)
    got = carol.fetch(run.job_id)  # the study admin sees every job
    assert got["p0"]["result"]["ok"]
    assert f"job {run.job_id}: fetch by study admin carol (submitted by alice)" in _log(c, "p0")


def test_the_log_records_who_cancelled(cluster):
    c, alice, bob, carol = cluster
    job_id = alice.submit("test.slow", {"rounds": 50, "sleep": 0.2})
    time.sleep(0.5)
    assert all("error" in r for r in bob.cancel(job_id).values())  # not bob's job
    carol.cancel(job_id, "admin stops it")
    infos = alice.wait(job_id, 30)
    assert {i["state"] for i in infos.values()} == {"cancelled"}, infos
    assert f"job {job_id}: cancel requested by study admin carol (admin stops it)" in _log(c, "p0")


def test_parties_agree_on_the_job_or_fail_at_once_naming_the_odd_party(cluster):
    c, alice, *_ = cluster
    job_id = uuid.uuid4().hex
    t0 = time.monotonic()
    for p, d in alice.daemons.items():
        params = '{"n": 8, "seed": 6}' if p == "p1" else '{"n": 8, "seed": 5}'
        d.submit(pb.SubmitRequest(job_id=job_id, job="test.check_mul", params_json=params, study=c.study.id,
                                  study_digest=c.study.digest))
    infos = alice.wait(job_id, 60)
    elapsed = time.monotonic() - t0
    assert {i["state"] for i in infos.values()} == {"failed"}, infos
    assert elapsed < TIMEOUT, elapsed  # at once: not after a round timeout
    # every party's error - p1's own too - names p1 as the odd party (its digest differs from the other three,
    # which agree) and the cause, whatever symptom reached it first (a refused stream, a peer's ABORT)
    for p, info in infos.items():
        assert info["error"].startswith("party 'p1' runs job"), (p, info)
        assert "with a different job name, study or parameters than parties 'dealer', 'p0' and 'p2'" in info["error"]


def test_results_are_kept_within_the_byte_and_age_limits(cluster):
    c, alice, *_ = cluster
    ids = [alice.run("test.check_mul", {"n": 12, "seed": s}).job_id for s in range(4)]
    d = alice.daemons["p0"]
    with pytest.raises(ClientError, match="no longer keeps the result.*keep_results_mb"):
        d.fetch(ids[0])
    assert d.fetch(ids[-1])["result"]["ok"]
    assert {j["job_id"] for j in d.status()} >= set(ids)  # the records stay listed
    time.sleep(5)
    with pytest.raises(ClientError, match="no longer keeps the result.*keep_results_hours"):
        d.fetch(ids[-1])


def test_expired_certificates_are_named_with_their_date(tmp_path, cluster):
    c, alice, *_ = cluster
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    old = make_identity("p1", start=past, days=10)
    with pytest.raises(TLSError, match=r"certificate of 'p1' .* expired on \d{4}-\d\d-\d\d"):
        write_identity(old, tmp_path)
        load_identity("p1", tmp_path / "p1.key", tmp_path / "p1.crt")
    with pytest.raises(TLSError, match="not valid before"):
        check_cert_valid(make_identity("p2", start=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).cert_pem,
                         "party 'p2'")
    # at submission: a party's certificate in the study file expired
    import dataclasses

    parties = [dataclasses.replace(p, cert_pem=old.cert_pem) if p.name == "p1" else p for p in c.study.parties]
    client = StudyClient(dataclasses.replace(c.study, parties=parties), c.idents["alice"])
    try:
        with pytest.raises(ClientError, match=r"party 'p1' in study file .* expired on"):
            client.submit("test.check_mul", {"n": 4})
    finally:
        client.close()


def test_a_private_key_readable_by_others_is_refused(tmp_path):
    key, crt = write_identity(make_identity("p0"), tmp_path)
    load_identity("p0", key, crt)
    os.chmod(key, 0o644)
    with pytest.raises(TLSError, match=r"readable or writable by group or others \(mode 644\).*chmod 600"):
        load_identity("p0", key, crt)
