"""``cipherome bench``: run the standard protocol benchmarks and print time, traffic and rounds.

Rows have stable keys (op, size, parties, transport, seconds, mb_per_party,
rounds) so that later operations and transports add rows, not formats.
"""
from __future__ import annotations

import json
import time

import click
import numpy as np

__all__ = ["bench", "run_bench", "TRANSPORTS"]

#: transport name -> function(job_name, params, n_parties) -> list of per-party results; the registry
#: lives in the engine (``cipherome.mpc.launcher.BENCH_TRANSPORTS``: "inproc" and "grpc", the latter
#: on local daemons started once per process)
from cipherome.mpc.launcher import BENCH_TRANSPORTS as TRANSPORTS  # noqa: E402


def _prg_row(size: int) -> dict:
    from cipherome.mpc.prg import PRG, new_seed

    prg = PRG(new_seed())
    prg.ring(size)
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        prg.ring(size)
    dt = (time.perf_counter() - t0) / reps
    return {"op": "prg", "size": size, "parties": 1, "transport": "local", "seconds": dt,
            "mb_per_party": 0.0, "rounds": 0, "mb_per_s": 8 * size / dt / 1e6}


def run_bench(ops: list[str], n: int, transport: str, sizes: dict[str, int], reps: int = 1,
              wan: str | None = None) -> list[dict]:
    """Run each op and return one row per op (seconds and bytes are per run); ``wan``: an emulated link."""
    from cipherome.cli.bench_jobs import BENCH_OPS, NET_OPS

    rows = []
    for op in ops:
        if op == "prg":
            rows.append(_prg_row(sizes.get("prg", 10**7)))
            continue
        if op not in BENCH_OPS and op not in NET_OPS:
            raise click.ClickException(f"unknown operation {op!r}; known: prg, "
                                       f"{', '.join(sorted([*BENCH_OPS, *NET_OPS]))}")
        size = sizes.get(op, BENCH_OPS[op][0] if op in BENCH_OPS else NET_OPS[op])
        results = TRANSPORTS[transport](f"bench.{op}", {"size": size, "reps": reps}, n, wan=wan)
        if op in NET_OPS:  # a two-party transport measurement: the lead's figures
            r = results[0]
            rows.append({"op": op, "size": size, "parties": n, "transport": transport, "seconds": r["seconds"],
                         "mb_per_party": r["bytes_sent"] / 1e6, "rounds": r["rounds"],
                         **({"mb_per_s": r["mb_per_s"]} if "mb_per_s" in r else {})})
            continue
        rows.append({
            "op": op,
            "size": size,
            "parties": n,
            "transport": transport,
            "seconds": max(r["seconds"] for r in results),
            "mb_per_party": float(np.mean([r["bytes_sent"] for r in results])) / 1e6,
            "rounds": max(r["rounds"] for r in results),
        })
    return rows


@click.command("bench")
@click.option("--sites", "-n", "parties", default=3, show_default=True, type=int,
              help="Number of sites (compute parties); a dealer is added.")
@click.option("--parties", "parties_alias", type=int, default=None, hidden=True)  # old spelling of --sites
@click.option("--transport", type=click.Choice(["inproc", "grpc"]), default="inproc", show_default=True,
              help="inproc: parties as threads; grpc: local daemons with mutual TLS on 127.0.0.1.")
@click.option("--op", "ops", multiple=True,
              help="Operation(s) to run.  [default: prg and every protocol op; grpc adds exchange, rtt]")
@click.option("--size", "size_opts", multiple=True,
              help="Override a size, e.g. --size mul=100000.  [default: each op's standard size]")
@click.option("--reps", default=1, show_default=True, help="Timed repetitions per op (after one warm-up).")
@click.option("--wan", default=None, metavar="RTT,BW",
              help="Emulate a wide-area link between every pair of daemons (grpc transport), e.g. 50ms,1gbit.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
def bench(parties: int, parties_alias: int | None, transport: str, ops: tuple[str, ...], size_opts: tuple[str, ...],
          reps: int, wan: str | None, as_json: bool) -> None:
    """Run the standard protocol benchmarks; one row per operation."""
    from cipherome.cli.bench_jobs import BENCH_OPS
    from cipherome.mpc.wan import parse_wan

    parties = parties_alias or parties
    if parties < 2:
        raise click.BadParameter("at least 2 sites", param_hint="--sites")
    if transport not in TRANSPORTS:
        raise click.ClickException(f"transport {transport!r} is not available in this build")
    try:
        link = parse_wan(wan)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wan") from None
    if link is not None and transport != "grpc":
        raise click.BadParameter("an emulated WAN needs --transport grpc", param_hint="--wan")
    sizes = {}
    for s in size_opts:
        name, _, value = s.partition("=")
        if not value.isdigit():
            raise click.BadParameter(f"expected OP=N, got {s!r}", param_hint="--size")
        sizes[name] = int(value)
    ops = list(ops) or ["prg", *BENCH_OPS, *(["exchange", "rtt"] if transport == "grpc" else [])]
    try:
        rows = run_bench(ops, parties, transport, sizes, reps, wan=wan)
    except RuntimeError as exc:  # daemons that did not start, a refused or failed job
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'op':<10}{'size':>10}{'parties':>9}{'transport':>11}{'seconds':>10}{'MB/party':>10}{'rounds':>8}"
               f"{'MB/s':>9}")
    for r in rows:
        click.echo(f"{r['op']:<10}{r['size']:>10}{r['parties']:>9}{r['transport']:>11}{r['seconds']:>10.4f}"
                   f"{r['mb_per_party']:>10.2f}{r['rounds']:>8g}" + (f"{r['mb_per_s']:>9.0f}" if "mb_per_s" in r else ""))
