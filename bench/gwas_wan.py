"""The secure GWAS across emulated wide-area links, side by side with loopback, and each link's floor.

Runs the GWAS benchmark study (``bench.gwas_data``) on a ``LocalCluster`` of 3
sites + dealer for every link (``mpc.wan``: a relay in front of every daemon that
delays each byte by half the RTT and paces it to the bandwidth) and reports per
link: wall time of the job (as the submitter sees it), MB sent by the lead, the
lead's rounds, and the floor rounds x RTT + bytes / bandwidth (the issue's
formula; a lock-step opening costs one one-way delay, so rounds x RTT / 2 +
bytes / bandwidth is the strict lower bound, also given). One short warm-up job per
cluster loads the daemons' numba kernels; then the job runs twice on the same
daemons. The row's figures are the second run's, a site daemon's usual state: its
heap already holds the pages a job of this size uses (``mpc.memory``). The first
run's wall time is given beside it (``first_job_s``): the one job per daemon
lifetime that faults its heap in.

    python -m bench.gwas_wan --size 10000x100000 --link loopback --link 20ms,1gbit --link 50ms,100mbit
"""
from __future__ import annotations

import argparse
import json
import os
import time

from bench.gwas_data import gwas_site_tables
from cipherome.genomics.gwas.params import GwasParams
from cipherome.mpc.launcher import LocalCluster
from cipherome.mpc.wan import parse_wan

__all__ = ["LINKS", "run_link", "floor_row", "markdown"]

#: the links of the issue: loopback, 20 ms / 1 Gbit/s, 50 ms / 100 Mbit/s, and the target link 50 ms / 1 Gbit/s
LINKS = ["loopback", "20ms,1gbit", "50ms,100mbit", "50ms,1gbit"]
PARAMS = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.01, hwe=1e-6)


def floor_row(link: str, rounds: int, nbytes: float) -> dict:
    """Floor (issue's formula) and strict floor of a run with ``rounds`` and ``nbytes`` at the lead."""
    spec = parse_wan(link)
    if spec is None:
        return {"floor_s": 0.0, "strict_floor_s": 0.0}
    return {"floor_s": spec.floor(rounds, nbytes), "strict_floor_s": spec.strict_floor(rounds, nbytes)}


def qc_assoc_bytes(report: dict) -> int:
    """Bytes a compute party sent in the variant QC and association stages (the issue's "QC + association" traffic)."""
    return sum(s["bytes_sent"] for s in report["stages"] if s["stage"] in ("variant_qc", "association"))


def host_cpu_seconds() -> dict:
    """The machine's CPU time so far by kind (/proc/stat: busy, idle, and steal, the time a virtual
    machine's host gave to others), in seconds summed over cores; {} where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return {}
    tck = os.sysconf("SC_CLK_TCK")
    return {"busy": (v[0] + v[1] + v[2] + v[5] + v[6]) / tck, "idle": (v[3] + v[4]) / tck, "steal": v[7] / tck}


def run_link(n: int, m: int, link: str, params: GwasParams = PARAMS, workdir=None, warmup: bool = True) -> dict:
    """The GWAS job twice on a fresh cluster behind ``link`` (module doc); a row of the side-by-side table."""
    data = gwas_site_tables(n, m)
    wan = None if parse_wan(link) is None else link
    pooled = params.pca and params.extra.get("pca_mode") == "pooled"
    policy = {"pca_pooled_products": True} if pooled else None  # every site consents to the pooled mode
    with LocalCluster(3, workdir=workdir, data=data, policy=policy, log_level="WARNING", wan=wan, round_timeout=600.0,
                      start_timeout=300.0) as cluster:
        if warmup:  # fresh daemons load their numba kernels on the first job: a short job of the same kind
            extra = {**params.extra, "pca_passes": 2} if params.pca else {}
            cluster.run("gwas", GwasParams(pheno_name=params.pheno_name, geno=0.1, maf=0.2, hwe=1e-6, pca=params.pca,
                                           logistic_top=params.logistic_top, extra=extra).to_dict(), timeout=3600)
        t0 = time.perf_counter()
        cluster.run("gwas", params.to_dict(), timeout=7200)
        first = time.perf_counter() - t0
        t0, c0, h0 = time.perf_counter(), time.process_time(), host_cpu_seconds()
        res = cluster.run("gwas", params.to_dict(), timeout=7200)
        wall, relay_cpu, h1 = time.perf_counter() - t0, time.process_time() - c0, host_cpu_seconds()
    lead = res.reports["p0"]
    row = {"size": f"{n}x{m}", "link": link, "pca": params.pca, "pca_mode": params.extra.get("pca_mode", "shared"),
           "pca_rtol": params.extra.get("pca_rtol"), "pca_oversample": params.extra.get("pca_oversample"),
           "glm": params.glm, "pheno": params.pheno_name, "wall_s": wall, "first_job_s": first,
           "mb_lead": lead["bytes_sent"] / 1e6, "rounds_lead": lead["rounds"],
           "kb_per_variant_lead": lead["bytes_sent"] / m / 1e3,
           "tested": len(res.results[0]["tested"]),
           # the traffic target is per party: every site's MB, and its QC + association bytes per variant
           "mb_parties": {name: r["bytes_sent"] / 1e6 for name, r in sorted(res.reports.items())},
           "qc_assoc_kb_per_variant": {name: qc_assoc_bytes(r) / m / 1e3 for name, r in sorted(res.reports.items())
                                       if r.get("role") in ("lead", "party")},  # the sites, not the dealer
           "stages": [{"stage": s["stage"], "s": round(s["seconds"], 2), "mb": round(s["bytes_sent"] / 1e6, 2),
                       "rounds": s["rounds"], "waited_s": s.get("waited_s"), "lead_cpu_s": s.get("process_cpu_s")}
                      for s in lead["stages"]],
           "load_avg": os.getloadavg()[0],
           # CPU of this process during the job: the emulated links' relay thread (and the submitter's polling),
           # which shares the machine's cores with the daemons (a real deployment has no relay)
           "relay_cpu_s": relay_cpu,
           # the machine's CPU during the job (every process, all cores): busy, idle, and stolen by a VM's host
           "host_cpu_s": {k: round(h1[k] - h0[k], 2) for k in h0}}
    row.update(floor_row(link, lead["rounds"], lead["bytes_sent"]))
    return row


def markdown(rows: list[dict]) -> str:
    """The side-by-side table (one line per run)."""
    out = ["| size | run | link | wall s | first job s | MB sent (lead) | QC + assoc. KB/variant (most of a site) "
           "| rounds (lead) | floor s (R x RTT + B/bw) | wall / floor | strict floor s | load | host busy / steal s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        run = "QC + " + (f"PCA {r['pca']} ({r.get('pca_mode', 'shared')}) + " if r["pca"] else "") + r["glm"] + \
            (f" ({r['pheno']})" if r.get("pheno", PARAMS.pheno_name) != PARAMS.pheno_name else "")
        ratio = f"{r['wall_s'] / r['floor_s']:.2f}" if r["floor_s"] else "-"
        h = r.get("host_cpu_s") or {}
        host = f"{h['busy']:.1f} / {h['steal']:.1f}" if h else "-"
        first = f"{r['first_job_s']:.1f}" if r.get("first_job_s") else "-"
        sites = (r.get("qc_assoc_kb_per_variant") or {}).values()
        per_site = f"{max(sites):.2f}" if sites else "-"
        out.append(f"| {r['size']} | {run} | {r['link']} | {r['wall_s']:.1f} | {first} | {r['mb_lead']:.0f} | {per_site} | "
                   f"{r['rounds_lead']} | "
                   f"{r['floor_s']:.1f} | {ratio} | {r['strict_floor_s']:.1f} | {r['load_avg']:.1f} | {host} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2000x2000", help="SAMPLESxVARIANTS")
    ap.add_argument("--link", action="append", help="loopback or RTT,BW (repeatable; default: the issue's links)")
    ap.add_argument("--pheno", default=PARAMS.pheno_name,
                    help="quant_trait (linear regression) or disease (case/control: logistic, Wald fits for the top 100)")
    ap.add_argument("--pca", type=int, default=0)
    ap.add_argument("--pca-mode", choices=["shared", "pooled"], default="shared")
    ap.add_argument("--pca-rtol", type=float, default=None, help="the PCA's residual stop (default: the job's, 2e-3)")
    ap.add_argument("--pca-oversample", type=int, default=None,
                    help="the Krylov block size beyond K (default: the job's; pooled mode max(12, K + 2 rounded up to 4) - K)")
    ap.add_argument("--json", help="append rows to this JSON-lines file")
    ap.add_argument("--no-warmup", action="store_true", help="skip the warm-up job (numba caches already warm)")
    a = ap.parse_args(argv)
    n, m = (int(v) for v in a.size.lower().split("x"))
    params = GwasParams(**{**PARAMS.to_dict(), "pca": a.pca, "pheno_name": a.pheno})
    if a.pca:
        params.extra["pca_mode"] = a.pca_mode
        if a.pca_rtol is not None:
            params.extra["pca_rtol"] = a.pca_rtol
        if a.pca_oversample is not None:
            params.extra["pca_oversample"] = a.pca_oversample
    rows = []
    for link in a.link or LINKS:
        row = run_link(n, m, link, params, warmup=not a.no_warmup)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
