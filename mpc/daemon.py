"""The party daemon: a long-lived gRPC server (mutual TLS) that runs the jobs of the studies its site approved.

It serves two services from ``proto/cipherome.proto``: ``Peer.Exchange`` (the
other parties' message streams, see ``grpc_transport``) and ``Control``
(Submit, Status, Cancel, Fetch, Health for submitters and operators). Every job
runs in its own thread with its own transport, exactly like ``run_local`` runs a
party: setup, the job function (or the dealer loop), finish; a failing job ends
with an error that names the peer and stage, and never takes the daemon down.

Access rules, checked on the certificate of every call (the TLS root set is the
certificates of the approved studies, so unknown certificates never get in):
Exchange - a party of the job's study, under its own name, running the same
job (the HELLO of every stream carries the job digest: job name, study digest,
parameters, fixed-point bits; a mismatch fails the job at once, naming the
party); Submit - a submitter of the study; Status/Fetch/Cancel - the job's own
submitter, a study admin (``role = "admin"``, every access logged) and the
daemon's own certificate; Health - any caller that passed TLS. The log records
job lifecycle (submitted, started, finished/failed with timings, bytes and
rounds, who cancelled) and refusals; never shares, seeds, keys, parameters'
data or results.

Errors that leave the site (the job's error in Status, the ABORT to the peers)
say which party and what kind of problem only (``cipherome.mpc.errors``); the
full message, with paths, lines and values, goes to this daemon's log.
Finished jobs keep their results for fetching within the site policy's
``keep_results_mb`` (total) and ``keep_results_hours``; older results are
dropped first, and a fetch of a dropped result says so.
"""
from __future__ import annotations

import hashlib
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
from .blas import limit_blas_threads
from .grpc_transport import (
    ChannelPool,
    GrpcTransport,
    Header,
    PeerLink,
    Refused,
    exchange_handler,
    peer_fingerprint,
    server_options,
)
from .errors import public_reason
from .jobs import get_job, load_plugins
from .ring import DEFAULT_FRAC
from .runtime import Context
from .study import SiteConfig, Study
from .tls import TLSError, check_cert_valid, load_identity
from .transport import JobAborted, PeerError

__all__ = ["Daemon", "JobRecord", "JOB_ID_RE", "FETCH_PIECE", "job_digest", "digest_disagreement"]

log = logging.getLogger("cipherome.daemon")

JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: bytes per FetchChunk
FETCH_PIECE = 1 << 20
_TERMINAL = ("done", "failed", "cancelled")
#: seconds a party whose job digests disagree waits for the other parties' digests (to name the odd one)
DIGEST_WAIT = 1.0


def job_digest(job: str, study_digest: str, params: dict, frac: int) -> str:
    """SHA-256 (hex) naming what a job computes: its name, the study, its parameters and fixed-point bits.

    Every party of a job must hold the same digest; parties exchange it in the
    first chunk (HELLO) of every stream, so that a job submitted with different
    parameters to different parties fails at once instead of mixing them.
    """
    doc = {"job": job, "study": study_digest, "params": params, "frac": int(frac)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _names(parties) -> str:
    names = [repr(p) for p in sorted(parties)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def digest_disagreement(job_id: str, digests: dict[str, str]) -> str | None:
    """Why the parties of ``job_id`` do not run the same job, naming the odd parties; None if they agree.

    ``digests`` maps each party heard of to its job digest. The parties that hold
    the most common digest (when one digest is held by more parties than any
    other) are the reference; every other party is named as running the job
    with different parameters. Without such a majority every party is named with
    its digest.
    """
    groups: dict[str, list[str]] = {}
    for party, digest in digests.items():
        groups.setdefault(digest, []).append(party)
    if len(groups) < 2:
        return None
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    advice = "the submitter must send identical parameters to every party"
    if len(ranked[0][1]) > len(ranked[1][1]):
        ref_digest, ref = ranked[0]
        odd = sorted(p for d, ps in ranked[1:] for p in ps)
        verb = "runs" if len(odd) == 1 else "run"
        shown = ", ".join(sorted({digests[p][:12] or "none" for p in odd}))
        return (f"{'party' if len(odd) == 1 else 'parties'} {_names(odd)} {verb} job {job_id!r} with a different job "
                f"name, study or parameters than {'party' if len(ref) == 1 else 'parties'} {_names(ref)} (job digest "
                f"{shown} vs {ref_digest[:12]}); {advice}")
    shown = ", ".join(f"{p!r} {digests[p][:12] or 'none'}" for p in sorted(digests))
    return (f"parties {_names(digests)} run job {job_id!r} with a different job name, study or parameters "
            f"(job digests: {shown}); {advice}")


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
    ctx: object | None = None  # the running job's Context (for its progress line); dropped at the end
    digest: str = ""
    discarded: str = ""  # why the result is no longer kept (retention policy)

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
        self.ident = load_identity(config.name, config.key_path, config.cert_path)  # refuses an expired one
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
        limit_blas_threads()  # jobs' plaintext algebra is small; BLAS threads would contend for the cores
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
        self._check_study_certs()
        log.info("party %s listening on %s (port %d); approved studies: %s", self.me, self.config.listen, self.port,
                 ", ".join(sorted(self.studies)) or "none")
        return self.port

    def _check_study_certs(self) -> None:
        """Log every certificate of an approved study that expired or is not valid yet (handshakes would fail)."""
        for st in self.studies.values():
            for who, pem in [(f"party {p.name!r}", p.cert_pem) for p in st.parties] + \
                            [(f"submitter {s.name!r}", s.cert_pem) for s in st.submitters]:
                try:
                    check_cert_valid(pem, f"{who} of study {st.id!r}")
                except TLSError as exc:
                    log.error("%s; TLS connections with it will fail", exc)

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
        """The job's own submitter, a study admin, or this daemon's own certificate (its operator)."""
        if fp == self.ident.fingerprint or fp == job.submitter_fp:
            return True
        sub = job.study.submitter_by_fingerprint(fp)
        return sub is not None and sub.is_admin

    def _who(self, job: JobRecord, fp: str) -> str:
        """Who made a control call on ``job``, for the log."""
        if fp == job.submitter_fp:
            return f"submitter {job.submitter}"
        if fp == self.ident.fingerprint:
            return f"the operator of {self.me} (its own certificate)"
        sub = job.study.submitter_by_fingerprint(fp)
        return f"study admin {sub.name}" if sub is not None else f"certificate sha256:{fp[:16]}"

    def _links(self, study: Study) -> dict[str, PeerLink]:
        return {p.name: PeerLink(p.name, p.address, p.cert_pem) for p in study.parties if p.name != self.me}

    # -- Peer.Exchange -----------------------------------------------------------------
    def _resolve(self, hello: Header, fp: str | None) -> GrpcTransport:
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
        if not job.transport.note_digest(hello.sender, hello.tag):
            msg = digest_disagreement(job.id, job.transport.digests)
            log.warning("job %s: %s", job.id, msg)
            job.transport.peer_mismatch(hello.sender, msg)
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, msg, digests=job.transport.abort_tag())
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
        for p in study.parties:
            try:
                check_cert_valid(p.cert_pem, f"party {p.name!r} of study {study.id!r}")
            except TLSError as exc:
                self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, f"party {me!r}: {exc}")
        frac = req.frac or DEFAULT_FRAC
        digest = job_digest(req.job, study.digest, params, frac)
        links = self._links(study)
        tr = GrpcTransport(me, req.job_id, study.id, links, self.pool, timeout=timeout,
                           max_message_bytes=self.config.max_message_bytes, job_digest=digest)
        job = JobRecord(req.job_id, req.job, study, params, sub.name, fp, timeout, frac, tr, digest=digest)
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
        """Apply the retention policy (call with ``_cond`` held): results by total bytes and age, records by count.

        Oldest finished jobs lose their result first; their record (state, error,
        timings) stays listed until ``keep_jobs`` newer jobs have finished.
        """
        done = sorted((j for j in self.jobs.values() if j.state in _TERMINAL), key=lambda j: j.finished)
        cfg, now = self.config, time.time()
        total = sum(len(j.payload) for j in done if j.payload)
        for j in done:
            if j.payload is None:
                continue
            if now - j.finished > cfg.keep_results_seconds:
                why = f"older than keep_results_hours = {cfg.keep_results_seconds / 3600:g}"
            elif total > cfg.keep_results_bytes:
                why = f"results above keep_results_mb = {cfg.keep_results_bytes / (1 << 20):g} in total"
            else:
                continue
            total -= len(j.payload)
            j.payload, j.discarded = None, why
            log.info("job %s: result discarded (%s)", j.id, why)
        for j in done[: max(0, len(done) - cfg.keep_jobs)]:
            del self.jobs[j.id]

    def _job_for(self, job_id: str, context, action: str) -> JobRecord:
        fp = self._caller(context)
        with self._cond:
            self._trim()
            job = self.jobs.get(job_id)
        if job is None or not self._visible(job, fp):
            context.abort(grpc.StatusCode.NOT_FOUND, f"party {self.me!r} has no job {job_id!r} visible to you")
        if fp != job.submitter_fp and fp != self.ident.fingerprint:
            log.info("job %s: %s by %s (submitted by %s)", job.id, action, self._who(job, fp), job.submitter)
        return job

    def _status(self, req: pb.StatusRequest, context) -> pb.StatusReply:
        fp = self._caller(context)
        if req.job_id:
            job = self._job_for(req.job_id, context, "status")
            if req.wait > 0:
                deadline = time.monotonic() + min(req.wait, 60.0)
                with self._cond:
                    while job.state == "running" and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
            return pb.StatusReply(jobs=[job.info()])
        with self._cond:
            self._trim()
            jobs = [j for j in self.jobs.values() if self._visible(j, fp)]
        return pb.StatusReply(jobs=[j.info() for j in sorted(jobs, key=lambda j: j.submitted)])

    def _cancel(self, req: pb.CancelRequest, context) -> pb.CancelReply:
        job = self._job_for(req.job_id, context, "cancel")
        if job.state != "running":
            return pb.CancelReply(cancelled=False, state=job.state)
        who = self._who(job, self._caller(context))
        reason = req.reason or "cancelled by the submitter"
        job.cancel_reason = f"{reason} ({who})"
        log.info("job %s: cancel requested by %s (%s)", job.id, who, reason)
        # abort() flushes ABORT to the peers (up to 2 s): not on this RPC's thread
        threading.Thread(target=job.transport.abort, args=(f"cancelled: {reason}",), daemon=True).start()
        return pb.CancelReply(cancelled=True, state="cancelling")

    def _fetch(self, req: pb.FetchRequest, context):
        job = self._job_for(req.job_id, context, "fetch")
        if job.state == "running":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {job.id!r} is still running at {self.me!r}")
        if job.payload is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"party {self.me!r} no longer keeps the result of job "
                          f"{job.id!r} ({job.discarded}; site policy)")
        payload = job.payload
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
            # the full message (paths, lines, values) stays in this log; only its kind leaves the site
            state, error = "failed", f"party {self.me!r}: {public_reason(exc)}"
            log.error("job %s failed here: %s: %s", job.id, type(exc).__name__, exc)
            tr.abort(error)
        if state == "failed":
            # a job run with different parameters fails for that reason, whichever symptom came first here:
            # the peers' HELLOs, ABORTs and refusals carry their digests (wait briefly for all, to name the odd
            # party; a party down from the start costs this wait once)
            error = digest_disagreement(job.id, tr.wait_digests(DIGEST_WAIT)) or error
        report = ctx.report() if ctx is not None else {"party": self.me, **tr.stats.as_dict()}
        doc = {"result": payload if state == "done" else None, "report": report, "error": error or None}
        job.report, job.payload = report, json.dumps(doc).encode()
        job.error = error
        job.finished = time.time()
        job.ctx = None  # the Context (ledger, seeds, correlated-randomness buffers) is not kept
        with self._cond:
            job.state = state
            self._trim()
            self._cond.notify_all()
        st = tr.stats
        if state == "done":
            log.info("job %s finished in %.3f s: %d bytes sent, %d received, %d rounds", job.id,
                     job.finished - job.started, st.bytes_sent, st.bytes_received, report.get("rounds", 0))
        else:
            log.warning("job %s %s after %.3f s: %s (%d bytes sent, %d received, %d rounds)", job.id, state,
                        job.finished - job.started, error, st.bytes_sent, st.bytes_received, report.get("rounds", 0))
