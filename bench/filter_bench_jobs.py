"""Synthetic filtering workloads for the benchmarks, registered as ``filter.bench.*`` jobs that daemons load as a plugin.

Each job builds its site's data from public parameters (a seed and sizes), so the
benchmark needs no files, runs the same code as ``filter`` jobs (the secure stages
of ``cipherome.genomics.filtering.job`` and ``filtering.models``), and returns this
party's seconds, bytes sent and rounds for the timed part.
"""
from __future__ import annotations

import time

import numpy as np

from cipherome.genomics.filtering import job as filter_job
from cipherome.genomics.filtering import models as fm
from cipherome.genomics.filtering.local import Pedigree, SiteVariants
from cipherome.genomics.filtering.params import FilterParams
from cipherome.genomics.filtering.job import run_filter
from cipherome.mpc.jobs import job

__all__ = ["synthetic_site", "synthetic_trio_site", "measure"]


def synthetic_site(seed: int, site: int, n_sites: int, variants: int, individuals: int,
                   trio: bool = False, genes: int = 1) -> SiteVariants:
    """A site with ``individuals`` people (half affected) and ``variants`` rare variants (1% carriers).

    With ``trio``: one affected child at site 0, its father at site 1 and mother at
    site 2 (mod n_sites), each carrying ``variants`` variants, 5% shared with a parent.
    """
    rng = np.random.default_rng([seed, site])
    rows, dos = [], []
    if trio:
        roles = {0: ("C", "F", "M", 1, 1), 1: ("F", "0", "0", 1, 0), 2: ("M", "0", "0", 2, 0)}
        iid, fa, mo, sex, aff = roles[site % 3] if site < 3 else (f"X{site}", "0", "0", 1, 0)
        ped = Pedigree.from_rows([["T1", iid, fa, mo, sex, aff]])
        shared = np.random.default_rng([seed, 99]).integers(0, 10**8, variants // 20)
        pos = np.unique(np.concatenate([rng.integers(0, 10**8, variants - shared.size), shared]))
        for p in pos:
            rows.append((f"1:{p + 1}:A:G", "1", int(p) + 1, "A", "G", (f"G{p % genes}",), "missense_variant",
                         np.array([1], np.int8)))
        return SiteVariants.from_rows(ped, rows)
    ped = Pedigree.from_rows([[f"S{site}F{j}", f"S{site}I{j}", "0", "0", 1 + j % 2, 1 if j % 2 else 0]
                              for j in range(individuals)])
    pos = np.unique(np.random.default_rng([seed, 7]).integers(0, 10**8, 4 * variants))
    mine = rng.choice(pos, size=min(variants, pos.size), replace=False)
    for p in np.sort(mine):
        g = (rng.random(individuals) < 0.01).astype(np.int8)
        if not g.any():
            g[rng.integers(individuals)] = 1
        rows.append((f"1:{p + 1}:A:G", "1", int(p) + 1, "A", "G", (f"G{p % genes}",), "missense_variant", g))
    return SiteVariants.from_rows(ped, rows)


def synthetic_trio_site(seed: int, site: int, n_sites: int, trios: int, variants: int, carried: int = 400,
                        missing: float = 0.001, genes: int = 20000) -> SiteVariants:
    """Site ``site`` of a study of ``trios`` trios split across the sites, ``variants`` pre-filtered variants per site.

    Every daemon draws the same study from the seed and keeps its part. Site lists
    are ``variants`` positions of a common pool of 1.2 x variants (so sites share
    most variants); a founder carries about ``carried`` variants of its site's
    list (het, 5% hom ALT); a child inherits each parent's variant with
    probability 1/2 where the child's site lists it, and gets 2 de novo variants.
    Trio k: child at site k mod n, father at k+1, mother at k+2 (mod n); every
    10th trio has all members at one site; every 100th child names a father who is
    genotyped nowhere (skipped with a note). Calls are missing with prob. ``missing``.
    The gene of a variant is its position mod ``genes`` (names G0, G1, ...).
    """
    rng = np.random.default_rng([seed, 12345])
    pool = np.sort(rng.choice(10**8, size=int(1.2 * variants), replace=False)) + 1
    lists = [np.sort(rng.choice(pool, size=variants, replace=False)) for _ in range(n_sites)]
    members = []  # (site, fid, iid, father, mother, sex, affected, variant set)

    def founder(si, fid, iid, sex):
        lst = lists[si]
        v = rng.choice(lst, size=carried, replace=False)
        members.append((si, fid, iid, "0", "0", sex, 0, {int(x): (2 if rng.random() < 0.05 else 1) for x in v}))
        return members[-1]

    for k in range(trios):
        cs = k % n_sites
        fs, ms = (cs, cs) if k % 10 == 0 else ((k + 1) % n_sites, (k + 2) % n_sites)
        fid = f"T{k}"
        f = founder(fs, fid, f"{fid}F", 1)
        m = founder(ms, fid, f"{fid}M", 2)
        own = set(lists[cs].tolist())
        g = {}
        for par in (f, m):
            for v, d in par[7].items():
                if v in own and rng.random() < (0.5 if d == 1 else 1.0):
                    g[v] = g.get(v, 0) + 1
        free = [int(x) for x in rng.choice(lists[cs], size=20) if int(x) not in f[7] and int(x) not in m[7]]
        for v in free[:2]:
            g[v] = 1
        father = "NOWHERE" if k % 100 == 99 else f[2]
        members.append((cs, fid, f"{fid}C", father, m[2], 1 + k % 2, 1, g))
    mine = [x for x in members if x[0] == site]
    ped = Pedigree.from_rows([[x[1], x[2], x[3], x[4], x[5], x[6]] for x in mine])
    lst = lists[site]
    index = {int(v): i for i, v in enumerate(lst)}
    dos = np.zeros((lst.size, len(mine)), np.int8)
    for j, x in enumerate(mine):
        for v, d in x[7].items():
            dos[index[v], j] = min(d, 2)
    lrng = np.random.default_rng([seed, site, 77])
    dos[lrng.random(dos.shape) < missing] = -1
    rows = [(f"1:{p}:A:G", "1", int(p), "A", "G", (f"G{p % genes}",), "missense_variant", dos[i])
            for i, p in enumerate(lst)]
    return SiteVariants.from_rows(ped, rows)


@job("filter.bench.family")
def bench_family(ctx, params: dict, site=None) -> dict:
    """A whole ``filter`` job on a synthetic trio study (``synthetic_trio_site``); params: trios, variants, carried,
    seed, n_panel (a public gene list G0.. of that length for comphet), filter (the job's parameters), policy."""
    sv = synthetic_trio_site(int(params.get("seed", 1)), ctx.index, ctx.n, int(params["trios"]),
                             int(params["variants"]), int(params.get("carried", 400)))
    fp = dict(params["filter"])
    if "n_panel" in params:
        fp["genes"] = [f"G{i}" for i in range(int(params["n_panel"]))]
    p = FilterParams.from_dict(fp)
    got = measure(ctx, lambda: run_filter(ctx, p, sv, dict(params.get("policy", {}))))
    res = got.pop("result")
    got.update(candidates=len(res.get("rows", [])), trios=len(res.get("trios", [])), table=res.get("table"),
               stages=ctx.report()["stages"])
    return got


def measure(ctx, fn) -> dict:
    """Seconds, bytes sent, rounds of ``fn()`` and the chunk plans its filter job chose (``plans``: items,
    items per chunk, chunks, chunks in flight), recorded around ``filtering.job.pipeline_plan``."""
    st = ctx.transport.stats
    plans, real = [], filter_job.pipeline_plan

    def plan(items, *args, **kw):
        chunk, window = real(items, *args, **kw)
        plans.append({"items": items, "chunk": chunk, "chunks": -(-max(items, 1) // chunk), "window": window})
        return chunk, window

    filter_job.pipeline_plan = plan
    b0, r0, t0 = st.bytes_sent, ctx.rounds, time.perf_counter()
    try:
        out = fn()
    finally:
        filter_job.pipeline_plan = real
    return {"seconds": time.perf_counter() - t0, "bytes_sent": st.bytes_sent - b0, "rounds": ctx.rounds - r0,
            "plans": plans, "result": out}


@job("filter.bench.model")
def bench_model(ctx, params: dict, site=None) -> dict:
    """A whole ``filter`` job (all stages) on synthetic sites; params: variants, individuals, trio, seed, n_genes
    (a public gene list G0.. of that length is added to the filter parameters) and ``filter`` (the job's
    parameters)."""
    n_genes = int(params.get("n_genes", 1))
    sv = synthetic_site(int(params.get("seed", 1)), ctx.index, ctx.n, int(params["variants"]),
                        int(params.get("individuals", 100)), bool(params.get("trio", False)), n_genes)
    fp = dict(params["filter"])
    if "n_genes" in params:
        fp["genes"] = [f"G{i}" for i in range(n_genes)]
    p = FilterParams.from_dict(fp)
    got = measure(ctx, lambda: run_filter(ctx, p, sv, dict(params.get("policy", {}))))
    res = got.pop("result")
    got.update(candidates=len(res.get("rows", res.get("genes", []))), stages=ctx.report()["stages"])
    return got


@job("filter.bench.genes")
def bench_genes(ctx, params: dict, site=None) -> dict:
    """Gene-level operators on per-site count vectors: op = max (gene_max) or intersect (gene_all).

    params: genes G, patients (the study's affected individuals, split over the
    sites), bits (count width: counts are drawn below 2^bits, as Jagadeesh's
    2-bit demo), seed. Timed: the secure operator and the opening of its answer.
    """
    G, n = int(params["genes"]), int(params.get("patients", 3))
    rng = np.random.default_rng([int(params.get("seed", 1)), ctx.index])
    share = n // ctx.n + (1 if ctx.index < n % ctx.n else 0)
    if params["op"] == "max":
        cap = min(share, (1 << int(params.get("bits", 16))) - 1)
        local = rng.integers(0, cap + 1, G) if params.get("bits") else rng.binomial(share, 0.02, G)
        n_max = min(n, (1 << int(params["bits"])) - 1) if params.get("bits") else n
    else:
        local = (rng.random(G) < 0.5).astype(np.int64) * share
        n_max = n

    def run():
        x = ctx.inputs_sum(local.astype(np.int64), shape=(G,), frac=0)
        if params["op"] == "max":
            q, m = fm.gene_max(ctx, x, n_max)
            return int(q.sum())
        return int(fm.gene_all(ctx, x, n).sum())

    return measure(ctx, run)
