"""The party daemon: a long-lived gRPC server (mutual TLS) that runs the jobs of the studies its site approved.

It serves two services from ``proto/cipherome.proto``: ``Peer.Exchange`` (the
other parties' message streams, see ``grpc_transport``) and ``Control``
(Submit, Status, Cancel, Fetch, Health for submitters and operators). Every job
runs in its own thread with its own transport, exactly like ``run_local`` runs a
party: setup, the job function (or the dealer loop), finish; a failing job ends
with an error that names the peer and stage, and never takes the daemon down.

Access rules, checked on the certificate of every call (the TLS root set is the
certificates of the approved studies, so unknown certificates never get in):
Exchange - a party of the job's study, under its own name; Submit - a
submitter of the study; Status/Fetch/Cancel - the job's submitters and the
daemon's own certificate; Health - any caller that passed TLS. The log records
job lifecycle (submitted, started, finished/failed with timings, bytes and
rounds) and refusals; never shares, seeds, keys, parameters' data or results.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from cipherome.proto import cipherome_pb2 as pb

from . import results as results_codec
from .grpc_transport import (
    ChannelPool,
    GrpcTransport,
    PeerLink,
    Refused,
    exchange_handler,
    peer_fingerprint,
    server_options,
)
from .jobs import get_job, load_plugins
from .ring import DEFAULT_FRAC
from .runtime import Context
from .study import SiteConfig, Study
from .tls import load_identity
from .transport import JobAborted, PeerError

__all__ = ["Daemon", "JobRecord", "JOB_ID_RE", "FETCH_PIECE"]

log = logging.getLogger("cipherome.daemon")

JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: bytes per FetchChunk
FETCH_PIECE = 1 << 20
_KEEP_FINISHED = 200
_TERMINAL = ("done", "failed", "cancelled")


@dataclass
class JobRecord:
    """One job at this daemon: identity, state, timings, and (once finished) the encoded result."""

    id: str
    name: str
    study: Study
    params: dict
    submitter: str
    submitter_fp: str
    round_timeout: float
    frac: int
    transport: GrpcTransport
    state: str = "running"
    error: str = ""
    submitted: float = field(default_factory=time.time)
    started: float = 0.0
    finished: float = 0.0
    report: dict | None = None
    payload: bytes | None = None  # encoded {"result", "report", "error"}
    cancel_reason: str | None = None
    ctx: object | None = None  # the running job's Context (for its progress line)

    def info(self) -> pb.JobInfo:
        st = self.transport.stats
        return pb.JobInfo(
            job_id=self.id, job=self.name, study=self.study.id, state=self.state, error=self.error,
            submitted=self.submitted, started=self.started, finished=self.finished,
            bytes_sent=st.bytes_sent, bytes_received=st.bytes_received,
            rounds=int((self.report or {}).get("rounds", getattr(self.ctx, "rounds", 0))), submitter=self.submitter,
            progress=str(getattr(self.ctx, "progress", "") or ""),
        )


class Daemon:
    """A party daemon for one site config. ``start()`` binds and serves; ``stop()`` aborts jobs and stops."""

    def __init__(self, config: SiteConfig, *, max_workers: int = 256):
        self.config = config
        self.me = config.name
        self.ident = load_identity(config.name, config.key_path, config.cert_path)
        self.studies = dict(config.studies)
        self.site = config.site
        self.pool = ChannelPool(self.ident.key_pem, self.ident.cert_pem)
        self.jobs: dict[str, JobRecord] = {}
        self._cond = threading.Condition()
        self._t0 = time.time()
        self._max_workers = max_workers
        self.server: grpc.Server | None = None
        self.port: int | None = None

    # -- server --------------------------------------------------------------------
    def _roots(self) -> bytes:
        pems = {self.ident.cert_pem}
        for st in self.studies.values():
            pems.update(st.cert_pems())
        return b"".join(sorted(p if p.endswith(b"\n") else p + b"\n" for p in pems))

    def start(self) -> int:
        """Load job plugins, bind the listen address with mutual TLS, start serving; returns the port."""
        self._load_jobs()
        self.server = grpc.server(futures.ThreadPoolExecutor(self._max_workers, thread_name_prefix="rpc"),
                                  options=server_options())
        peer = grpc.method_handlers_generic_handler("cipherome.v1.Peer", {
            "Exchange": exchange_handler(self._resolve, self.config.max_message_bytes),
        })
        u = grpc.unary_unary_rpc_method_handler
        control = grpc.method_handlers_generic_handler("cipherome.v1.Control", {
            "Health": u(self._health, pb.HealthRequest.FromString, pb.HealthReply.SerializeToString),
            "Submit": u(self._submit, pb.SubmitRequest.FromString, pb.SubmitReply.SerializeToString),
            "Status": u(self._status, pb.StatusRequest.FromString, pb.StatusReply.SerializeToString),
            "Cancel": u(self._cancel, pb.CancelRequest.FromString, pb.CancelReply.SerializeToString),
            "Fetch": grpc.unary_stream_rpc_method_handler(self._fetch, pb.FetchRequest.FromString,
                                                          pb.FetchChunk.SerializeToString),
        })
        self.server.add_generic_rpc_handlers([peer, control])
        creds = grpc.ssl_server_credentials([(self.ident.key_pem, self.ident.cert_pem)],
                                            root_certificates=self._roots(), require_client_auth=True)
        try:
            self.port = self.server.add_secure_port(self.config.listen, creds)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.config.listen} ({exc}); is another daemon running there?") from None
        if not self.port:
            raise OSError(f"cannot listen on {self.config.listen}: address in use or not available here")
        self.server.start()
        log.info("party %s listening on %s (port %d); approved studies: %s", self.me, self.config.listen, self.port,
                 ", ".join(sorted(self.studies)) or "none")
        return self.port

    def _load_jobs(self) -> None:
        """Import the workload modules; a broken built-in one costs its jobs, not the daemon.

        Modules named in the site config's ``plugins`` must import (an error is fatal,
        as for any other config error).
        """
        import importlib

        from .jobs import PLUGIN_MODULES

        for mod in PLUGIN_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    log.error("job module %s failed to import (%s); its jobs are unavailable", mod, exc)
            except Exception as exc:  # noqa: BLE001
                log.error("job module %s failed to import (%s: %s); its jobs are unavailable", mod,
                          type(exc).__name__, exc)
        try:
            load_plugins()
        except Exception:  # noqa: BLE001 - already reported above
            pass
        for mod in self.config.plugins:
            try:
                importlib.import_module(mod)
            except Exception as exc:  # noqa: BLE001
                raise ImportError(f"plugin module {mod!r} (site config 'plugins') failed to import: "
                                  f"{type(exc).__name__}: {exc}") from None

    def stop(self, grace: float = 0.5) -> None:
        with self._cond:
            running = [j for j in self.jobs.values() if j.state == "running"]
        for j in running:
            j.cancel_reason = "daemon shutting down"
            j.transport.abort(f"party {self.me!r} is shutting down")
        if self.server is not None:
            self.server.stop(grace).wait(grace + 1)
        self.pool.close()
        log.info("party %s stopped", self.me)

    def wait(self) -> None:
        if self.server is not None:
            self.server.wait_for_termination()

    # -- helpers ---------------------------------------------------------------------
    def _caller(self, context) -> str:
        fp = peer_fingerprint(context)
        if fp is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required (mutual TLS)")
        return fp

    def _refuse(self, context, code, message: str, what: str = "refused") -> None:
        log.warning("%s: %s", what, message)
        context.abort(code, message)

    def _visible(self, job: JobRecord, fp: str) -> bool:
        return fp == self.ident.fingerprint or job.study.submitter_by_fingerprint(fp) is not None

    def _links(self, study: Study) -> dict[str, PeerLink]:
        return {p.name: PeerLink(p.name, p.address, p.cert_pem) for p in study.parties if p.name != self.me}

    # -- Peer.Exchange -----------------------------------------------------------------
    def _resolve(self, hello: pb.Chunk, fp: str | None) -> GrpcTransport:
        study = self.studies.get(hello.study)
        if study is None:
            log.warning("refused exchange stream: study %r is not approved here", hello.study)
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"party {self.me!r} has not approved study {hello.study!r}")
        peer = study.party_by_fingerprint(fp)
        if peer is None or peer.name != hello.sender or peer.name == self.me:
            log.warning("refused exchange stream for job %s: certificate %s is not party %r of study %s",
                        hello.job_id, fp, hello.sender, study.id)
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          f"party {self.me!r}: certificate sha256:{fp} is not party {hello.sender!r} "
                          f"of study {study.id!r}")
        deadline = time.monotonic() + study.round_timeout
        with self._cond:
            while hello.job_id not in self.jobs:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Refused(grpc.StatusCode.NOT_FOUND,
                                  f"job {hello.job_id!r} was not submitted to party {self.me!r} "
                                  f"(or was refused there) within {study.round_timeout:g} s")
                self._cond.wait(left)
            job = self.jobs[hello.job_id]
        if job.study.id != study.id:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"job {job.id!r} belongs to another study")
        return job.transport

    # -- Control -------------------------------------------------------------------------
    def _health(self, req, context) -> pb.HealthReply:
        self._caller(context)
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("cipherome")
        except PackageNotFoundError:  # pragma: no cover
            ver = "unknown"
        with self._cond:
            states = [j.state for j in self.jobs.values()]
        role = next((st.party(self.me).role for st in self.studies.values()), "site")
        return pb.HealthReply(party=self.me, role=role, version=ver, uptime_s=time.time() - self._t0,
                              studies=sorted(self.studies), running=states.count("running"),
                              finished=states.count("done"), failed=states.count("failed") + states.count("cancelled"))

    def _submit(self, req: pb.SubmitRequest, context) -> pb.SubmitReply:
        fp = self._caller(context)
        me = self.me
        study = self.studies.get(req.study)
        if study is None:
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"party {me!r} has not approved study {req.study!r}; its site must add the study file "
                         "to 'studies' in its site config and restart the daemon")
        sub = study.submitter_by_fingerprint(fp)
        if sub is None:
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"party {me!r}: certificate sha256:{fp} may not submit jobs in study {study.id!r}; "
                         "ask the study owner to list it under [[submitter]]")
        if req.study_digest and req.study_digest != study.digest:
            self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"party {me!r} has a different version of study {study.id!r} (digest "
                         f"{study.digest[:12]} vs yours {req.study_digest[:12]}); compare the study files")
        if not JOB_ID_RE.match(req.job_id):
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid job id {req.job_id!r}")
        if not study.allows_workload(req.job):
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"study {study.id!r} does not cover job {req.job!r} (its workloads: "
                         f"{', '.join(study.workloads) or 'none'})")
        workload = req.job.split(".", 1)[0]
        if workload not in self.config.workloads:
            self._refuse(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"party {me!r}'s policy does not allow workload {workload!r} (allowed: "
                         f"{', '.join(self.config.workloads) or 'none'})")
        try:
            fn = get_job(req.job)
        except KeyError as exc:
            self._refuse(context, grpc.StatusCode.NOT_FOUND, f"party {me!r}: {exc.args[0]}")
        try:
            params = json.loads(req.params_json or "{}")
            if not isinstance(params, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"job parameters must be a JSON object ({exc})")
        timeout = req.round_timeout if req.round_timeout > 0 else study.round_timeout
        cap = float(self.config.policy.get("max_round_timeout", 86400))
        timeout = min(timeout, cap)
        links = self._links(study)
        tr = GrpcTransport(me, req.job_id, study.id, links, self.pool, timeout=timeout,
                           max_message_bytes=self.config.max_message_bytes)
        job = JobRecord(req.job_id, req.job, study, params, sub.name, fp, timeout, req.frac or DEFAULT_FRAC, tr)
        with self._cond:
            if req.job_id in self.jobs:
                dup = True
            else:
                dup = False
                running = sum(j.state == "running" for j in self.jobs.values())
                if running >= self.config.max_concurrent_jobs:
                    busy = True
                else:
                    busy = False
                    self.jobs[job.id] = job
                    self._trim()
                    self._cond.notify_all()
        if dup:
            self._refuse(context, grpc.StatusCode.ALREADY_EXISTS, f"party {me!r} already has a job {req.job_id!r}")
        if busy:
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"party {me!r} already runs {self.config.max_concurrent_jobs} jobs (policy "
                         "max_concurrent_jobs); try again later")
        log.info("job %s submitted by %s: %s (study %s, round timeout %g s)", job.id, sub.name, job.name,
                 study.id, timeout)
        threading.Thread(target=self._run, args=(job, fn), name=f"job-{job.id[:12]}", daemon=True).start()
        return pb.SubmitReply(accepted=True)

    def _trim(self) -> None:
        done = [j for j in self.jobs.values() if j.state in _TERMINAL]
        for j in sorted(done, key=lambda j: j.finished)[: max(0, len(done) - _KEEP_FINISHED)]:
            del self.jobs[j.id]

    def _job_for(self, job_id: str, context) -> JobRecord:
        fp = self._caller(context)
        with self._cond:
            job = self.jobs.get(job_id)
        if job is None or not self._visible(job, fp):
            context.abort(grpc.StatusCode.NOT_FOUND, f"party {self.me!r} has no job {job_id!r} visible to you")
        return job

    def _status(self, req: pb.StatusRequest, context) -> pb.StatusReply:
        fp = self._caller(context)
        if req.job_id:
            job = self._job_for(req.job_id, context)
            if req.wait > 0:
                deadline = time.monotonic() + min(req.wait, 60.0)
                with self._cond:
                    while job.state == "running" and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
            return pb.StatusReply(jobs=[job.info()])
        with self._cond:
            jobs = [j for j in self.jobs.values() if self._visible(j, fp)]
        return pb.StatusReply(jobs=[j.info() for j in sorted(jobs, key=lambda j: j.submitted)])

    def _cancel(self, req: pb.CancelRequest, context) -> pb.CancelReply:
        job = self._job_for(req.job_id, context)
        if job.state != "running":
            return pb.CancelReply(cancelled=False, state=job.state)
        reason = req.reason or "cancelled by the submitter"
        job.cancel_reason = reason
        log.info("job %s: cancel requested (%s)", job.id, reason)
        # abort() flushes ABORT to the peers (up to 2 s): not on this RPC's thread
        threading.Thread(target=job.transport.abort, args=(f"cancelled: {reason}",), daemon=True).start()
        return pb.CancelReply(cancelled=True, state="cancelling")

    def _fetch(self, req: pb.FetchRequest, context):
        job = self._job_for(req.job_id, context)
        if job.state == "running":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id!r} is still running at {self.me!r}")
        payload = job.payload or b"{}"
        yield pb.FetchChunk(info=job.info(), data=payload[:FETCH_PIECE])
        for pos in range(FETCH_PIECE, len(payload), FETCH_PIECE):
            yield pb.FetchChunk(data=payload[pos:pos + FETCH_PIECE])

    # -- running a job ---------------------------------------------------------------------
    def _run(self, job: JobRecord, fn) -> None:
        study, tr = job.study, job.transport
        job.started = time.time()
        log.info("job %s started: %s as %s", job.id, job.name, "dealer" if self.me == study.dealer else "site")
        result, error, state, payload, ctx = None, "", "done", None, None
        try:
            ctx = Context(self.me, study.sites, study.dealer, tr, frac=job.frac, timeout=job.round_timeout)
            job.ctx = ctx
            tr.start()
            ctx.setup()
            if ctx.is_dealer:
                ctx.serve_dealer()
            else:
                result = fn(ctx, dict(job.params), self.site)
                ctx.finish()
            payload = results_codec.to_jsonable(result)  # fail here, not at fetch, if not serialisable
            tr.close()
        except JobAborted as exc:
            if job.cancel_reason:
                state, error = "cancelled", f"cancelled: {job.cancel_reason}"
            else:
                state, error = ("cancelled" if tr.cancelled else "failed"), f"aborted: {exc}"
            tr.abort(error)
        except PeerError as exc:
            state, error = "failed", str(exc)
            tr.abort(error)
        except Exception as exc:  # noqa: BLE001 - a job failure must never take the daemon down
            state, error = "failed", f"{type(exc).__name__} at party {self.me!r}: {str(exc)[:500]}"
            tr.abort(error)
        report = ctx.report() if ctx is not None else {"party": self.me, **tr.stats.as_dict()}
        doc = {"result": payload if state == "done" else None, "report": report, "error": error or None}
        job.report, job.payload = report, json.dumps(doc).encode()
        job.error = error
        job.finished = time.time()
        with self._cond:
            job.state = state
            self._cond.notify_all()
        st = tr.stats
        if state == "done":
            log.info("job %s finished in %.3f s: %d bytes sent, %d received, %d rounds", job.id,
                     job.finished - job.started, st.bytes_sent, st.bytes_received, report.get("rounds", 0))
        else:
            log.warning("job %s %s after %.3f s: %s (%d bytes sent, %d received, %d rounds)", job.id, state,
                        job.finished - job.started, error, st.bytes_sent, st.bytes_received, report.get("rounds", 0))
