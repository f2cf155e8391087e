"""Job submission: a submitter's client that fans a job out to every party daemon of a study and collects results.

The submitter authenticates with its own certificate (listed under
``[[submitter]]`` in the study) and trusts each daemon's certificate from the
study only. ``submit`` sends the same Submit (job id, job name, params, study
digest) to every party and cancels the job everywhere if one party refuses;
``wait`` long-polls Status, ``fetch`` streams each party's result and report.
"""
from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from cipherome.proto import cipherome_pb2 as pb

from . import results as results_codec
from .grpc_transport import ChannelPool, PeerLink
from .study import Study
from .tls import Identity, TLSError, check_cert_valid

__all__ = ["DaemonClient", "StudyClient", "JobResult", "ClientError", "SubmitRefused", "JobFailed", "describe_rpc_error"]

_SVC = "/cipherome.v1.Control/"


class ClientError(RuntimeError):
    """A daemon could not be reached or refused a request; the message names the party."""


class SubmitRefused(ClientError):
    """At least one party refused the job (the job was cancelled at the others)."""


class JobFailed(ClientError):
    """The job ended with an error at one or more parties; ``errors`` maps party -> error text."""

    def __init__(self, job_id: str, errors: dict[str, str], infos: dict):
        self.job_id, self.errors, self.infos = job_id, errors, infos
        lines = "; ".join(f"{p}: {e}" for p, e in errors.items())
        super().__init__(f"job {job_id} failed: {lines}")


def describe_rpc_error(party: str, address: str, exc: grpc.RpcError) -> str:
    """A one-line, user-facing description of a failed call to a daemon."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        low = details.lower()
        if "socket closed" in low or "handshake" in low or "ssl" in low or "certificate" in low:
            hint = ("the TLS connection was refused: is your certificate listed in a study that party approved, and "
                    "does the study list that party's current certificate?")
        else:
            hint = "is the daemon running and the address right?"
        return f"party {party!r} at {address} is unreachable ({details.strip()}); {hint}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"party {party!r} at {address} did not answer in time"
    return f"{details} [{code.name if code else 'error'}]"


def _info_dict(info: pb.JobInfo) -> dict:
    return {
        "job_id": info.job_id, "job": info.job, "study": info.study, "state": info.state, "error": info.error,
        "submitted": info.submitted, "started": info.started, "finished": info.finished,
        "bytes_sent": info.bytes_sent, "bytes_received": info.bytes_received, "rounds": info.rounds,
        "submitter": info.submitter, "progress": info.progress,
    }


class DaemonClient:
    """Control calls to one daemon at ``address`` whose certificate is ``cert_pem`` (TLS target ``party``)."""

    def __init__(self, party: str, address: str, cert_pem: bytes, ident: Identity, *, pool: ChannelPool | None = None):
        self.party, self.address = party, address
        self._own_pool = pool is None
        self.pool = pool or ChannelPool(ident.key_pem, ident.cert_pem)
        ch = self.pool.channel(PeerLink(party, address, cert_pem))
        self._health = ch.unary_unary(_SVC + "Health", pb.HealthRequest.SerializeToString, pb.HealthReply.FromString)
        self._submit = ch.unary_unary(_SVC + "Submit", pb.SubmitRequest.SerializeToString, pb.SubmitReply.FromString)
        self._status = ch.unary_unary(_SVC + "Status", pb.StatusRequest.SerializeToString, pb.StatusReply.FromString)
        self._cancel = ch.unary_unary(_SVC + "Cancel", pb.CancelRequest.SerializeToString, pb.CancelReply.FromString)
        self._fetch = ch.unary_stream(_SVC + "Fetch", pb.FetchRequest.SerializeToString, pb.FetchChunk.FromString)

    def _call(self, fn, req, timeout: float, **kw):
        try:
            return fn(req, timeout=timeout, **kw)
        except grpc.RpcError as exc:
            raise ClientError(describe_rpc_error(self.party, self.address, exc)) from None

    def health(self, timeout: float = 5.0, wait_for_ready: bool = False) -> dict:
        r = self._call(self._health, pb.HealthRequest(), timeout, wait_for_ready=wait_for_ready)
        return {"party": r.party, "role": r.role, "version": r.version, "uptime_s": r.uptime_s,
                "studies": list(r.studies), "running": r.running, "finished": r.finished, "failed": r.failed}

    def submit(self, req: pb.SubmitRequest, timeout: float = 30.0) -> None:
        self._call(self._submit, req, timeout)

    def status(self, job_id: str = "", wait: float = 0.0, timeout: float = 30.0) -> list[dict]:
        r = self._call(self._status, pb.StatusRequest(job_id=job_id, wait=wait), timeout + wait)
        return [_info_dict(j) for j in r.jobs]

    def cancel(self, job_id: str, reason: str = "", timeout: float = 10.0) -> dict:
        r = self._call(self._cancel, pb.CancelRequest(job_id=job_id, reason=reason), timeout)
        return {"cancelled": r.cancelled, "state": r.state}

    def fetch(self, job_id: str, timeout: float = 300.0) -> dict:
        """``{"info": ..., "result": ..., "report": ..., "error": ...}`` of a finished job."""
        info, parts = None, []
        try:
            for piece in self._fetch(pb.FetchRequest(job_id=job_id), timeout=timeout):
                if piece.HasField("info"):
                    info = _info_dict(piece.info)
                parts.append(piece.data)
        except grpc.RpcError as exc:
            raise ClientError(describe_rpc_error(self.party, self.address, exc)) from None
        doc = json.loads(b"".join(parts).decode() or "{}")
        return {"info": info, "result": results_codec.from_jsonable(doc.get("result")),
                "report": doc.get("report"), "error": doc.get("error")}

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()


@dataclass
class JobResult:
    job_id: str
    results: list  # one per compute party, in study order
    reports: dict  # party name (and the dealer) -> report
    infos: dict  # party name -> job info (state, timings, bytes)


class StudyClient:
    """A submitter's view of a study: one ``DaemonClient`` per party."""

    def __init__(self, study: Study, ident: Identity):
        self.study, self.ident = study, ident
        self.pool = ChannelPool(ident.key_pem, ident.cert_pem)
        self.daemons = {p.name: DaemonClient(p.name, p.address, p.cert_pem, ident, pool=self.pool)
                        for p in study.parties}
        self._exec = ThreadPoolExecutor(max(4, len(self.daemons)), thread_name_prefix="client")

    def _each(self, fn) -> dict:
        futs = {name: self._exec.submit(fn, d) for name, d in self.daemons.items()}
        out, errors = {}, {}
        for name, f in futs.items():
            try:
                out[name] = f.result()
            except ClientError as exc:
                errors[name] = str(exc)
        return out, errors

    def check_certificates(self) -> None:
        """``ClientError`` naming the certificate (ours or a party's) that expired or is not valid yet, and when.

        An expired certificate makes every TLS handshake fail with no reason given;
        this says which one before anything is sent.
        """
        whose = [(f"submitter {self.ident.name!r} (your own)", self.ident.cert_pem)]
        whose += [(f"party {p.name!r} in study file {self.study.path or self.study.id}", p.cert_pem)
                  for p in self.study.parties]
        for what, pem in whose:
            try:
                check_cert_valid(pem, what)
            except TLSError as exc:
                raise ClientError(str(exc)) from None

    def health(self) -> dict:
        out, errors = self._each(lambda d: d.health())
        out.update({p: {"error": e} for p, e in errors.items()})
        return out

    def submit(self, job: str, params: dict | None = None, *, job_id: str | None = None,
               round_timeout: float = 0.0, frac: int = 0) -> str:
        """Submit ``job`` to every party; returns the job id. ``SubmitRefused`` names each refusing party."""
        job_id = job_id or uuid.uuid4().hex
        self.check_certificates()
        req = pb.SubmitRequest(job_id=job_id, job=job, params_json=json.dumps(params or {}), study=self.study.id,
                               study_digest=self.study.digest, round_timeout=round_timeout, frac=frac)
        _, errors = self._each(lambda d: d.submit(req))
        if errors:
            self._each(lambda d: d.cancel(job_id, "another party refused the job") if d.party not in errors else None)
            raise SubmitRefused("; ".join(f"{e}" if p in e else f"party {p!r}: {e}" for p, e in errors.items()))
        return job_id

    def wait(self, job_id: str, timeout: float = 3600.0) -> dict:
        """Wait until the job has ended at every party; returns party -> job info."""
        deadline = time.monotonic() + timeout

        def one(d: DaemonClient) -> dict:
            while True:
                left = deadline - time.monotonic()
                info = d.status(job_id, wait=max(0.0, min(left, 30.0)))[0]
                if info["state"] != "running" or left <= 0:
                    return info

        infos, errors = self._each(one)
        if errors:
            raise ClientError("; ".join(errors.values()))
        return infos

    def cancel(self, job_id: str, reason: str = "cancelled by the submitter") -> dict:
        out, errors = self._each(lambda d: d.cancel(job_id, reason))
        out.update({p: {"error": e} for p, e in errors.items()})
        return out

    def fetch(self, job_id: str) -> dict:
        out, errors = self._each(lambda d: d.fetch(job_id))
        if errors:
            raise ClientError("; ".join(errors.values()))
        return out

    def run(self, job: str, params: dict | None = None, *, timeout: float = 3600.0, **kw) -> JobResult:
        """Submit, wait and fetch; ``JobFailed`` if the job failed anywhere (errors by party)."""
        return self.result(self.submit(job, params, **kw), timeout)

    def result(self, job_id: str, timeout: float = 3600.0) -> JobResult:
        """Wait for a submitted job and fetch its results; ``JobFailed`` if it failed anywhere (errors by party)."""
        infos = self.wait(job_id, timeout)
        if any(i["state"] != "done" for i in infos.values()):
            raise JobFailed(job_id, {p: i["error"] or i["state"] for p, i in infos.items() if i["state"] != "done"},
                            infos)
        got = self.fetch(job_id)
        return JobResult(job_id, [got[p]["result"] for p in self.study.sites],
                         {p: g["report"] for p, g in got.items()}, infos)

    def close(self) -> None:
        self._exec.shutdown(wait=False)
        self.pool.close()
