"""Refusals by real daemons: unknown certificates, unauthorised submitters, unapproved studies, malformed
streams, a peer killed mid-job, cancel and a failing job; each time the daemons go on serving."""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

from cipherome.mpc.daemon import job_digest
from cipherome.mpc.ring import DEFAULT_FRAC
from cipherome.mpc.client import ClientError, DaemonClient, JobFailed, StudyClient, SubmitRefused
from cipherome.mpc.grpc_transport import ChannelPool, PeerLink, encode_chunk, message_chunks
from cipherome.mpc.launcher import LocalCluster
from cipherome.mpc.tls import make_identity
from cipherome.proto import cipherome_pb2 as pb

HERE = Path(__file__).parent
TIMEOUT = 4.0  # the study's round timeout: failures must surface within it


@pytest.fixture(scope="module")
def cluster():
    policy = [{"workloads": ["bench", "test"]}] * 3
    with LocalCluster(3, plugins=["grpc_test_jobs"], pythonpath=[str(HERE)], round_timeout=TIMEOUT,
                      workloads=("bench", "test", "gwas"), policy=policy) as c:
        yield c


def still_serving(cluster) -> None:
    run = cluster.run("test.check_mul", {"n": 8, "seed": 5})
    assert all(r["ok"] for r in run.results)


def raw_exchange(cluster, ident, target: str, chunks: list[bytes], timeout: float = 10.0):
    """Send pre-encoded chunks on one Exchange stream as ``ident``; (status code, details)."""
    pool = ChannelPool(ident.key_pem, ident.cert_pem)
    link = PeerLink(target, f"127.0.0.1:{cluster.ports[target]}", cluster.idents[target].cert_pem)
    try:
        list(pool.exchange(link)(iter(chunks), timeout=timeout))
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    finally:
        pool.close()


#: job id -> job digest of the jobs submitted by ``submit_one`` (the HELLO must carry it)
_DIGESTS: dict[str, str] = {}


def hello(job_id: str, sender: str, study: str = "local", digest: str | None = None) -> bytes:
    tag = _DIGESTS.get(job_id, "") if digest is None else digest
    return encode_chunk(pb.Chunk(kind=pb.Chunk.HELLO, job_id=job_id, sender=sender, study=study, tag=tag))


def submit_one(cluster, party: str, job: str, params: str = "{}") -> str:
    """Submit a job to one daemon only (so that it waits for peers that never come)."""
    job_id = uuid.uuid4().hex
    cluster.client.daemons[party].submit(pb.SubmitRequest(job_id=job_id, job=job, params_json=params, study="local",
                                                          study_digest=cluster.study.digest))
    _DIGESTS[job_id] = job_digest(job, cluster.study.digest, json.loads(params), DEFAULT_FRAC)
    return job_id


def final_info(cluster, party: str, job_id: str, wait: float = 30.0) -> dict:
    return cluster.client.daemons[party].status(job_id, wait=wait)[0]


# ----------------------------------------------------------------------------- certificates
def test_peer_certificate_not_in_study(cluster):
    rogue = make_identity("p0")  # right name, wrong key
    code, details = raw_exchange(cluster, rogue, "p1", [hello("x", "p0")])
    assert code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ClientError, match="p1.*unreachable"):
        DaemonClient("p1", f"127.0.0.1:{cluster.ports['p1']}", cluster.idents["p1"].cert_pem, rogue).health(timeout=5)
    still_serving(cluster)


def test_known_certificate_of_another_role_is_not_a_peer(cluster):
    code, details = raw_exchange(cluster, cluster.idents["submitter"], "p1", [hello("x", "p0")])
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "is not party 'p0'" in details


def test_peer_posing_as_another_party(cluster):
    code, details = raw_exchange(cluster, cluster.idents["p2"], "p1", [hello("x", "p0")])
    assert code == grpc.StatusCode.PERMISSION_DENIED and "is not party 'p0'" in details


# ----------------------------------------------------------------------------- submissions
def test_submitter_not_allowed(cluster):
    client = StudyClient(cluster.study, cluster.idents["p1"])  # a party, not a submitter
    try:
        with pytest.raises(SubmitRefused, match="may not submit jobs in study 'local'"):
            client.submit("bench.open", {"size": 10})
    finally:
        client.close()
    still_serving(cluster)


def test_study_not_approved(cluster):
    other = dataclasses.replace(cluster.study, id="other-study")
    client = StudyClient(other, cluster.idents["submitter"])
    try:
        with pytest.raises(SubmitRefused, match="has not approved study 'other-study'"):
            client.submit("bench.open", {"size": 10})
    finally:
        client.close()
    still_serving(cluster)


def test_study_file_differs(cluster):
    changed = dataclasses.replace(cluster.study, round_timeout=99.0)
    client = StudyClient(changed, cluster.idents["submitter"])
    try:
        with pytest.raises(SubmitRefused, match="different version of study 'local'"):
            client.submit("bench.open", {"size": 10})
    finally:
        client.close()


def test_workload_not_allowed_by_site_policy(cluster):
    with pytest.raises(SubmitRefused, match="policy does not allow workload 'gwas'"):
        cluster.client.submit("gwas.anything", {})


def test_workload_not_in_study(cluster):
    with pytest.raises(SubmitRefused, match="does not cover job 'filter.x'"):
        cluster.client.submit("filter.x", {})


def test_unknown_job(cluster):
    with pytest.raises(SubmitRefused, match="unknown job 'test.nope'"):
        cluster.client.submit("test.nope", {})


def test_refused_job_is_cancelled_everywhere(cluster):
    with pytest.raises(SubmitRefused):
        cluster.client.submit("test.slow", {"rounds": 5}, job_id="dup-check")
        cluster.client.submit("test.slow", {"rounds": 5}, job_id="dup-check")
    still_serving(cluster)


# ----------------------------------------------------------------------------- malformed streams
def _data_chunk(**fields) -> bytes:
    base = dict(kind=pb.Chunk.DATA, tag="setup/seed", dtype="|u1", shape=[16], nbytes=16, index=0, total=1)
    base.update(fields)
    payload = base.pop("payload", bytes(16))
    return encode_chunk(pb.Chunk(**base), payload)


MALFORMED = {
    "garbage-bytes": (b"\xff\xff\xff\xff\x0f", grpc.StatusCode.INVALID_ARGUMENT, "undecodable"),
    "object-dtype": (_data_chunk(dtype="|O"), grpc.StatusCode.INVALID_ARGUMENT, "not allowed"),
    "shape-mismatch": (_data_chunk(shape=[17]), grpc.StatusCode.INVALID_ARGUMENT, "does not match"),
    "too-long": (_data_chunk(payload=bytes(20)), grpc.StatusCode.INVALID_ARGUMENT, "longer than"),
    "chunk-order": (_data_chunk(index=1, total=2), grpc.StatusCode.INVALID_ARGUMENT, "without its first chunk"),
    "oversized": (encode_chunk(pb.Chunk(kind=pb.Chunk.DATA, tag="big", dtype="|u1", shape=[6 << 20],
                                        nbytes=6 << 20, index=0, total=1), bytes(6 << 20)),
                  grpc.StatusCode.RESOURCE_EXHAUSTED, None),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_message(cluster, kind):
    chunk, code, reason = MALFORMED[kind]
    job_id = submit_one(cluster, "p1", "test.slow", '{"rounds": 3}')
    got, details = raw_exchange(cluster, cluster.idents["p0"], "p1", [hello(job_id, "p0"), chunk])
    assert got == code, details
    info = final_info(cluster, "p1", job_id)
    assert info["state"] == "failed"
    assert "party 'p0'" in info["error"]
    if reason:
        assert "malformed message" in info["error"] and reason in info["error"]
    still_serving(cluster)


def test_stream_without_hello(cluster):
    code, details = raw_exchange(cluster, cluster.idents["p0"], "p1", [_data_chunk()])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "HELLO" in details


def test_stream_for_unknown_job(cluster):
    t0 = time.monotonic()
    code, details = raw_exchange(cluster, cluster.idents["p0"], "p1", [hello("never-submitted", "p0")])
    assert code == grpc.StatusCode.NOT_FOUND and "was not submitted to party 'p1'" in details
    assert time.monotonic() - t0 < TIMEOUT + 3


def test_large_message_checked_against_limit(cluster):
    """A peer announcing more than the site's max_message_mb is refused before any allocation."""
    job_id = submit_one(cluster, "p1", "test.slow", '{"rounds": 3}')
    huge = encode_chunk(pb.Chunk(kind=pb.Chunk.DATA, tag="t", dtype="<u8", shape=[1 << 40], nbytes=8 << 40,
                                 index=0, total=1 << 22), bytes(8))
    code, details = raw_exchange(cluster, cluster.idents["p0"], "p1", [hello(job_id, "p0"), huge])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "exceeds the limit" in details
    assert final_info(cluster, "p1", job_id)["state"] == "failed"


# ----------------------------------------------------------------------------- failures during jobs
def test_peer_killed_mid_job(cluster):
    job_id = cluster.client.submit("test.slow", {"rounds": 400, "sleep": 0.02})
    time.sleep(1.5)
    assert final_info(cluster, "p0", job_id, wait=0)["state"] == "running"
    cluster.kill("p2")
    t_kill = time.monotonic()
    try:
        for party in ("p0", "p1", "dealer"):
            info = final_info(cluster, party, job_id)
            assert info["state"] == "failed", info
            assert "'p2'" in info["error"], info["error"]
        assert time.monotonic() - t_kill < TIMEOUT + 2
    finally:
        cluster.start_party("p2")
        cluster.wait_healthy(["p2"])
    still_serving(cluster)


@pytest.mark.slow
@pytest.mark.long_e2e  # 10 s each by design (a step longer than the stall timeout): .ci/run runs them
@pytest.mark.parametrize("gil", [True, False], ids=["holding-the-interpreter", "releasing-it"])
def test_a_long_local_step_is_waited_for_not_taken_for_a_stall(cluster, gil):
    """The lead computes for 2.5 round timeouts between two messages, in one C call that holds its interpreter
    lock (no health check can be answered): the others probe it, find that it completes TLS handshakes and
    wait on; the job ends done everywhere. Releasing the lock (numba compiling, a nogil kernel), it answers the
    health checks themselves. A stopped party is still named at once: tests/test_faults.py, SIGSTOP cases."""
    seconds = int(2.5 * TIMEOUT)
    t0 = time.monotonic()
    run = cluster.run("test.busy", {"party": "p0", "gil": gil, "seconds": seconds}, timeout=120)
    assert all(r["ok"] is True for r in run.results), run.results
    assert time.monotonic() - t0 >= seconds
    how = "busy: it completes TLS handshakes but answers no health check" if gil else "it answers health checks"
    log = "".join(p.read_text(errors="replace") for p in (cluster.dir / "logs").glob("p1.*"))
    # the wait is for p0's message after the step; on a cluster's first job p0's message before it may still be
    # queued in gRPC's threads when the step takes the interpreter, and the wait is for that one
    waits = [ln for ln in log.splitlines() if run.job_id in ln and "waiting for p0" in ln
             and ("busy.after" in ln or "busy.before" in ln)]
    assert waits and all(f"{how}, still waiting" in ln for ln in waits), [ln for ln in log.splitlines() if run.job_id in ln]
    still_serving(cluster)


def test_cancel(cluster):
    job_id = cluster.client.submit("test.slow", {"rounds": 400, "sleep": 0.02})
    time.sleep(0.5)
    cluster.client.cancel(job_id, "test says stop")
    infos = cluster.client.wait(job_id, timeout=30)
    assert {i["state"] for i in infos.values()} == {"cancelled"}, infos
    still_serving(cluster)


def test_failing_job_fails_everywhere_and_daemons_go_on(cluster):
    with pytest.raises(JobFailed) as err:
        cluster.run("test.fail", {"party": "p1"})
    errors = err.value.errors
    assert set(errors) == {"p0", "p1", "p2", "dealer"}
    # the kind of failure and the party leave the site; the message itself stays in p1's log
    assert "party 'p1': internal error (ValueError); see its log" in errors["p1"]
    assert all("p1" in e and "deliberate failure" not in e for e in errors.values())
    assert "deliberate failure for the test" in (cluster.dir / "logs" / "p1.out").read_text()
    still_serving(cluster)


def test_status_and_fetch_visibility(cluster):
    run = cluster.run("bench.open", {"size": 100})
    d = cluster.client.daemons["p0"]
    assert any(j["job_id"] == run.job_id for j in d.status())
    # a party's own certificate sees its jobs; another party's certificate does not
    own = DaemonClient("p0", f"127.0.0.1:{cluster.ports['p0']}", cluster.idents["p0"].cert_pem, cluster.idents["p0"])
    other = DaemonClient("p0", f"127.0.0.1:{cluster.ports['p0']}", cluster.idents["p0"].cert_pem, cluster.idents["p1"])
    try:
        assert own.fetch(run.job_id)["result"]["ok"] is True
        with pytest.raises(ClientError, match="no job"):
            other.fetch(run.job_id)
    finally:
        own.close()
        other.close()
    np.testing.assert_equal(run.results[0]["ok"], True)
