"""Simulated rare-disease studies for the filtering tests: families split across sites, planted candidates, VCF files.

A study is a set of positions (one or two ALT alleles each, on autosomes and X),
individuals at sites (trios with members at different sites, unrelated affected
and unaffected individuals), allele pairs per individual and position (missing
calls, haploid male X calls), a gene per position, and planted variants for each
model. ``site_variants`` gives the sites' pre-filtered rows directly;
``write_site_files`` writes a VCF (with CSQ, GQ, DP), a PED and reads them back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cipherome.genomics.filtering.local import Pedigree, SiteVariants, variant_key

GENES = [f"GENE{i}" for i in range(1, 13)]


@dataclass
class Position:
    chrom: str
    pos: int
    ref: str
    alts: list
    gene: str
    cons: str = "missense_variant"


@dataclass
class Study:
    n_sites: int
    ped: list = field(default_factory=list)  # rows [site, fid, iid, father, mother, sex, affected]
    positions: list = field(default_factory=list)
    alleles: dict = field(default_factory=dict)  # (pos index) -> (N, 2) int allele indices, -1 missing, -2 haploid

    def individuals(self, site: int) -> list[int]:
        return [j for j, r in enumerate(self.ped) if r[0] == site]


def _person(st: Study, site, fid, iid, father="0", mother="0", sex=1, affected=0) -> int:
    st.ped.append([site, fid, iid, father, mother, sex, affected])
    return len(st.ped) - 1


def simulate(seed: int = 0, n_sites: int = 3, n_positions: int = 60, missing: float = 0.04,
             carrier_p: float = 0.12) -> Study:
    """A random study with three trios (one split over three sites), extra cases and controls, and plants."""
    rng = np.random.default_rng(seed)
    st = Study(n_sites)
    s = [i % n_sites for i in range(3)]
    # trio A: split over three sites; trio B: all at one site; trio C: child apart from both parents
    a_c = _person(st, s[0], "FA", "A1", "A2", "A3", sex=1, affected=1)
    a_f = _person(st, s[1], "FA", "A2", sex=1, affected=0)
    a_m = _person(st, s[2], "FA", "A3", sex=2, affected=0)
    b_c = _person(st, s[1], "FB", "B1", "B2", "B3", sex=2, affected=1)
    b_f = _person(st, s[1], "FB", "B2", sex=1, affected=0)
    b_m = _person(st, s[1], "FB", "B3", sex=2, affected=0)
    c_c = _person(st, s[2], "FC", "C1", "C2", "C3", sex=1, affected=1)
    c_f = _person(st, s[0], "FC", "C2", sex=1, affected=0)
    c_m = _person(st, s[0], "FC", "C3", sex=2, affected=0)
    for site in range(n_sites):
        _person(st, site, f"U{site}a", f"U{site}a", sex=int(rng.integers(1, 3)), affected=1)
        _person(st, site, f"U{site}b", f"U{site}b", sex=int(rng.integers(1, 3)), affected=0)
        _person(st, site, f"U{site}c", f"U{site}c", sex=int(rng.integers(1, 3)), affected=-1)
    N = len(st.ped)
    sex = np.array([r[5] for r in st.ped])
    aff = np.array([r[6] for r in st.ped])
    bases = "ACGT"
    pos = 1000
    for i in range(n_positions):
        chrom = "X" if i % 6 == 5 else ("1" if i % 2 else "2")
        pos += int(rng.integers(5, 50))
        ref = bases[int(rng.integers(4))]
        alts = [b for b in bases if b != ref]
        k = 2 if i % 7 == 3 else 1
        alt = list(rng.choice(alts, size=k, replace=False))
        st.positions.append(Position(chrom, pos, ref, alt, GENES[int(rng.integers(len(GENES)))]))
        al = np.zeros((N, 2), np.int64)
        for j in range(N):
            for h in range(2):
                if rng.random() < carrier_p:
                    al[j, h] = int(rng.integers(1, k + 1))
        al[rng.random(N) < missing] = -1
        _haploid(st, al, chrom, sex)
        st.alleles[i] = al
    # an indel written as one multi-allelic record (ACT -> A, ACTT) in the gene of trio A's plants
    pos += 100
    st.positions.append(Position("1", pos, "ACT", ["A", "ACTT"], "GENE1", "frameshift_variant"))
    al = np.zeros((N, 2), np.int64)
    al[a_c] = [1, 0]  # de novo deletion in trio A's child
    al[c_c] = [0, 2]
    al[c_f] = [0, 2]  # paternal insertion in trio C
    st.alleles[len(st.positions) - 1] = al
    # plants: de novo in A and C, compound het in A and B (GENE1 / GENE2), dominant, recessive, X-linked
    def plant(chrom, gene, who: dict, cons="stop_gained"):
        nonlocal pos
        pos += 37
        st.positions.append(Position(chrom, pos, "G", ["T"], gene, cons))
        a = np.zeros((N, 2), np.int64)
        for j, pair in who.items():
            a[j] = pair
        _haploid(st, a, chrom, sex)
        st.alleles[len(st.positions) - 1] = a

    plant("1", "GENE1", {a_c: (0, 1)})
    plant("1", "GENE1", {a_c: (1, 0), a_f: (1, 0)})
    plant("2", "GENE1", {a_c: (0, 1), a_m: (0, 1)})
    plant("2", "GENE2", {b_c: (1, 0), b_f: (0, 1)})
    plant("2", "GENE2", {b_c: (0, 1), b_m: (1, 0)})
    plant("2", "GENE3", {c_c: (0, 1), c_m: (1, 0)})  # comphet half only
    affected = np.flatnonzero(aff == 1)
    plant("1", "GENE4", {j: (0, 1) for j in affected})  # dominant
    plant("2", "GENE5", {**{j: (1, 1) for j in affected}, a_f: (0, 1), a_m: (1, 0)})  # recessive
    xs = {j: ((1, -2) if sex[j] == 1 else (1, 1)) for j in affected}
    xs[a_m] = (0, 1)
    plant("X", "GENE6", xs)  # X-linked recessive
    return st


def genotype_again(st: Study, iid: str, site: int, seed: int = 0, discordant: float = 0.3) -> None:
    """Genotype individual ``iid`` (its PED row as is) at ``site`` too: a second copy whose calls differ from the
    first at a fraction ``discordant`` of the autosomal positions (a new het ALT or a hom-ref), so that the result
    shows which copy was used."""
    rng = np.random.default_rng(seed)
    j = [r[2] for r in st.ped].index(iid)
    st.ped.append([site] + list(st.ped[j][1:]))
    for i, al in st.alleles.items():
        row = al[j].copy()
        if st.positions[i].chrom != "X" and rng.random() < discordant:
            row = np.array([0, 1]) if row[0] == 0 and row[1] == 0 else np.array([0, 0])
        st.alleles[i] = np.vstack([al, row[None, :]])


def _haploid(st: Study, al: np.ndarray, chrom: str, sex: np.ndarray) -> None:
    if chrom == "X":
        males = sex == 1
        al[males, 1] = np.where(al[males, 0] == -1, -1, -2)


def dosage(al: np.ndarray, a: int) -> np.ndarray:
    """ALT ``a`` dosage per individual: haploid calls coded 0/2, missing -1 (as VcfReader)."""
    out = np.zeros(al.shape[0], np.int8)
    miss = al[:, 0] == -1
    hap = al[:, 1] == -2
    out[:] = (al[:, 0] == a).astype(np.int8) + (al[:, 1] == a).astype(np.int8)
    out[hap] = 2 * (al[hap, 0] == a)
    out[miss] = -1
    return out


def site_variants(st: Study, site: int) -> SiteVariants:
    """The site's pre-filtered rows (no GQ/DP/AF filtering), as ``read_site`` would give them."""
    cols = st.individuals(site)
    ped = Pedigree.from_rows([st.ped[j][1:] for j in cols])
    rows = []
    for i, p in enumerate(st.positions):
        al = st.alleles[i][cols]
        for a, alt in enumerate(p.alts, 1):
            g = dosage(al, a)
            if not np.any(g != 0):
                continue
            key, c, ps, r, al_ = variant_key(p.chrom, p.pos, p.ref, alt)
            rows.append((key, c, ps, r, al_, (p.gene,), p.cons, g))
    return SiteVariants.from_rows(ped, rows)


def _gt(pair) -> str:
    a, b = int(pair[0]), int(pair[1])
    if a == -1:
        return "." if b == -2 else "./."
    if b == -2:
        return str(a)
    return f"{a}/{b}"


def write_site_files(st: Study, site: int, folder: Path, low_quality: dict | None = None) -> dict:
    """Write the site's VCF (bgzipped, CSQ/GQ/DP, one record per position, multi-allelic as is), PED and
    annotation-free config table; returns the [data] table. ``low_quality``: {(position, individual): GQ}."""
    import pysam

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cols = st.individuals(site)
    ped_path = folder / f"site{site}.ped"
    ped_path.write_text("".join(f"{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\t{r[5]}\t{ {1: 2, 0: 1, -1: -9}[r[6]] }\n"
                                for r in (st.ped[j] for j in cols)))
    hdr = pysam.VariantHeader()
    for c in ("1", "2", "X"):
        hdr.contigs.add(c)
    hdr.add_meta("INFO", items=[("ID", "CSQ"), ("Number", "."), ("Type", "String"),
                                ("Description", "Consequence annotations from Ensembl VEP. Format: Allele|Consequence|IMPACT|SYMBOL")])
    hdr.add_meta("FORMAT", items=[("ID", "GT"), ("Number", "1"), ("Type", "String"), ("Description", "Genotype")])
    hdr.add_meta("FORMAT", items=[("ID", "GQ"), ("Number", "1"), ("Type", "Integer"), ("Description", "GQ")])
    hdr.add_meta("FORMAT", items=[("ID", "DP"), ("Number", "1"), ("Type", "Integer"), ("Description", "DP")])
    hdr.add_meta("FILTER", items=[("ID", "LowQual"), ("Description", "low quality")])
    names = [st.ped[j][2] for j in cols]
    for nm in names:
        hdr.add_sample(nm)
    text = [str(hdr)]
    lq = low_quality or {}
    for i, p in enumerate(sorted(range(len(st.positions)), key=lambda i: (st.positions[i].chrom, st.positions[i].pos))):
        pos_ = st.positions[p]
        al = st.alleles[p][cols]
        if not np.any(al[:, 0] != 0) and not np.any((al[:, 1] > 0)):
            continue
        vep = [a[1:] or "-" for a in pos_.alts] if len(pos_.ref) > 1 else list(pos_.alts)
        csq = ",".join(f"{v}|{pos_.cons}|HIGH|{pos_.gene}" for v in vep)
        samples = []
        for k, j in enumerate(cols):
            gq = lq.get((p, j), 60)
            samples.append(f"{_gt(al[k])}:{gq}:30")
        text.append("\t".join([pos_.chrom, str(pos_.pos), ".", pos_.ref, ",".join(pos_.alts), "50", "PASS",
                               f"CSQ={csq}", "GT:GQ:DP", *samples]) + "\n")
    plain = folder / f"site{site}.vcf"
    plain.write_text("".join(text))
    gz = folder / f"site{site}.vcf.gz"
    pysam.tabix_compress(str(plain), str(gz), force=True)
    plain.unlink()
    return {"vcf": str(gz), "ped": str(ped_path)}
