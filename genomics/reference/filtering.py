"""Plaintext twins of every filtering model: the same answers computed on the pooled data of all sites, for tests.

The twin pools the sites' pre-filtered rows (``filtering.local``) into one genotype
column per variant over every individual of the study (a variant absent at a site
is homozygous reference there) and applies each model's definition directly,
individual by individual, without hashing, tables or counts per site. The secure
job must give exactly these rows and genes.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from cipherome.genomics.filtering.local import SiteVariants, sample_ploidy
from cipherome.genomics.io.ploidy import AUTOSOMAL, CHR_X, CHR_Y, ploidy_class
from cipherome.genomics.io.variants import chrom_order, parse_key

__all__ = ["Pooled", "pool_sites", "reference_filter"]


@dataclass
class Pooled:
    """All individuals of the study (site, col, fid, iid, father, mother, sex, affected) and every variant.

    ``geno[key]``: (N,) int64 dosage over all individuals (absent at a site: 0);
    ``annot[key][site]``: (genes, consequence) as that site's rows give them.
    """

    site: np.ndarray
    col: np.ndarray
    fid: list
    iid: list
    father: list
    mother: list
    sex: np.ndarray
    affected: np.ndarray
    geno: dict
    annot: dict


def pool_sites(sites: list[SiteVariants]) -> Pooled:
    site, col, fid, iid, fa, mo, sex, aff = [], [], [], [], [], [], [], []
    for s, sv in enumerate(sites):
        for c in range(len(sv.ped)):
            site.append(s)
            col.append(c)
            fid.append(str(sv.ped.fid[c]))
            iid.append(str(sv.ped.iid[c]))
            fa.append(str(sv.ped.father[c]))
            mo.append(str(sv.ped.mother[c]))
            sex.append(int(sv.ped.sex[c]))
            aff.append(int(sv.ped.affected[c]))
    site, col = np.array(site), np.array(col)
    geno, annot = {}, {}
    for s, sv in enumerate(sites):
        cols = np.flatnonzero(site == s)
        for r, k in enumerate(sv.keys):
            g = geno.setdefault(k, np.zeros(len(site), np.int64))
            g[cols] = sv.dosage[r]
            annot.setdefault(k, {})[s] = (list(sv.genes[r]), str(sv.consequence[r]))
    return Pooled(site, col, fid, iid, fa, mo, np.array(sex), np.array(aff), geno, annot)


def _row(key, genes, cons, model, **extra) -> dict:
    c, p, r, a = parse_key(key)
    return {"chrom": c, "pos": p, "ref": r, "alt": a, "gene": ",".join(genes), "consequence": cons, "model": model,
            **extra}


def _released(c: int, mc: int):
    return c if (mc <= 1 or c == 0 or c >= mc) else None


def _cohort(P: Pooled, model: str, k, u: int, t, mc: int) -> list[dict]:
    aff, una = P.affected == 1, P.affected == 0
    n_aff = int(aff.sum())
    if model == "dominant":
        k, u = (n_aff if k is None else k), 0
    elif model in ("recessive", "xlinked"):
        k = n_aff if k is None else k
    elif k is None:
        k = 1
    t = None if t is None else Fraction(str(t)).limit_denominator(1 << 20)
    male = P.sex == 1
    rows = []
    for key, g in P.geno.items():
        chrom = parse_key(key)[0]
        pc = int(ploidy_class(np.array([chrom], dtype=object))[0])
        car, hom = g >= 1, g == 2
        if model in ("carrier", "dominant"):
            geno = car
            names = ("AFF_CARRIERS", "UNAFF_CARRIERS")
        elif model == "recessive":
            if pc != AUTOSOMAL:
                continue
            geno = hom
            names = ("AFF_HOM", "UNAFF_HOM")
        else:
            if pc != CHR_X:
                continue
            geno = np.where(male, car, hom)
            names = ("AFF_XGENO", "UNAFF_XGENO")
        a, un = int(geno[aff].sum()), int(geno[una].sum())
        pl = sample_ploidy(pc, P.sex)
        called = g >= 0
        an = int(pl[called].sum())
        ac = int(np.where(pl == 2, np.maximum(g, 0), np.where(pl == 1, (g >= 1), 0))[called].sum())
        if a < k or un > u:
            continue
        if t is not None and t < 1 and ac * t.denominator > t.numerator * an:
            continue
        first = min(P.annot[key])
        genes, cons = P.annot[key][first]
        rows.append(_row(key, genes, cons, model, **{names[0]: _released(a, mc), names[1]: _released(un, mc),
                                                       "AC": _released(ac, mc), "AN": _released(an, mc)}))
    return rows


def _trios(P: Pooled) -> list[tuple]:
    where: dict = {}  # an individual at several sites: the first site's copy (the secure job's public rule)
    for j, (f, i) in enumerate(zip(P.fid, P.iid)):
        where.setdefault((f, i), j)
    out = []
    for key in sorted(where):
        j = where[key]
        if P.affected[j] != 1:
            continue
        f, m = where.get((P.fid[j], P.father[j])), where.get((P.fid[j], P.mother[j]))
        if f is not None and m is not None:
            out.append((P.fid[j], j, f, m))
    return out


def _denovo(P: Pooled) -> list[dict]:
    rows = []
    for fid, c, f, m in _trios(P):
        for key, g in P.geno.items():
            pc = int(ploidy_class(np.array([parse_key(key)[0]], dtype=object))[0])
            het = g[c] == 1 or (P.sex[c] == 1 and pc in (CHR_X, CHR_Y) and g[c] >= 1)
            if het and g[f] == 0 and g[m] == 0:
                genes, cons = P.annot[key][int(P.site[c])]
                rows.append(_row(key, genes, cons, "denovo", family=fid))
    return rows


def _comphet(P: Pooled, gene_list: list[str]) -> list[dict]:
    listed = set(gene_list)
    rows = []
    for fid, c, f, m in _trios(P):
        by_gene: dict = {}
        for key, g in P.geno.items():
            if g[c] != 1:
                continue
            pat = g[f] >= 1 and g[m] == 0
            mat = g[m] >= 1 and g[f] == 0
            if not (pat or mat):
                continue
            genes, cons = P.annot[key][int(P.site[c])]
            for gene in dict.fromkeys(genes):
                if gene in listed:
                    by_gene.setdefault(gene, {"pat": [], "mat": []})["pat" if pat else "mat"].append((key, cons))
        for gene, d in by_gene.items():
            if d["pat"] and d["mat"]:
                for side in ("pat", "mat"):
                    for key, cons in d[side]:
                        rows.append(_row(key, [gene], cons, "comphet", family=fid,
                                         inheritance="paternal" if side == "pat" else "maternal"))
    return rows


def _gene_sets(P: Pooled, gene_list: list[str]) -> np.ndarray:
    """(N, G) bool: individual j carries a variant of gene g (genes from j's own site's rows)."""
    gidx = {g: i for i, g in enumerate(gene_list)}
    out = np.zeros((len(P.site), len(gene_list)), bool)
    for key, g in P.geno.items():
        for j in np.flatnonzero(g >= 1):
            genes, _ = P.annot[key].get(int(P.site[j]), ([], ""))
            for gene in genes:
                if gene in gidx:
                    out[j, gidx[gene]] = True
    return out


def _gene_level(P: Pooled, model: str, gene_list: list[str], top: int, mc: int) -> list[dict]:
    S = _gene_sets(P, gene_list)
    if model == "gene-diff":
        out = []
        for fid, c, f, m in _trios(P):
            q = S[c] & ~S[f] & ~S[m]
            out += [{"gene": gene_list[j], "model": model, "family": fid} for j in np.flatnonzero(q)]
        return out
    aff = P.affected == 1
    x = S[aff].sum(axis=0).astype(np.int64)
    n_aff = int(aff.sum())
    if model == "gene-intersect":
        q = x == n_aff
        cnt = _released(n_aff, mc) if n_aff else None
        return [{"gene": gene_list[j], "model": model, "count": cnt} for j in np.flatnonzero(q)]
    out, found, rank = [], np.zeros(len(gene_list), bool), 1
    want = 1 if model == "max-gene" else top
    while found.sum() < want:
        rest = np.where(found, -1, x)
        mx = int(rest.max()) if rest.size else 0
        if mx < 1:
            break
        q = rest == mx
        for j in np.flatnonzero(q):
            out.append({"gene": gene_list[j], "model": model, "count": _released(mx, mc), "rank": rank})
        rank += int(q.sum())
        found |= q
        if model == "max-gene":
            break
    return out


def reference_filter(sites: list[SiteVariants], params: dict, min_cell_size: int = 0) -> dict:
    """The twin's answer for job parameters ``params``: {"rows": [...]} or {"genes": [...]}, as the job returns them."""
    P = pool_sites(sites)
    model = params["model"]
    if model in ("carrier", "dominant", "recessive", "xlinked"):
        rows = _cohort(P, model, params.get("min_affected"), int(params.get("max_unaffected") or 0),
                       params.get("max_cohort_af"), min_cell_size)
    elif model == "denovo":
        rows = _denovo(P)
    elif model == "comphet":
        rows = _comphet(P, params["genes"])
    else:
        return {"genes": _gene_level(P, model, params["genes"], int(params.get("top", 10)), min_cell_size)}
    rows.sort(key=lambda r: (chrom_order(r["chrom"]), r["pos"], r["ref"], r["alt"], r.get("family", ""),
                             r.get("gene", "")))
    return {"rows": rows}
