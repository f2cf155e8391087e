"""proto/rpc.py: every RPC of cipherome.proto as a client callable and a server handler, read from the descriptor."""
from __future__ import annotations

import re
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from cipherome.proto import cipherome_pb2 as pb
from cipherome.proto import rpc

PROTO = Path(__file__).resolve().parents[1] / "proto" / "cipherome.proto"


def _declared():
    """(service, method, request, response, client streams, server streams) as written in the .proto."""
    text = PROTO.read_text()
    out = []
    for svc, body in re.findall(r"service (\w+) \{(.*?)\n\}", text, re.S):
        for m, cs, req, ss, resp in re.findall(r"rpc (\w+)\((stream )?(\w+)\) returns \((stream )?(\w+)\)", body):
            out.append((svc, m, req, resp, bool(cs), bool(ss)))
    return out


def test_every_rpc_of_the_proto_file():
    declared = _declared()
    assert len(declared) == 6
    for svc, m, req, resp, cs, ss in declared:
        r = rpc.rpc(svc, m)
        assert r.path == f"/cipherome.v1.{svc}/{m}"
        assert (r.request, r.response) == (getattr(pb, req), getattr(pb, resp))
        assert r.kind == ("stream" if cs else "unary") + "_" + ("stream" if ss else "unary")


def test_unknown_names_are_errors():
    with pytest.raises(KeyError, match="no service 'Nope'"):
        rpc.rpc("Nope", "Health")
    with pytest.raises(KeyError, match="no method 'Nope'"):
        rpc.generic_handler("Control", {"Nope": lambda r, c: None})


def test_stub_and_handlers_round_trip_on_loopback():
    """A real gRPC server built from ``generic_handler`` answers the ``stub``'s unary and streaming calls."""
    def health(req, ctx):
        return pb.HealthReply(party="p-" + req.__class__.__name__)

    def fetch(req, ctx):
        for i in range(3):
            yield pb.FetchChunk(data=f"{req.job_id}:{i}".encode())

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers([rpc.generic_handler("Control", {"Health": health, "Fetch": fetch})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s = rpc.stub(ch, "Control")
            assert set(vars(s)) == {"Health", "Submit", "Status", "Cancel", "Fetch"}
            assert s.Health(pb.HealthRequest(), timeout=10).party == "p-HealthRequest"
            assert [c.data for c in s.Fetch(pb.FetchRequest(job_id="j"), timeout=10)] == [b"j:0", b"j:1", b"j:2"]
            with pytest.raises(grpc.RpcError) as exc:
                s.Status(pb.StatusRequest(), timeout=10)
            assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)
