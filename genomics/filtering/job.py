"""The secure variant filtering job (rare-disease workload): candidate variants or genes shared across sites, nothing else.

It runs at every compute party (``@job("filter")``) on that site's own VCF/BCF,
PED and annotation. Stages, with what each opens (the ledger lists the labels):

1. local: read and pre-filter the site's rows (``filtering.local``); nothing leaves;
2. study metadata (kind 'public', to the compute parties only): each site's
   cohort sizes and ``min_cell_size``; a fresh job key agreed by all compute
   parties (``filter.job_key_contribution``); for family models the trios, found
   from keyed links (``filtering.trios``: ``filter.trio_requests``,
   ``filter.trio_answers``, ``filter.trios``), so that no PED row leaves its site;
3. secure filter: hashed tables, fingerprint alignment and the model's rule
   (``filtering.align``, ``filtering.models``); only masked values are opened;
4. reveal (``filtering.reveal``): the number of candidates per slot
   (``filter.candidate_slots``), their keyed fingerprints
   (``filter.candidate_fingerprints``), their text lengths and texts
   (``filter.candidate_text_bytes``, ``filter.candidate_texts``), all functions
   of the released candidates and the job key;
5. confirm: the rule re-evaluated exactly on the revealed keys
   (``filter.confirm``), so a fingerprint collision can never report a false
   candidate; counts of confirmed candidates where the strictest site's
   ``min_cell_size`` allows (``filter.counts``).
Gene-level models open only the qualifying genes (``filter.max_genes``,
``filter.top_genes``, ``filter.intersect_genes``, ``filter.diff_genes``) and
their counts (``filter.counts``).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from cipherome.mpc.jobs import job
from cipherome.mpc.ledger import DISCLOSED, PUBLIC
from cipherome.mpc.pipeline import pipeline
from cipherome.mpc.shares import Shared, concat, stack

from cipherome.genomics.filtering import models as fm
from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.align import OwnerTable, share_tables
from cipherome.genomics.filtering.features import COUNTS, allele_totals, cohort_counts, member_het
from cipherome.genomics.filtering.budget import BYTES_PER_TEST, pipeline_plan, site_budget
from cipherome.genomics.filtering.keys import (agree_job_key, cuckoo_geometry, cuckoo_hashes, cuckoo_table, hash_keys,
                                              lane_table, simple_table, suggest_table)
from cipherome.protocols.permute import private_permutations
from cipherome.genomics.filtering.local import PreFilter, SiteVariants, read_site
from cipherome.genomics.filtering.params import COHORT_MODELS, FilterParams
from cipherome.genomics.filtering.reveal import AnchorGroup, reveal_candidates
from cipherome.genomics.filtering.trios import Trio, find_trios
from cipherome.genomics.io.ploidy import ploidy_class
from cipherome.genomics.policy import min_sites, require_sites
from cipherome.genomics.io.variants import chrom_order, parse_key

__all__ = ["FilterSite", "filter_job", "run_filter", "load_site_variants", "sort_rows", "comphet_lane_table"]

log = logging.getLogger("cipherome.filter")


@dataclass
class FilterSite:
    """A site given as arrays (tests, benchmarks): its rows and its disclosure policy."""

    name: str
    variants: SiteVariants
    policy: dict = field(default_factory=dict)


def load_site_variants(site, p: FilterParams) -> SiteVariants:
    """The site's pre-filtered rows: from its [data] table (vcf, ped, optional annotation, region)."""
    if isinstance(site, FilterSite):
        return site.variants
    data = site.data
    for k in ("vcf", "ped"):
        if k not in data:
            raise InputError(f"site {site.name}: its config has no [data] entry {k!r}; filtering needs vcf = FILE "
                             "(VCF/BCF) and ped = FILE (PED) and optionally annotation = FILE (TSV)",
                             kind=f"its site config has no [data] entry {k!r} (filtering needs vcf and ped)")
    ann = site.path("annotation") if "annotation" in data else None
    pf = PreFilter.from_params(p.to_dict())
    return read_site(site.path("vcf"), site.path("ped"), ann, pf, region=data.get("region"))


def _allgather_json(ctx, doc, label: str) -> list:
    raw = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8).copy()
    return [json.loads(np.asarray(x, np.uint8).tobytes().decode()) for x in ctx.allgather(raw, label, kind=PUBLIC)]


def _text(sv: SiteVariants, row: int) -> str:
    return f"{sv.keys[row]}\t{','.join(sv.genes[row])}\t{sv.consequence[row]}"


def _parse_text(t: str) -> tuple[str, list[str], str]:
    key, genes, cons = (t.split("\t") + ["", ""])[:3]
    return key, [g for g in genes.split(",") if g], cons


def _reveal_per_child(ctx, children, r, texts_fn) -> list:
    """Open each trio's candidates (one anchor group per child table); distinct keys per trio."""
    with ctx.stage("reveal"):
        texts = reveal_candidates(ctx, [AnchorGroup([c], [rr], [tf]) for c, rr, tf in zip(children, r, texts_fn)])
    return [_distinct_candidates(lst) for lst in texts]


def _distinct_candidates(texts: list) -> list:
    """Revealed candidate texts -> sorted (key, (gene, consequence)) pairs, first text per key."""
    seen: dict = {}
    for x in texts:
        k, g, c = _parse_text(x)
        seen.setdefault(k, (g, c))
    return sorted(seen.items())


def sort_rows(rows: list[dict]) -> list[dict]:
    """Output rows in genome order (then model, family, gene)."""
    return sorted(rows, key=lambda r: (chrom_order(r["chrom"]), r["pos"], r["ref"], r["alt"], r.get("family", ""),
                                       r.get("gene", "")))


def _row(key: str, genes: list[str], cons: str, model: str, **extra) -> dict:
    c, p, ref, alt = parse_key(key)
    return {"chrom": c, "pos": p, "ref": ref, "alt": alt, "gene": ",".join(genes), "consequence": cons,
            "model": model, **extra}


def _geometry(p: FilterParams) -> tuple[int, int]:
    if p.table_size is not None and p.lanes is not None:
        return int(p.table_size), int(p.lanes)
    t, lanes = suggest_table(p.max_variants)
    return int(p.table_size or t), int(p.lanes or lanes)


def _owner_table(ctx, site: str, name: str, T: int, L: int, key: bytes | None, keys, mine: bool,
                 partition=None, buckets=None) -> OwnerTable:
    """An owner's table; at the owner, entries ``keys`` hashed and laid out (rows index ``keys``)."""
    t = OwnerTable(site, name, T, L)
    if mine:
        slots, fps = hash_keys(key, keys, T, partition, buckets)
        t.fp, t.rows = lane_table(slots, fps, T, L, name)
    return t


def _pipelined(ctx, items: list, chunk: int, window: int, run) -> tuple[list, list]:
    """``run(items[c0:c0 + chunk])`` -> (tables, bits) for every chunk, ``window`` chunks in flight
    (``mpc.pipeline``: their openings share rounds); returns the tables and bits of all chunks in order."""
    parts = [items[c0:c0 + chunk] for c0 in range(0, len(items), chunk)]
    tables, bits = [], []
    for tabs, got in pipeline(ctx, [lambda part=part: run(part) for part in parts], window):
        tables += tabs
        bits += got
    return tables, bits


# ----------------------------------------------------------------------------- cohort models
def _cohort_tables(ctx, p: FilterParams, sv: SiteVariants, key: bytes) -> tuple[list, list]:
    """Every site's anchor and matched tables: one T x L lane table for both when the job gives table_size and
    lanes, otherwise a cuckoo table (anchors) and a simple-hashing table (matched), sized from max_variants."""
    if p.table_size is not None and p.lanes is not None:
        T, L = _geometry(p)
        tables = [_owner_table(ctx, s, f"site {s}", T, L, key, sv.keys, s == ctx.me) for s in ctx.parties]
        return tables, tables
    B, Ls = cuckoo_geometry(p.max_variants)
    B, Ls = int(p.table_size or B), int(p.lanes or Ls)
    cand, fps = cuckoo_hashes(key, sv.keys, B)
    anchors, matched = [], []
    for s in ctx.parties:
        a, m = OwnerTable(s, f"site {s}", B, 1, cuckoo=True), OwnerTable(s, f"site {s}", B, Ls)
        if s == ctx.me:
            a.fp, a.rows = cuckoo_table(cand, fps, B, a.name)
            m.fp, m.rows = simple_table(cand, fps, B, Ls, m.name)
        anchors.append(a)
        matched.append(m)
    return anchors, matched


def _cohort_hashed(ctx, p: FilterParams, sv: SiteVariants, rule: fm.LinearRule, key: bytes,
                   budget: tuple) -> list[str]:
    anchors, matched = _cohort_tables(ctx, p, sv, key)
    same = anchors is matched
    share_tables(ctx, anchors if same else anchors + matched)
    T, La, Lm, C = anchors[0].T, anchors[0].L, matched[0].L, rule.forms
    counts = cohort_counts(sv)
    contrib = counts @ rule.coeff
    own = contrib + rule.constants(sv.pclass)

    def lanes(tab, values, empty):
        out = np.zeros((T, tab.L, C), np.int64)
        out[..., 0] = empty
        occ = tab.rows >= 0
        out[occ] = values[tab.rows[occ]]
        return out

    me = ctx.index
    ctab = lanes(matched[me], contrib, 0)
    otab = lanes(anchors[me], own, -rule.kill)
    csh = [ctx.input(s, ctab if s == ctx.me else None, shape=(T, Lm, C), frac=0) for s in ctx.parties]
    osh = [ctx.input(s, otab if s == ctx.me else None, shape=(T, La, C), frac=0) for s in ctx.parties[:-1]]
    last = ctx.parties[-1]
    ok = np.all(otab >= 0, axis=2).astype(np.int64) if last == ctx.me else None
    last_ok = ctx.input(last, ok, shape=(T, La), frac=0)
    n = len(anchors)
    tests = (n * (n - 1) // 2) * La * Lm if same else n * (n - 1) * La * Lm
    per_slot = tests * BYTES_PER_TEST + 16 * n * (La + Lm) * C * 8
    chunk, window = pipeline_plan(T, per_slot, 8 * n * T * (La + Lm) * (C + 3), budget[0], budget[1],
                                  "lower --max-variants or --lanes (the table's geometry)",
                                  fm.cohort_rounds(rule, n, max(La, Lm)), products=True)

    def run(slots: list) -> tuple[list, list]:  # one chunk of slots: constant rounds, memory within the budget
        sl = slice(slots[0], slots[-1] + 1)
        a_part = [t.part(sl) for t in anchors]
        m_part = a_part if same else [t.part(sl) for t in matched]
        return [None], [fm.cohort_anchor_bits(ctx, a_part, m_part, [x[sl] for x in csh], [x[sl] for x in osh],
                                              last_ok[sl], rule)]

    _, got = _pipelined(ctx, list(range(T)), chunk, window, run)
    r = [x[0] if len(x) == 1 else concat(list(x), axis=0) for x in zip(*got)]
    log.info("filter %s: %d slots x %d anchor lanes x %d lanes in %d chunk(s), %d in flight", p.model, T, La, Lm,
             len(got), window)
    tables = anchors
    texts_fn = [(lambda row: _text(sv, row)) if s == ctx.me else None for s in ctx.parties]
    with ctx.stage("reveal"):
        (texts,) = reveal_candidates(ctx, [AnchorGroup(tables, r, texts_fn)])
    return texts


def _cohort(ctx, p: FilterParams, sv: SiteVariants, cohort: fm.Cohort, mc: int, key: bytes, budget: tuple) -> dict:
    rule = fm.cohort_rule(p.model, cohort, p.min_affected, p.max_unaffected, p.max_cohort_af)
    with ctx.stage("secure_filter"):
        texts = _cohort_hashed(ctx, p, sv, rule, key, budget)
    cands = {}
    for t in texts:
        k, g, c = _parse_text(t)
        cands.setdefault(k, (g, c))
    keys = sorted(cands)
    rows = []
    if keys:
        with ctx.stage("confirm"):
            K = len(keys)
            idx = sv.index()
            at = np.array([idx.get(k, -1) for k in keys], dtype=np.int64)
            local = np.zeros((K, len(COUNTS)), np.int64)
            if (at >= 0).any():
                local[at >= 0] = cohort_counts(sv, at[at >= 0])
            total = ctx.inputs_sum(local, shape=(K, len(COUNTS)), frac=0)
            pcl = ploidy_class(np.array([parse_key(k)[0] for k in keys], dtype=object))
            ok = ctx.open(fm.rule_on_counts(total, pcl, rule), "filter.confirm").astype(bool)
            keep = np.flatnonzero(ok)
            if keep.size:
                ci = {n: j for j, n in enumerate(COUNTS)}
                tot = np.array([cohort.totals[int(c)] for c in pcl[keep]], np.int64)
                sub = total[keep]
                cols = [sub[:, ci[rule.release[0]]], sub[:, ci[rule.release[1]]], sub[:, ci["ac"]],
                        (-sub[:, ci["miss"]]) + tot]
                vals = fm.release_counts(ctx, stack(cols, axis=1), mc, 2 * cohort.n_all, "filter.counts")
                names = ("AFF_" + ("CARRIERS" if rule.release[0] == "ca" else "HOM" if rule.release[0] == "ha"
                                   else "XGENO"), "UNAFF_" + ("CARRIERS" if rule.release[1] == "cu" else "HOM"
                                                              if rule.release[1] == "hu" else "XGENO"), "AC", "AN")
                for j, kk in enumerate(keep):
                    g, c = cands[keys[kk]]
                    counts = {n: (int(v) if v >= 0 else None) for n, v in zip(names, vals[j])}
                    rows.append(_row(keys[kk], g, c, p.model, **counts))
    return {"rows": sort_rows(rows), "dropped_by_confirmation": len(keys) - len(rows)}


# ----------------------------------------------------------------------------- family models
def _calls(sv: SiteVariants, idx: dict, keys: list[str], col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dosage (0 where absent), chromosome class and presence of individual ``col`` at public keys."""
    at = np.array([idx.get(k, -1) for k in keys], dtype=np.int64)
    ok = at >= 0
    g = np.zeros(at.size, np.int64)
    pc = np.zeros(at.size, np.int8)
    g[ok] = sv.dosage[at[ok], col]
    pc[ok] = sv.pclass[at[ok]]
    return g, pc, ok


def _member_values(ctx, trios: list[Trio], who: str, fn, K: list[int]) -> Shared:
    """Concatenated over trios: each (K_t,) int vector input by the site of member ``who`` (fn(trio, k) at it)."""
    parts = []
    for t, k in zip(trios, K):
        si, col = getattr(t, who)
        site = ctx.parties[si]
        parts.append(ctx.input(site, fn(t, col) if site == ctx.me else None, shape=(k,), frac=0))
    return concat(parts)


def _candidate_classes(ctx, sv: SiteVariants, trios: list[Trio], cands: list, classify, wanted) -> list[Shared]:
    """For each (member, kind) of ``wanted``: the 0/1 class ``kind`` of that member at every revealed candidate.

    ``cands[t]``: trio t's candidates ((key, ...), ...); ``classify(kind, dosage, pclass, present, trio)``
    gives the class from the member's calls at the candidates' keys, evaluated at the member's site
    only; the vectors are concatenated over trios (``_member_values``), in the order of ``wanted``.
    """
    K = [len(c) for c in cands]
    idx = sv.index()

    def values(who: str, kind: str) -> Shared:
        def f(t, col):
            g, pc, ok = _calls(sv, idx, [k for k, _ in cands[trios.index(t)]], col)
            return classify(kind, g, pc, ok, t).astype(np.int64)
        return _member_values(ctx, trios, who, f, K)

    return [values(who, kind) for who, kind in wanted]


def _denovo_class(kind: str, g: np.ndarray, pc: np.ndarray, ok: np.ndarray, t: Trio) -> np.ndarray:
    """de novo classes: "het" the child is heterozygous for its ploidy (and has a call), "pres" a call is present."""
    return member_het(g, t.child_sex, pc) & ok if kind == "het" else g != 0


def _comphet_class(kind: str, g: np.ndarray, pc: np.ndarray, ok: np.ndarray, t: Trio) -> np.ndarray:
    """compound-het classes: "het" one ALT copy, "car" at least one, "pres" any non-reference call."""
    return {"het": g == 1, "car": g >= 1, "pres": g != 0}[kind]


def _family_geometry(p: FilterParams) -> tuple[int, int]:
    """(bins, parent lanes) of the de novo tables."""
    bins, lanes = cuckoo_geometry(p.max_member_variants or p.max_variants)
    return int(p.table_size or bins), int(p.lanes or lanes)


def _trio_tables(ctx, t: Trio, hashes: tuple, B: int, Ls: int, chosen) -> tuple:
    """The trio's tables: the child's cuckoo table (one lane per bin), each parent's simple table (Ls lanes).

    ``hashes``: this site's (candidate bins, fingerprints) of its entries (variant rows, or (row, gene)
    pairs); ``chosen(who, col)``: (entries,) bool, the entries listed in member ``who``'s table. ``rows``
    of a table index the entries."""
    cand, fps = hashes
    out = []
    for who in ("child", "father", "mother"):
        si, col = getattr(t, who)
        tab = OwnerTable(ctx.parties[si], f"{who} of family {t.fid}", B, 1 if who == "child" else Ls,
                         cuckoo=who == "child")
        if tab.mine(ctx):
            ent = np.flatnonzero(chosen(who, col))
            if who == "child":
                tab.fp, at = cuckoo_table(cand[ent], fps[ent], B, tab.name)
            else:
                tab.fp, at = simple_table(cand[ent], fps[ent], B, Ls, tab.name)
            tab.rows = np.where(at >= 0, ent[np.maximum(at, 0)], -1) if ent.size else at
        out.append(tab)
    return tuple(out)


def _denovo_tables(ctx, sv: SiteVariants, t: Trio, hashes: tuple, B: int, Ls: int) -> tuple:
    """The child's cuckoo table of its heterozygous rows, each parent's simple table of its rows not called
    hom-ref; ``rows`` index the site's variant rows. ``hashes``: this site's (candidate bins, fingerprints)."""
    def chosen(who, col):
        g = sv.dosage[:, col]
        return member_het(g, t.child_sex, sv.pclass) if who == "child" else g != 0
    return _trio_tables(ctx, t, hashes, B, Ls, chosen)


def _denovo(ctx, p: FilterParams, sv: SiteVariants, trios: list[Trio], key: bytes, budget: tuple) -> dict:
    """De novo candidates: trios in chunks that fit the memory budget, pipelined (``_pipelined``); per chunk one
    batched matching and one comparison; only the child tables and their 0/1 results stay for the reveal."""
    B, Ls = _family_geometry(p)
    per_trio = 2 * B * Ls * BYTES_PER_TEST
    fixed = len(trios) * B * 64 + B * 4 * 8 * 3
    chunk, window = pipeline_plan(len(trios), per_trio, fixed, budget[0], budget[1],
                                  "lower --max-member-variants (the public bound on one family member's variants)",
                                  fm.denovo_rounds(Ls))
    hs = cuckoo_hashes(key, sv.keys, B)
    texts_fn = [(lambda row: _text(sv, row)) if ctx.parties[t.child[0]] == ctx.me else None for t in trios]

    def run(part: list[Trio]) -> tuple[list, list]:
        tabs, own = [], []
        for t in part:
            tr = _denovo_tables(ctx, sv, t, hs, B, Ls)
            tabs.append(tr)
            o = -(tr[0].rows < 0).astype(np.int64) if tr[0].mine(ctx) else None
            own.append(ctx.input(tr[0].site, o, shape=(B, 1), frac=0))
        share_tables(ctx, [x for tr in tabs for x in tr])
        return [tr[0] for tr in tabs], fm.denovo_anchor_bits(ctx, tabs, own)

    with ctx.stage("secure_filter"):
        children, r = _pipelined(ctx, trios, chunk, window, run)
        log.info("filter denovo: %d trios in %d chunk(s) of %d, %d in flight, %d bins x %d parent lanes", len(trios),
                 -(-len(trios) // chunk), chunk, window, B, Ls)
    cands = _reveal_per_child(ctx, children, r, texts_fn)
    rows = []
    if any(cands):
        with ctx.stage("confirm"):
            het, fpres, mpres = _candidate_classes(ctx, sv, trios, cands, _denovo_class,
                                                   [("child", "het"), ("father", "pres"), ("mother", "pres")])
            ok = ctx.open(fm.denovo_on_classes(het, fpres, mpres), "filter.confirm").astype(bool)
            pos = 0
            for t, lst in zip(trios, cands):
                for j, (k, (g, c)) in enumerate(lst):
                    if ok[pos + j]:
                        rows.append(_row(k, g, c, "denovo", family=t.fid))
                pos += len(lst)
    return {"rows": sort_rows(rows), "dropped_by_confirmation": sum(len(c) for c in cands) - len(rows)}


def _gene_entries(sv: SiteVariants, rows: np.ndarray, gidx: dict) -> tuple[np.ndarray, np.ndarray]:
    """(row, gene index) for each listed gene of each row (a row in two listed genes appears twice)."""
    er, eg = [], []
    for r in rows:
        for g in dict.fromkeys(sv.genes[r]):
            j = gidx.get(g)
            if j is not None:
                er.append(r)
                eg.append(j)
    return np.array(er, np.int64), np.array(eg, np.int64)


def comphet_lane_table(p: FilterParams) -> bool:
    """comphet on the gene-partitioned lane table (``lanes`` or ``gene_buckets`` given without ``table_size``),
    else on cuckoo against simple hashing (the default)."""
    return p.table_size is None and (p.lanes is not None or int(p.gene_buckets) > 1)


def _comphet_gene_table(ctx, p: FilterParams, sv: SiteVariants, trios: list[Trio], key: bytes, budget: tuple,
                        gidx: dict) -> tuple[list, list]:
    """Children's gene-partitioned tables and 0/1 results: T = G b slots of L lanes, 2 T L^2 tests per trio."""
    G, b = len(gidx), int(p.gene_buckets)
    T, L = G * b, int(p.lanes or 4)
    me = ctx.index
    per_trio = 2 * T * (L * L + 2 * L) * BYTES_PER_TEST
    chunk, window = pipeline_plan(len(trios), per_trio, len(trios) * T * L * 64, budget[0], budget[1],
                                  "use a shorter gene list, fewer --gene-buckets or --lanes", fm.comphet_rounds(L, b),
                                  products=True)

    def run(part: list[Trio]) -> tuple[list, list]:
        tabs, cars, own = [], [], []
        for t in part:
            row, car = [], []
            for who in ("child", "father", "mother"):
                si, col = getattr(t, who)
                mine = si == me
                tab = OwnerTable(ctx.parties[si], f"{who} of family {t.fid}", T, L)
                if mine:
                    g = sv.dosage[:, col]
                    sel = (g == 1) if who == "child" else (g != 0)
                    er, eg = _gene_entries(sv, np.flatnonzero(sel), gidx)
                    slots, fps = hash_keys(key, sv.keys[er] if er.size else [], T, eg, b)
                    tab.fp, ent = lane_table(slots, fps, T, L, tab.name)
                    tab.rows = np.where(ent >= 0, er[np.maximum(ent, 0)] if er.size else -1, -1)
                row.append(tab)
                if who != "child":
                    v = None
                    if mine:
                        v = np.zeros((T, L, 1), np.int64)
                        occ = tab.rows >= 0
                        v[occ, 0] = sv.dosage[tab.rows[occ], col] >= 1
                    car.append(ctx.input(tab.site, v, shape=(T, L, 1), frac=0))
            tabs.append(tuple(row))
            cars.append(tuple(car))
            child = row[0]
            o = -(L + 2) * (child.rows < 0).astype(np.int64) if child.mine(ctx) else None
            own.append(ctx.input(child.site, o, shape=(T, L), frac=0))
        share_tables(ctx, [x for trio in tabs for x in trio])
        return [tr[0] for tr in tabs], [x[0] for x in fm.comphet_anchor_bits(ctx, tabs, cars, own, G, b)]

    return _pipelined(ctx, trios, chunk, window, run)


def _comphet_cuckoo(ctx, p: FilterParams, sv: SiteVariants, trios: list[Trio], key: bytes, budget: tuple,
                    gidx: dict) -> tuple[list, list]:
    """Children's cuckoo tables of (variant, listed gene) entries and their 0/1 results (``fm.comphet_cuckoo_bits``).

    An entry is a row and one of its listed genes (at this site's annotation), hashed as
    HMAC(job key, "GENE<tab>chrom:pos:ref:alt"); the child lists its heterozygous entries, a parent its
    entries not called hom-ref. Tables are sized by ``_family_geometry`` from max_member_variants (a public
    bound on one member's listed entries). The child site privately sorts its bins by gene (``pi1``) and
    marks the gene boundaries (``pi2``, u) for the per-gene sums."""
    B, Ls = _family_geometry(p)
    G = len(gidx)
    er, eg = _gene_entries(sv, np.arange(len(sv)), gidx)
    names = list(gidx)
    hs = cuckoo_hashes(key, [f"{names[g]}\t{sv.keys[r]}" for r, g in zip(er.tolist(), eg.tolist())], B)
    per_trio = (2 * B * Ls + 4 * B) * BYTES_PER_TEST
    chunk, window = pipeline_plan(len(trios), per_trio, len(trios) * B * 64, budget[0], budget[1],
                                  "lower --max-member-variants (the public bound on one family member's listed "
                                  "variants)", fm.comphet_cuckoo_rounds(Ls, B), products=True)

    def chosen(who, col):
        g = sv.dosage[er, col]
        return g == 1 if who == "child" else g != 0

    def run(part: list[Trio]) -> tuple[list, list]:
        tabs, cars, perms, groups = [], [], [], []
        for t in part:
            tr = _trio_tables(ctx, t, hs, B, Ls, chosen)
            car = []
            for who, tab in zip(("father", "mother"), tr[1:]):
                v = None
                if tab.mine(ctx):
                    v = np.zeros((B, Ls, 1), np.int64)
                    occ = tab.rows >= 0
                    v[occ, 0] = sv.dosage[er[tab.rows[occ]], getattr(t, who)[1]] >= 1
                car.append(ctx.input(tab.site, v, shape=(B, Ls, 1), frac=0))
            child = tr[0]
            pi1 = pi2 = u = None
            if child.mine(ctx):
                pi1, pi2, u = _gene_runs(np.where(child.rows[:, 0] >= 0, eg[np.maximum(child.rows[:, 0], 0)], -1), G)
                child.rows = np.where(child.rows >= 0, er[np.maximum(child.rows, 0)], -1)
            perms += [(child.site, pi1, B), (child.site, pi2, B + 1)]
            groups.append(ctx.input(child.site, u, shape=(B,), frac=0))
            tabs.append(tr)
            cars.append(tuple(car))
        pp = private_permutations(ctx, perms)
        share_tables(ctx, [x for tr in tabs for x in tr])
        bits = fm.comphet_cuckoo_bits(ctx, tabs, cars, list(zip(pp[0::2], pp[1::2])), groups)
        for x in pp:
            x.free()
        return [tr[0] for tr in tabs], bits

    got = _pipelined(ctx, trios, chunk, window, run)
    log.info("filter comphet: %d trios in %d chunk(s) of %d, %d in flight, %d bins x %d parent lanes", len(trios),
             -(-len(trios) // chunk), chunk, window, B, Ls)
    return got


def _gene_runs(gene: np.ndarray, genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The child site's private sort of its B bins (``gene``: gene index per bin, -1 empty): pi1 (bins by gene,
    empty bins last), pi2 (B + 1 prefix positions: the starts of the J gene runs and the end K of the occupied
    bins first, the other positions after) and u = [j < J] (B,), as ``fm.comphet_cuckoo_bits`` takes them."""
    B = gene.size
    key = np.where(gene >= 0, gene, genes)
    pi1 = np.lexsort((np.arange(B), key))
    gs = key[pi1]
    K = int((gene >= 0).sum())
    starts = [0] + [i for i in range(1, K) if gs[i] != gs[i - 1]] if K else []
    bound = starts + [K]
    rest = np.setdiff1d(np.arange(B + 1), bound)
    pi2 = np.concatenate([np.array(bound, np.int64), rest])
    u = (np.arange(B) < len(starts)).astype(np.int64)
    return pi1.astype(np.int64), pi2, u


def _comphet(ctx, p: FilterParams, sv: SiteVariants, trios: list[Trio], key: bytes, budget: tuple) -> dict:
    genes = list(p.genes)
    gidx = {g: i for i, g in enumerate(genes)}
    texts_fn = [(lambda row: _text(sv, row)) if ctx.parties[t.child[0]] == ctx.me else None for t in trios]
    with ctx.stage("secure_filter"):
        build = _comphet_gene_table if comphet_lane_table(p) else _comphet_cuckoo
        children, r = build(ctx, p, sv, trios, key, budget, gidx)
    cands = _reveal_per_child(ctx, children, r, texts_fn)
    rows = []
    if any(cands):
        with ctx.stage("confirm"):
            het, fc, fpres, mc, mpres = _candidate_classes(
                ctx, sv, trios, cands, _comphet_class,
                [("child", "het"), ("father", "car"), ("father", "pres"), ("mother", "car"), ("mother", "pres")])
            pat, mat = fm.comphet_on_classes(het, fc, fpres, mc, mpres)
            got = ctx.disclose([pat.data, mat.data], "filter.confirm")
            pat_o, mat_o = got[0].view(np.int64).astype(bool), got[1].view(np.int64).astype(bool)
            pos = 0
            for t, lst in zip(trios, cands):
                by_gene: dict[str, dict] = {}
                for j, (k, (g, c)) in enumerate(lst):
                    for gene in g:
                        if gene in gidx:
                            d = by_gene.setdefault(gene, {"pat": [], "mat": []})
                            if pat_o[pos + j]:
                                d["pat"].append((k, g, c))
                            if mat_o[pos + j]:
                                d["mat"].append((k, g, c))
                for gene, d in by_gene.items():
                    if d["pat"] and d["mat"]:
                        for side in ("pat", "mat"):
                            for k, g, c in d[side]:
                                rows.append(_row(k, [gene], c, "comphet", family=t.fid,
                                                 inheritance="paternal" if side == "pat" else "maternal"))
                pos += len(lst)
    return {"rows": sort_rows(rows), "dropped_by_confirmation": None}


# ----------------------------------------------------------------------------- gene-level models
def carried_genes(sv: SiteVariants, genes: list[str], individuals: np.ndarray) -> np.ndarray:
    """(len(individuals), G) int64: 1 where the individual carries (dosage >= 1) a pre-filtered variant of the gene."""
    gidx = {g: i for i, g in enumerate(genes)}
    out = np.zeros((len(individuals), len(genes)), np.int64)
    if not len(individuals):
        return out
    car = sv.dosage[:, individuals] >= 1
    for r in range(len(sv)):
        js = [gidx[g] for g in sv.genes[r] if g in gidx]
        if js and car[r].any():
            out[np.ix_(np.flatnonzero(car[r]), js)] = 1
    return out


def _gene_level(ctx, p: FilterParams, sv: SiteVariants, cohort: fm.Cohort, trios: list[Trio], mc: int) -> dict:
    genes = list(p.genes)
    G = len(genes)
    out = []
    with ctx.stage("secure_filter"):
        if p.model == "gene-diff":
            if not trios:
                return {"genes": []}
            K = [G] * len(trios)
            sets = {}

            def member(t, col):
                if col not in sets:
                    sets[col] = carried_genes(sv, genes, np.array([col]))[0]
                return sets[col]

            c = _member_values(ctx, trios, "child", member, K)
            f = _member_values(ctx, trios, "father", member, K)
            m = _member_values(ctx, trios, "mother", member, K)
            q = fm.gene_diff(ctx, c, f, m).reshape(len(trios), G) if trios else np.zeros((0, G), bool)
            for t, row in zip(trios, q):
                out += [{"gene": genes[j], "model": p.model, "family": t.fid} for j in np.flatnonzero(row)]
            return {"genes": out}
        aff = np.flatnonzero(sv.ped.affected == 1)
        local = carried_genes(sv, genes, aff).sum(axis=0)
        x = ctx.inputs_sum(local, shape=(G,), frac=0)
        if p.model == "gene-intersect":
            q = fm.gene_all(ctx, x, cohort.n_aff)
            cnt = None if not q.any() else (cohort.n_aff if cohort.n_aff >= mc or mc <= 1 else None)
            out = [{"gene": genes[j], "model": p.model, "count": cnt} for j in np.flatnonzero(q)]
            return {"genes": out}
        found = ([fm.gene_max(ctx, x, cohort.n_aff)] if p.model == "max-gene"
                 else fm.gene_top(ctx, x, cohort.n_aff, int(p.top)))
        found = [(q, m) for q, m in found if q.any()]
        if found:
            ms = stack([m.reshape(1) for _, m in found]).reshape(len(found))
            vals = fm.release_counts(ctx, ms, mc, cohort.n_all, "filter.counts")
            rank = 1
            for (q, _), v in zip(found, vals):
                for j in np.flatnonzero(q):
                    out.append({"gene": genes[j], "model": p.model, "count": int(v) if v >= 0 else None,
                                "rank": rank})
                rank += int(q.sum())
    return {"genes": out}


# ----------------------------------------------------------------------------- the job
def run_filter(ctx, p: FilterParams, sv: SiteVariants, policy: dict) -> dict:
    """The filtering job at one compute party; every party returns the same opened result."""
    t0 = time.perf_counter()
    family = p.model in ("denovo", "comphet", "gene-diff")
    with ctx.stage("metadata"):
        doc = {"min_cell_size": int(policy.get("min_cell_size", 0) or 0), "min_sites": min_sites(policy),
               "n_aff": int((sv.ped.affected == 1).sum()), "n_unaff": int((sv.ped.affected == 0).sum()),
               "n_all": len(sv.ped), "totals": {str(k): v for k, v in allele_totals(sv.ped.sex).items()},
               "budget": site_budget(policy)}
        docs = _allgather_json(ctx, doc, "filter.study_metadata")
        require_sites(ctx.n, [int(d["min_sites"]) for d in docs], "filter")
        mc = max(d["min_cell_size"] for d in docs)
        cohort = fm.Cohort(sum(d["n_aff"] for d in docs), sum(d["n_unaff"] for d in docs),
                           sum(d["n_all"] for d in docs),
                           {int(k): sum(d["totals"][k] for d in docs) for k in docs[0]["totals"]})
        low = min(range(len(docs)), key=lambda i: docs[i]["budget"])
        budget = (int(docs[low]["budget"]), ctx.parties[low])
        key = agree_job_key(ctx) if family or p.model in COHORT_MODELS else None
        trios = find_trios(ctx, key, sv.ped, [d["n_all"] for d in docs]) if family else []
    log.info("filter %s: %d local variant rows, %d individuals in the study, %d trios", p.model, len(sv),
             cohort.n_all, len(trios))
    if p.model in COHORT_MODELS:
        res = _cohort(ctx, p, sv, cohort, mc, key, budget)
    elif p.model == "denovo":
        res = _denovo(ctx, p, sv, trios, key, budget) if trios else {"rows": [], "dropped_by_confirmation": 0}
    elif p.model == "comphet":
        res = _comphet(ctx, p, sv, trios, key, budget) if trios else {"rows": [], "dropped_by_confirmation": 0}
    else:
        res = _gene_level(ctx, p, sv, cohort, trios, mc)
    res.update({"model": p.model, "min_cell_size": mc, "n_individuals": cohort.n_all, "n_affected": cohort.n_aff,
                "trios": [t.fid for t in trios], "params": p.to_dict(), "seconds": time.perf_counter() - t0})
    notes = [f"family {t.fid}: the {' and '.join(dict.fromkeys(r for r, _ in t.copies))} genotyped at more than one "
             "site; the copy at the first of them in the study's order is used (sites in the sites' logs)"
             for t in trios if t.copies]
    if notes:
        res["notes"] = notes
    if p.model in COHORT_MODELS and p.table_size is not None and p.lanes is not None:
        res["table"] = dict(zip(("slots", "lanes"), _geometry(p)))
    elif p.model in COHORT_MODELS:
        res["table"] = dict(zip(("bins", "lanes"), cuckoo_geometry(p.max_variants)))
    elif p.model == "denovo" or (p.model == "comphet" and not comphet_lane_table(p)):
        res["table"] = dict(zip(("bins", "parent_lanes"), _family_geometry(p)))
    res.get("params", {}).pop("genes", None)
    if ctx.is_lead:  # the lead returns the result to the submitter
        ctx.ledger.record("filter.results", DISCLOSED, ["submitter"], len(res.get("rows", res.get("genes", []))))
    return res


@job("filter")
def filter_job(ctx, params: dict, site) -> dict:
    """Registered job: parameters from the submitter, files from the site's config (see the module docstring)."""
    try:
        p = FilterParams.from_dict(dict(params))
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid filter parameters: {exc}", kind=f"invalid filter parameters: {exc}") from None
    sv = load_site_variants(site, p)
    return run_filter(ctx, p, sv, dict(getattr(site, "policy", {}) or {}))
