"""``cipherome job``: submit a job to every party of a study, follow it, fetch results, cancel it.

The submitter signs in with its own key and certificate, which the study must
list under ``[[submitter]]``; results are written as JSON (numpy arrays
encoded as in ``cipherome.mpc.results``), one entry per party.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import click

__all__ = ["job", "list_names"]


@contextlib.contextmanager
def _session(study_path: str, key: str, cert: str):
    """The study's client, closed on exit; a client error inside (a party down, a refusal) becomes a CLI error."""
    from cipherome.mpc.client import ClientError

    from .submit import study_client

    client = study_client(study_path, key, cert)
    try:
        yield client
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()


def _common(f):
    f = click.option("--cert", required=True, type=click.Path(dir_okay=False), help="Your certificate.")(f)
    f = click.option("--key", required=True, type=click.Path(dir_okay=False), help="Your private key.")(f)
    f = click.option("--study", "study_path", required=True, type=click.Path(dir_okay=False), help="Study file.")(f)
    return f


def _write_json(path: str, doc) -> None:
    from cipherome.mpc.results import to_jsonable

    out = Path(path)
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=out.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(to_jsonable(doc), f, indent=1)
    os.replace(tmp, out)


@click.group("job")
def job() -> None:
    """Submit and manage jobs on a study's party daemons."""


def _job_id_command(name: str):
    """``cipherome job NAME --study --key --cert JOB_ID``: the commands that act on one submitted job."""
    def wrap(f):
        return job.command(name)(_common(click.argument("job_id")(f)))
    return wrap


@job.command("submit")
@_common
@click.argument("name")
@click.option("--params", default="{}", show_default=True, help="Job parameters as a JSON object.")
@click.option("--job-id", default=None, help="Job id.  [default: a random one]")
@click.option("--round-timeout", default=0.0,
              help="Seconds a party waits for one message (capped by each site's policy).  [default: the study's]")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the result.")
@click.option("--out", "prefix", metavar="PREFIX", default=None,
              help="Write every party's result and report to PREFIX.job.json.  [default: not written]")
def submit(study_path, key, cert, name, params, job_id, round_timeout, wait, prefix) -> None:
    """Submit job NAME (e.g. bench.mul; `cipherome job list-names` lists them) to every party of the study."""
    try:
        p = json.loads(params)
        if not isinstance(p, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise click.BadParameter(f"expected a JSON object ({exc})", param_hint="--params") from None
    with _session(study_path, key, cert) as client:
        jid = client.submit(name, p, job_id=job_id, round_timeout=round_timeout)
        click.echo(f"job {jid} submitted to {', '.join(client.daemons)}", err=True)
        if not wait:
            click.echo(jid)
            return
        infos = client.wait(jid)
        failed = {k: v for k, v in infos.items() if v["state"] != "done"}
        for party_name, info in infos.items():
            took = info["finished"] - info["started"]
            click.echo(f"  {party_name:<12} {info['state']:<9} {took:8.2f} s  sent {info['bytes_sent']/1e6:9.2f} MB  "
                       f"rounds {info['rounds']}" + (f"  error: {info['error']}" if info["error"] else ""), err=True)
        if prefix:
            out = f"{prefix}.job.json"
            _write_json(out, client.fetch(jid))
            click.echo(f"results written to {out}", err=True)
        if failed:
            raise click.ClickException(f"job {jid} failed at {', '.join(failed)}")
        click.echo(jid)


@_job_id_command("status")
def status_cmd(study_path, key, cert, job_id) -> None:
    """Print the state of JOB_ID at every party."""
    from cipherome.mpc.client import ClientError

    with _session(study_path, key, cert) as client:
        for party_name, d in client.daemons.items():
            try:
                info = d.status(job_id)[0]
                click.echo(f"{party_name:<12} {info['state']:<9} sent {info['bytes_sent']/1e6:9.2f} MB"
                           + (f"  error: {info['error']}" if info["error"] else ""))
            except ClientError as exc:
                click.echo(f"{party_name:<12} ?         {exc}")


@_job_id_command("fetch")
@click.option("--out", "prefix", required=True, metavar="PREFIX",
              help="Write every party's result and report to PREFIX.job.json.")
def fetch_cmd(study_path, key, cert, job_id, prefix) -> None:
    """Fetch every party's result and report of JOB_ID."""
    out = f"{prefix}.job.json"
    with _session(study_path, key, cert) as client:
        _write_json(out, client.fetch(job_id))
    click.echo(f"results written to {out}", err=True)


@_job_id_command("cancel")
def cancel_cmd(study_path, key, cert, job_id) -> None:
    """Cancel JOB_ID at every party."""
    with _session(study_path, key, cert) as client:
        for party_name, r in client.cancel(job_id).items():
            click.echo(f"{party_name:<12} {r.get('state', '')} {r.get('error', '')}")


@job.command("list-names")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A site config: mark which jobs its daemon runs (its plugins, its [policy] workloads and its "
                   "approved studies' workloads).  [default: list every job of this installation]")
def list_names(config_path) -> None:
    """List the job names a daemon of this installation serves (the NAME of `cipherome job submit`).

    The daemon runs the same job registry: the built-in workloads plus the modules in
    its config's ``plugins``. With --config, each name says whether that site would run it.
    """
    import importlib

    from cipherome.mpc.jobs import registered_jobs

    cfg = None
    if config_path:
        from cipherome.mpc.study import ConfigError, load_site_config

        try:
            cfg = load_site_config(config_path)
            for mod in cfg.plugins:
                importlib.import_module(mod)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        except ImportError as exc:
            raise click.ClickException(f"{config_path}: plugin module failed to import: {exc}") from None
    for name in registered_jobs():
        if cfg is None:
            click.echo(name)
            continue
        family = name.split(".", 1)[0]
        why = []
        if family not in cfg.workloads:
            why.append(f"[policy] workloads lacks {family!r}")
        covering = [st.id for st in cfg.studies.values() if st.allows_workload(name)]
        if not covering:
            why.append("no approved study covers it")
        click.echo(f"{name:<24} " + ("runs (studies: " + ", ".join(covering) + ")" if not why
                                      else "refused: " + "; ".join(why)))
