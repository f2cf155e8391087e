"""``cipherome party``: run a site's party daemon (``serve``) and ask a daemon how it is (``status``).

``serve`` loads the site config and the studies it approves, listens with
mutual TLS and runs jobs until SIGTERM/SIGINT; ``status`` prints a daemon's
health and its jobs (state, timings, bytes, rounds, errors).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

import click

__all__ = ["party"]


@click.group("party")
def party() -> None:
    """Run and query party daemons."""


def _log_to(path) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.getLogger("cipherome").setLevel(logging.INFO if root.level >= logging.INFO else root.level)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(h)


def _watch_parent(pid: int, stop) -> None:
    """Exit when process ``pid`` is gone (so that launcher children never outlive their parent)."""
    def loop():
        while True:
            time.sleep(0.5)
            if os.getppid() != pid:
                stop()
                os._exit(0)

    threading.Thread(target=loop, daemon=True, name="parent-watch").start()


@party.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Site config (TOML), read once at start: restart the daemon to apply changes.")
def serve(config_path: str) -> None:
    """Run the party daemon of the site described by --config until stopped (SIGTERM or Ctrl-C)."""
    from cipherome.mpc.daemon import Daemon
    from cipherome.mpc.launcher import PARENT_ENV
    from cipherome.mpc.study import ConfigError

    try:
        from cipherome.mpc.study import load_site_config

        cfg = load_site_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _log_to(cfg.log)
    daemon = Daemon(cfg)
    try:
        port = daemon.start()
    except (OSError, ImportError) as exc:
        raise click.ClickException(f"{config_path}: {exc}") from None
    done = threading.Event()

    def stop(*_):
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if os.environ.get(PARENT_ENV):
        _watch_parent(int(os.environ[PARENT_ENV]), lambda: daemon.stop(0.5))
    click.echo(f"party {cfg.name} listening on {cfg.listen.rsplit(':', 1)[0]}:{port}", err=True)
    while not done.wait(1.0):
        pass
    daemon.stop()
    logging.shutdown()
    # skip interpreter finalisation: gRPC's global shutdown can take seconds when peers stop together
    os._exit(0)


@party.command("status")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Site config: query this site's own daemon with its own key.")
@click.option("--study", "study_path", type=click.Path(dir_okay=False), help="Study file (with --party, --key, --cert).")
@click.option("--party", "party_name", help="Party of the study to query.")
@click.option("--key", type=click.Path(dir_okay=False), help="Your private key (a submitter of the study).")
@click.option("--cert", type=click.Path(dir_okay=False), help="Your certificate.")
@click.option("--job", "job_id", default="", help="Show one job only.  [default: every job]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config_path, study_path, party_name, key, cert, job_id, as_json) -> None:
    """Print a daemon's health and jobs."""
    import json

    from cipherome.mpc.client import ClientError, DaemonClient
    from cipherome.mpc.study import ConfigError, load_site_config, load_study
    from cipherome.mpc.tls import TLSError, load_identity

    try:
        if config_path:
            cfg = load_site_config(config_path)
            ident = load_identity(cfg.name, cfg.key_path, cfg.cert_path)
            host, port = cfg.listen.rsplit(":", 1)
            host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "") else host
            client = DaemonClient(cfg.name, f"{host}:{port}", ident.cert_pem, ident)
        elif study_path and party_name and key and cert:
            st = load_study(study_path)
            p = st.party(party_name)
            if p is None:
                raise click.ClickException(f"{study_path}: no party {party_name!r} (parties: {', '.join(x.name for x in st.parties)})")
            ident = load_identity("me", key, cert)
            client = DaemonClient(p.name, p.address, p.cert_pem, ident)
        else:
            raise click.UsageError("give --config SITE.toml, or --study, --party, --key and --cert")
    except (ConfigError, TLSError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        health = client.health()
        jobs = client.status(job_id)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps({"health": health, "jobs": jobs}, indent=1))
        return
    click.echo(f"party {health['party']} ({health['role']}), cipherome {health['version']}, up {health['uptime_s']:.0f} s; "
               f"studies: {', '.join(health['studies']) or 'none'}; jobs running {health['running']}, "
               f"done {health['finished']}, failed {health['failed']}")
    for j in jobs:
        took = (j["finished"] or time.time()) - (j["started"] or j["submitted"])
        click.echo(f"  {j['job_id']}  {j['job']:<16} {j['state']:<9} {took:8.2f} s  sent {j['bytes_sent']/1e6:9.2f} MB  "
                   f"rounds {j['rounds']:>5}  by {j['submitter']}" + (f"\n      error: {j['error']}" if j["error"] else ""))
