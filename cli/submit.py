"""Submitting a workload job from the command line: connect as a study's submitter, follow, fetch.

The workload commands (``gwas``, ``filter``) and ``cipherome job`` share this so that
every command authenticates the same way, shows the same progress line and turns a
failure anywhere into one clean error, with nothing written.
"""
from __future__ import annotations

import sys
import time

import click

__all__ = ["study_client", "follow", "run_workload"]


def study_client(study_path: str, key: str, cert: str):
    """A ``StudyClient`` signed in with the submitter's key and certificate (config errors: ClickException)."""
    from cipherome.mpc.client import StudyClient
    from cipherome.mpc.study import ConfigError, load_study
    from cipherome.mpc.tls import TLSError, load_identity

    try:
        return StudyClient(load_study(study_path), load_identity("submitter", key, cert))
    except (ConfigError, TLSError) as exc:
        raise click.ClickException(str(exc)) from None


def follow(client, job_id: str, t0: float) -> None:
    """Progress while the lead runs the job: stage and items done, elapsed, MB sent, rounds
    (a live line on a terminal, a log line every 10 s otherwise)."""
    lead = client.daemons[client.study.sites[0]]
    tty = sys.stderr.isatty()
    last = 0.0
    while True:
        info = lead.status(job_id, wait=1.0)[0]
        now = time.perf_counter() - t0
        line = (f"{info['state']:<9} {now:7.1f} s  {info.get('progress', ''):<34} "
                f"{info['bytes_sent'] / 1e6:9.1f} MB sent  {info['rounds']:6d} rounds (lead)")
        if tty:
            click.echo("\r" + line, nl=False, err=True)
        elif now - last >= 10:
            click.echo(line, err=True)
            last = now
        if info["state"] != "running":
            if tty:
                click.echo("", err=True)
            return


def run_workload(study_path: str, key: str, cert: str, job: str, params: dict, what: str) -> tuple[dict, dict]:
    """Run ``job`` at every party; returns (the lead's result, every party's report).

    Any failure (a refusal, a failed or cancelled job at any party) raises a
    ClickException that says nothing was written.
    """
    from cipherome.mpc.client import ClientError, JobFailed

    client = study_client(study_path, key, cert)
    t0 = time.perf_counter()
    try:
        job_id = client.submit(job, params)
        click.echo(f"{job} job {job_id} running at {', '.join(client.daemons)}", err=True)
        follow(client, job_id, t0)
        infos = client.wait(job_id)
        failed = {p: i for p, i in infos.items() if i["state"] != "done"}
        if failed:
            raise JobFailed(job_id, {p: i["error"] or i["state"] for p, i in failed.items()}, infos)
        got = client.fetch(job_id)
    except (ClientError, JobFailed) as exc:
        raise click.ClickException(f"{what} failed, nothing written: {exc}") from None
    finally:
        client.close()
    lead = client.study.sites[0]
    return got[lead]["result"], {p: g["report"] for p, g in got.items()}
