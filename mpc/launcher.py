"""A local cluster of party daemons: N sites plus a dealer as separate processes on 127.0.0.1.

``LocalCluster`` makes keys, a study file and site configs in a temporary
folder, starts ``cipherome party serve`` for every party with free ports, waits
for their health checks and gives a ``StudyClient`` for a submitter listed in
the study; leaving the ``with`` block (or an error, or the parent's death)
stops every daemon. It serves ``cipherome demo``, the end-to-end tests and
``cipherome bench --transport grpc``, whose transports are in ``BENCH_TRANSPORTS``.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Callable

from .wan import WanRelay, parse_wan

__all__ = ["LocalCluster", "BENCH_TRANSPORTS", "free_ports", "PARENT_ENV", "DATA_PATH_KEYS"]

#: ``[data]`` keys that name files (made absolute before a daemon sees them)
DATA_PATH_KEYS = frozenset({"bfile", "vcf", "pheno", "covar", "ped", "annotation", "pgen", "bgen", "sample"})
#: environment variable naming the pid whose death makes a daemon exit (no orphans)
PARENT_ENV = "CIPHEROME_EXIT_WITH_PARENT"
_LIVE: "weakref.WeakSet[LocalCluster]" = weakref.WeakSet()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class LocalCluster:
    """``n`` compute parties (``p0``..), a ``dealer`` and a submitter, as daemons on loopback.

    data / policy: one table per site (a list of n dicts) or one dict for all;
    ``policy`` defaults to allowing every workload of the study. ``plugins``:
    extra job modules every daemon imports (``pythonpath`` is prepended to the
    daemons' PYTHONPATH so that test helper modules can be found). ``wan``: an
    emulated wide-area link for every pair of parties, e.g. ``"50ms,1gbit"`` (RTT,
    bandwidth; ``mpc.wan``): the study addresses point at relays in front of the daemons.

    Every path handed to a daemon is absolute: the folder, the configs, the
    ``pythonpath`` entries, and the relative file paths of ``data`` (keys in
    ``DATA_PATH_KEYS``, taken relative to the caller's working directory), since
    a daemon runs in the cluster folder and reads relative paths from there.
    """

    def __init__(self, n: int = 3, *, workdir: str | Path | None = None, study_id: str = "local",
                 workloads: tuple[str, ...] = ("bench", "test", "gwas", "filter"), round_timeout: float = 60.0,
                 data: list[dict] | dict | None = None, policy: list[dict] | dict | None = None,
                 plugins: list[str] | None = None, pythonpath: list[str] | None = None, log_level: str = "INFO",
                 start_timeout: float = 120.0, wan: str | None = None, submitters: dict[str, str] | None = None):
        if n < 2:
            raise ValueError("a study needs at least two compute parties")
        self.n = n
        self.sites = [f"p{i}" for i in range(n)]
        self.dealer = "dealer"
        self.names = self.sites + [self.dealer]
        self._tmp = workdir is None
        # resolved once: every path handed to a daemon is absolute, whatever the daemon's cwd
        self.dir = (Path(tempfile.mkdtemp(prefix="cipherome-cluster-")) if workdir is None
                    else Path(workdir).expanduser().resolve())
        self.study_id, self.workloads, self.round_timeout = study_id, list(workloads), round_timeout
        self.data, self.policy = data, policy
        self.plugins = list(plugins or [])
        self.pythonpath = [str(Path(p).expanduser().resolve()) for p in pythonpath or []]
        self.log_level, self.start_timeout = log_level, start_timeout
        #: submitter name -> role ("submitter" or "admin"); ``client`` is the first one's
        self.submitters = dict(submitters or {"submitter": "submitter"})
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.configs: dict[str, Path] = {}
        self.client = None
        self.study = None
        #: emulated WAN (``mpc.wan``): every daemon's study address points at a relay in front of it
        self.wan = parse_wan(wan)
        self.relay: WanRelay | None = None
        self.addresses: dict[str, str] = {}

    # -- files ---------------------------------------------------------------------
    def _table(self, spec, i: int) -> dict:
        if spec is None:
            return {}
        return dict(spec[i]) if isinstance(spec, list) else dict(spec)

    @staticmethod
    def _absolute_data(data: dict) -> dict:
        """``data`` with its file paths made absolute against the caller's working directory."""
        return {k: (str(Path(v).expanduser().resolve()) if k in DATA_PATH_KEYS and isinstance(v, (str, Path)) else v)
                for k, v in data.items()}

    def _write(self) -> None:
        from .study import site_toml, study_toml
        from .tls import make_identity, write_identity

        keys = self.dir / "keys"
        self.idents = {}
        for name in self.names + list(self.submitters):
            ident = make_identity(name)
            write_identity(ident, keys, overwrite=True)
            self.idents[name] = ident
        ports = free_ports(len(self.names))
        self.ports = dict(zip(self.names, ports))
        if self.wan is not None:
            self.relay = WanRelay(self.wan)
            self.addresses = {nm: f"127.0.0.1:{self.relay.add(self.ports[nm])}" for nm in self.names}
        else:
            self.addresses = {nm: f"127.0.0.1:{self.ports[nm]}" for nm in self.names}
        parties = [{"name": nm, "role": "dealer" if nm == self.dealer else "site",
                    "address": self.addresses[nm], "fingerprint": self.idents[nm].fingerprint,
                    "cert": f"keys/{nm}.crt"} for nm in self.names]
        subs = [{"name": nm, "fingerprint": self.idents[nm].fingerprint, "cert": f"keys/{nm}.crt",
                 **({"role": role} if role != "submitter" else {})} for nm, role in self.submitters.items()]
        self.study_path = self.dir / "study.toml"
        self.study_path.write_text(study_toml(self.study_id, parties, subs, self.workloads, self.round_timeout))
        for i, nm in enumerate(self.names):
            party = {"name": nm, "key": f"keys/{nm}.key", "cert": f"keys/{nm}.crt",
                     "listen": f"127.0.0.1:{self.ports[nm]}", "studies": ["study.toml"], "log": f"logs/{nm}.log"}
            if self.plugins:
                party["plugins"] = self.plugins
            is_site = nm != self.dealer
            data = self._absolute_data(self._table(self.data, i)) if is_site else {}
            # the dealer takes the first site's limits (max_*, keep_*) so that it admits as many concurrent jobs
            policy = self._table(self.policy, i) if is_site else {
                k: v for k, v in self._table(self.policy, 0).items() if k.startswith(("max_", "keep_"))}
            policy.setdefault("workloads", self.workloads)
            path = self.dir / f"{nm}.toml"
            path.write_text(site_toml(party, data, policy))
            self.configs[nm] = path
        (self.dir / "logs").mkdir(exist_ok=True)

    # -- processes -------------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        env[PARENT_ENV] = str(os.getpid())
        paths = [str(p) for p in self.pythonpath] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start_party(self, name: str) -> None:
        """Start (or restart) the daemon of party ``name``."""
        log = open(self.dir / "logs" / f"{name}.out", "ab")
        level = {"DEBUG": ["-vv"], "INFO": ["-v"]}.get(self.log_level, [])
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "cipherome.cli.main", *level, "party", "serve", "--config", str(self.configs[name])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._env(), cwd=str(self.dir),
        )
        log.close()

    def start(self) -> "LocalCluster":
        from .client import StudyClient
        from .study import load_study

        _LIVE.add(self)
        self._write()
        for nm in self.names:
            self.start_party(nm)
        self.study = load_study(self.study_path)
        self.client = StudyClient(self.study, self.idents[next(iter(self.submitters))])
        self.wait_healthy()
        return self

    def wait_healthy(self, names: list[str] | None = None) -> None:
        """Wait until every (named) daemon answers its health check; raise with its log tail if one dies."""
        from .client import ClientError

        deadline = time.monotonic() + self.start_timeout
        for nm in names or self.names:
            while True:
                proc = self.procs[nm]
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon {nm} exited with status {proc.returncode}:\n{self.log_tail(nm)}")
                try:
                    self.client.daemons[nm].health(timeout=2.0)
                    break
                except ClientError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"daemon {nm} not healthy after {self.start_timeout:g} s:\n"
                                           f"{self.log_tail(nm)}") from None
                    time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.dir / "logs" / f"{name}.out").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, name: str) -> None:
        """SIGKILL one daemon (to test failure handling)."""
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL after 5 s); remove the temporary folder."""
        if self.client is not None:
            self.client.close()
            self.client = None
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        _LIVE.discard(self)
        if self._tmp:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- jobs --------------------------------------------------------------------------
    def run(self, job: str, params: dict | None = None, **kw):
        """Run a job on the cluster; returns the client's ``JobResult``."""
        return self.client.run(job, params, **kw)


@atexit.register
def _stop_all() -> None:  # pragma: no cover - safety net
    for c in list(_LIVE):
        c.stop()


# ----------------------------------------------------------------------------- bench transports
def _inproc(job_name: str, params: dict, n: int, wan: str | None = None) -> list:
    from .jobs import get_job
    from .local import run_local

    if wan:
        raise ValueError("an emulated WAN needs the grpc transport (daemons behind relays)")
    fn = get_job(job_name)
    return run_local(lambda ctx: fn(ctx, params, None), n).results


_BENCH_CLUSTERS: dict[tuple, LocalCluster] = {}


def _grpc(job_name: str, params: dict, n: int, wan: str | None = None) -> list:
    """Run a job on a local cluster of n sites (started once per (n, wan) and process, stopped at exit)."""
    key = (n, str(parse_wan(wan)))
    cluster = _BENCH_CLUSTERS.get(key)
    if cluster is None:
        cluster = _BENCH_CLUSTERS[key] = LocalCluster(n, log_level="WARNING", wan=wan).start()
    return cluster.run(job_name, params).results


#: transport name -> fn(job_name, params, n_parties, wan=None) -> list of per-compute-party results
BENCH_TRANSPORTS: dict[str, Callable] = {"inproc": _inproc, "grpc": _grpc}
