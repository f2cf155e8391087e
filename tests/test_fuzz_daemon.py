"""Fuzzing every message type a daemon accepts, against real daemon processes (hypothesis-driven).

Peer.Exchange streams (malformed protobuf, wrong dtypes and shapes, huge declared
sizes, out-of-order and interleaved chunks, unknown jobs and studies) and every
Control request (Submit, Status, Cancel, Fetch, Health; as fuzzed messages and as
raw undecodable bytes). Each input must end with a clean gRPC status within a
deadline - never UNKNOWN (an unhandled exception in the daemon) and never a hang -
and afterwards every daemon is up and runs the next job. ``FUZZ_EXAMPLES``
(environment, default 150 per message type) sets the effort; the number of
inputs tried is printed and asserted.
"""
from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cipherome.mpc.daemon import job_digest
from cipherome.mpc.grpc_transport import ChannelPool, PeerLink, encode_chunk
from cipherome.mpc.launcher import LocalCluster
from cipherome.mpc.ring import DEFAULT_FRAC
from cipherome.proto import cipherome_pb2 as pb

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HERE = Path(__file__).parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
CALL_DEADLINE = 15.0
#: a clean refusal; UNKNOWN (unhandled exception) and DEADLINE_EXCEEDED (hang) are failures
CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
         grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED}
#: undecodable request bytes are refused by gRPC itself ("Exception deserializing request")
CLEAN_RAW = CLEAN | {grpc.StatusCode.INTERNAL}
TRIED: Counter = Counter()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def fz():
    policy = {"workloads": ["bench", "test"], "max_concurrent_jobs": 64, "max_message_mb": 64}
    with LocalCluster(2, plugins=["grpc_test_jobs"], pythonpath=[str(HERE)], round_timeout=1.0,
                      workloads=("bench", "test"), policy=policy, log_level="WARNING") as c:
        pools = {nm: ChannelPool(c.idents[nm].key_pem, c.idents[nm].cert_pem) for nm in ("p0", "submitter")}
        yield c, pools
        for p in pools.values():
            p.close()
        for name, proc in c.procs.items():
            assert proc.poll() is None, f"daemon {name} died:\n{c.log_tail(name)}"
        run = c.run("test.check_mul", {"n": 8, "seed": 1}, round_timeout=30)
        assert all(r["ok"] for r in run.results)
        print("\nfuzz inputs tried:", dict(TRIED), "total", sum(TRIED.values()))


def _link(c, target="p1") -> PeerLink:
    return PeerLink(target, f"127.0.0.1:{c.ports[target]}", c.idents[target].cert_pem)


def _code(fn) -> grpc.StatusCode:
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


# ----------------------------------------------------------------------------- Exchange
_dtypes = st.sampled_from(["<u8", "<f8", "|u1", "|b1", "<i4", ">u8", "O", "<U5", "V8", "", "zz", "<c16"])
_shape = st.lists(st.one_of(st.integers(0, 16), st.integers(-5, -1), st.integers(2**31, 2**62)), max_size=4)
_chunk = st.builds(
    lambda kind, tag, dtype, shape, nbytes, index, total, data: encode_chunk(
        pb.Chunk(kind=kind, tag=tag, dtype=dtype, shape=shape, nbytes=nbytes, index=index, total=total), data),
    kind=st.sampled_from([0, 0, 0, 2, 3, 1, 9]), tag=st.text(max_size=8), dtype=_dtypes, shape=_shape,
    nbytes=st.one_of(st.integers(0, 256), st.integers(2**30, 2**64 - 1)), index=st.integers(0, 4),
    total=st.one_of(st.integers(0, 4), st.integers(2**31, 2**32 - 1)), data=st.binary(max_size=128))
_stream = st.lists(st.one_of(_chunk, st.binary(max_size=64)), min_size=0, max_size=6)


@FUZZ
@given(chunks=_stream, job=st.sampled_from(["live", "unknown", "wrong-study", "wrong-digest"]))
def test_fuzz_exchange(fz, chunks, job):
    c, pools = fz
    job_id, study, digest = uuid.uuid4().hex, "local", ""
    if job != "unknown":
        c.client.daemons["p1"].submit(pb.SubmitRequest(job_id=job_id, job="test.slow", params_json="{}",
                                                       study="local", study_digest=c.study.digest, round_timeout=1))
        digest = job_digest("test.slow", c.study.digest, {}, DEFAULT_FRAC)
    if job == "wrong-study":
        study = "other"
    if job == "wrong-digest":
        digest = "0" * 64
    hello = encode_chunk(pb.Chunk(kind=pb.Chunk.HELLO, job_id=job_id, sender="p0", study=study, tag=digest))
    call = pools["p0"].exchange(_link(c))
    code = _code(lambda: list(call(iter([hello, *chunks]), timeout=CALL_DEADLINE)))
    TRIED["exchange"] += 1
    assert code in CLEAN, code
    if job != "unknown":
        c.client.daemons["p1"].cancel(job_id)


@FUZZ
@given(raw=st.lists(st.binary(max_size=96), min_size=1, max_size=4))
def test_fuzz_exchange_without_hello(fz, raw):
    c, pools = fz
    code = _code(lambda: list(pools["p0"].exchange(_link(c))(iter(raw), timeout=CALL_DEADLINE)))
    TRIED["exchange-raw"] += 1
    assert code in CLEAN, code


# ----------------------------------------------------------------------------- Control
_METHODS = {
    "Health": pb.HealthReply, "Submit": pb.SubmitReply, "Status": pb.StatusReply, "Cancel": pb.CancelReply,
}


def _unary(pool, c, method: str, target="p0", serializer=None, deserializer=None):
    return pool.channel(_link(c, target)).unary_unary(f"/cipherome.v1.Control/{method}",
                                                      request_serializer=serializer,
                                                      response_deserializer=deserializer)


_text = st.one_of(st.text(max_size=12), st.sampled_from(["", "local", "bench.open", "test.slow", "gwas", "x" * 70]))
_submit = st.builds(
    pb.SubmitRequest, job_id=st.one_of(_text, st.uuids().map(lambda u: u.hex)),
    job=st.sampled_from(["bench.open", "test.slow", "bench.nope", "", "gwas.x", "test.check_mul"]),
    params_json=st.one_of(st.sampled_from(["{}", '{"size": 4}', "[]", "null", "{", '{"rounds": 1e400}']),
                          st.text(max_size=20)),
    study=st.sampled_from(["local", "", "other"]), study_digest=st.sampled_from(["", "00", "study"]),
    round_timeout=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.5)),
    frac=st.integers(-(2**31), 2**31 - 1))


@FUZZ
@given(req=_submit)
def test_fuzz_submit(fz, req):
    c, pools = fz
    if req.study_digest == "study":
        req.study_digest = c.study.digest
    code = _code(lambda: _unary(pools["submitter"], c, "Submit", serializer=pb.SubmitRequest.SerializeToString,
                                deserializer=pb.SubmitReply.FromString)(req, timeout=CALL_DEADLINE))
    TRIED["submit"] += 1
    assert code in CLEAN, code
    if code == grpc.StatusCode.OK:
        c.client.daemons["p0"].cancel(req.job_id)


@FUZZ
@given(method=st.sampled_from(["Status", "Cancel", "Fetch"]), job_id=_text, wait=st.floats(allow_nan=True),
       reason=st.text(max_size=30))
def test_fuzz_status_cancel_fetch(fz, method, job_id, wait, reason):
    c, pools = fz
    pool = pools["submitter"]
    if method == "Status":
        fn = lambda: _unary(pool, c, "Status", serializer=pb.StatusRequest.SerializeToString,  # noqa: E731
                            deserializer=pb.StatusReply.FromString)(pb.StatusRequest(job_id=job_id, wait=min(
                                wait, 2.0) if wait == wait else wait), timeout=CALL_DEADLINE)
    elif method == "Cancel":
        fn = lambda: _unary(pool, c, "Cancel", serializer=pb.CancelRequest.SerializeToString,  # noqa: E731
                            deserializer=pb.CancelReply.FromString)(pb.CancelRequest(job_id=job_id, reason=reason),
                                                                    timeout=CALL_DEADLINE)
    else:
        fn = lambda: list(pool.channel(_link(c, "p0")).unary_stream(  # noqa: E731
            "/cipherome.v1.Control/Fetch", request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=pb.FetchChunk.FromString)(pb.FetchRequest(job_id=job_id), timeout=CALL_DEADLINE))
    code = _code(fn)
    TRIED[method.lower()] += 1
    assert code in CLEAN, code


@FUZZ
@given(method=st.sampled_from(["Health", "Submit", "Status", "Cancel", "Fetch"]), raw=st.binary(max_size=80))
def test_fuzz_control_raw_bytes(fz, method, raw):
    c, pools = fz
    ch = pools["submitter"].channel(_link(c, "p0"))
    if method == "Fetch":
        fn = lambda: list(ch.unary_stream("/cipherome.v1.Control/Fetch")(raw, timeout=CALL_DEADLINE))  # noqa: E731
    else:
        fn = lambda: ch.unary_unary(f"/cipherome.v1.Control/{method}")(raw, timeout=CALL_DEADLINE)  # noqa: E731
    code = _code(fn)
    TRIED["raw-" + method.lower()] += 1
    assert code in CLEAN_RAW, code
