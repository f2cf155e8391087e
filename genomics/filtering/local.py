"""What a site does on its own before variant filtering: read its PED, VCF/BCF and annotation, and pre-filter on public criteria.

Everything here is plaintext and sees only the site's own files: the pedigree
(``read_ped``), the genotypes with per-call GQ/DP masks, FILTER, gene, consequence
and population allele frequency per ALT allele (``read_site``), so that the secure
stages get plain numpy arrays (one row per normalised biallelic variant).

Conventions (the plaintext twin in ``reference.filtering`` uses the same ones):

* multi-allelic records are split into one row per ALT (``bcftools norm -m-``);
  REF/ALT are then trimmed of shared trailing and leading bases (POS moves with
  the leading ones), so ``1:100:ACT:ACTT`` from a split record and ``1:101:C:CT``
  written by another site's caller get the same key; symbolic ALTs are dropped;
* a record failing FILTER (anything but PASS or ``.``) keeps its row with every
  call set missing: the site's calls there are not trusted, and its samples do
  not count as homozygous reference either;
* a call with GQ < ``min_gq`` or DP < ``min_dp`` (or without a value) is missing;
* rows whose population AF exceeds ``max_pop_af`` or whose consequences are not
  among ``consequences`` are dropped (absent: a variant absent from a site's
  pre-filtered rows counts as homozygous reference for all its samples);
* rows where every call is homozygous reference are dropped (same as absent).
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cipherome.genomics.errors import InputError, read_text
from cipherome.genomics.io.ploidy import AUTOSOMAL, CHR_MT, CHR_X, CHR_Y, ploidy_class
from cipherome.genomics.io.variants import normalize_chrom

from .params import PreFilter

__all__ = [
    "Pedigree",
    "PreFilter",
    "SiteVariants",
    "read_ped",
    "read_annotation_tsv",
    "read_site",
    "trim_alleles",
    "variant_key",
    "sample_ploidy",
    "IMPACTS",
]

log = logging.getLogger(__name__)

#: VEP/snpEff impact classes accepted in ``consequences`` besides SO terms
IMPACTS = ("HIGH", "MODERATE", "LOW", "MODIFIER")
_BASES = re.compile(r"^[ACGTN]+$")


# ----------------------------------------------------------------------------- pedigree
@dataclass(frozen=True, eq=False)
class Pedigree:
    """PED rows, one per individual: fid, iid, father, mother ``(r,)`` object arrays of str ('0' = unknown parent);
    sex ``(r,)`` int8 (1 male, 2 female, 0 unknown); affected ``(r,)`` int8 (1 affected, 0 unaffected, -1 unknown)."""

    fid: np.ndarray
    iid: np.ndarray
    father: np.ndarray
    mother: np.ndarray
    sex: np.ndarray
    affected: np.ndarray

    def __len__(self) -> int:
        return int(self.iid.shape[0])

    def subset(self, index) -> "Pedigree":
        return Pedigree(self.fid[index], self.iid[index], self.father[index], self.mother[index],
                        self.sex[index], self.affected[index])

    def rows(self) -> list[list]:
        """Plain rows ``[fid, iid, father, mother, sex, affected]`` (for the study pedigree)."""
        return [[str(a), str(b), str(c), str(d), int(e), int(f)] for a, b, c, d, e, f in
                zip(self.fid, self.iid, self.father, self.mother, self.sex, self.affected)]

    @classmethod
    def from_rows(cls, rows: list) -> "Pedigree":
        def col(j, dtype=object):
            return np.array([r[j] for r in rows], dtype=dtype) if rows else np.zeros(0, dtype)

        return cls(col(0), col(1), col(2), col(3), col(4, np.int8), col(5, np.int8))


def read_ped(path) -> Pedigree:
    """Read a PED file: FID IID FATHER MOTHER SEX PHENOTYPE (whitespace-separated; extra columns ignored).

    SEX: 1 male, 2 female, 0/other unknown. PHENOTYPE: 2 affected, 1 unaffected,
    0/-9/NA unknown. Lines starting with '#' and blank lines are skipped. Raises
    :class:`InputError` naming the line for short lines, bad codes and duplicate IDs.
    """
    path = Path(path)
    text = read_text(path, "cannot open PED file", "cannot open its PED file",
                     "; check the 'ped' entry of the site config")
    rows, seen = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if len(f) < 6:
            raise InputError(f"{path}, line {lineno}: {len(f)} columns; a PED line needs FID IID FATHER MOTHER SEX"
                             " PHENOTYPE",
                             kind='its PED file has a line with too few columns')
        fid, iid, pat, mat, sex_s, ph = f[:6]
        if sex_s not in ("0", "1", "2") and sex_s.upper() not in ("NA", "-9", "U", "M", "F"):
            raise InputError(f"{path}, line {lineno}: SEX {sex_s!r} is not 1 (male), 2 (female) or 0 (unknown)",
                             kind='its PED file has an invalid SEX value')
        sex = {"1": 1, "2": 2, "M": 1, "F": 2}.get(sex_s.upper(), 0)
        if ph in ("2",):
            aff = 1
        elif ph in ("1",):
            aff = 0
        elif ph in ("0", "-9") or ph.upper() in ("NA", "."):
            aff = -1
        else:
            raise InputError(f"{path}, line {lineno}: PHENOTYPE {ph!r} is not 2 (affected), 1 (unaffected) or"
                             " 0/-9 (unknown)",
                             kind='its PED file has an invalid PHENOTYPE value')
        if iid == "0":
            raise InputError(f"{path}, line {lineno}: IID '0' is reserved for 'unknown parent'",
                             kind="its PED file uses the reserved IID '0'")
        if (fid, iid) in seen:
            raise InputError(f"{path}, line {lineno}: individual {fid} {iid} listed twice (first on line"
                             f" {seen[(fid, iid)]})",
                             kind='its PED file lists an individual twice')
        if iid in (pat, mat):
            raise InputError(f"{path}, line {lineno}: individual {iid} is listed as its own parent",
                             kind='its PED file lists an individual as its own parent')
        seen[(fid, iid)] = lineno
        rows.append([fid, iid, pat, mat, sex, aff])
    if not rows:
        raise InputError(f"{path}: the PED file has no individuals",
                         kind='its PED file has no individuals')
    return Pedigree.from_rows(rows)


def sample_ploidy(pclass: int, sex: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 alleles per call for a chromosome class: 2 autosomal; X: males 1, others 2; Y: males 1,
    others 0; MT: 1 (as ``cipherome.genomics.io.ploidy``)."""
    sex = np.asarray(sex)
    if pclass == AUTOSOMAL:
        return np.full(sex.shape, 2, np.int64)
    if pclass == CHR_X:
        return np.where(sex == 1, 1, 2).astype(np.int64)
    if pclass == CHR_Y:
        return np.where(sex == 1, 1, 0).astype(np.int64)
    return np.ones(sex.shape, np.int64)  # MT


# ----------------------------------------------------------------------------- variant keys
def trim_alleles(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Drop shared trailing, then leading bases (keeping one base each); POS moves with the leading ones."""
    ref, alt = ref.upper(), alt.upper()
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def variant_key(chrom: str, pos: int, ref: str, alt: str) -> tuple[str, int, str, str, str]:
    """``(key, chrom, pos, ref, alt)`` with the normalised chromosome and trimmed alleles; key ``chrom:pos:ref:alt``."""
    c = normalize_chrom(chrom)
    p, r, a = trim_alleles(int(pos), ref, alt)
    return f"{c}:{p}:{r}:{a}", c, p, r, a


# ----------------------------------------------------------------------------- annotation
@dataclass
class _Annot:
    genes: list = field(default_factory=list)
    terms: set = field(default_factory=set)
    impact: set = field(default_factory=set)
    af: float = 0.0

    def add(self, gene: str, terms, impact: str, af: float | None) -> None:
        if gene and gene not in self.genes:
            self.genes.append(gene)
        self.terms.update(t for t in terms if t)
        if impact:
            self.impact.add(impact)
        if af is not None:
            self.af = max(self.af, af)


def _float_or_none(tok) -> float | None:
    if tok is None:
        return None
    vals = []
    for part in re.split(r"[&,]", str(tok)):
        part = part.strip()
        if part in ("", ".", "NA", "nan"):
            continue
        try:
            vals.append(float(part))
        except ValueError:
            return None
    return max(vals) if vals else None


def read_annotation_tsv(path) -> dict[str, _Annot]:
    """Annotation TSV with a header naming CHROM POS REF ALT and any of GENE CONSEQUENCE IMPACT AF.

    Several genes or consequences in a cell are separated by ',' or '&'. Keys are
    normalised as the VCF rows are (:func:`variant_key`). Returns key -> annotation.
    """
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", errors="replace", newline="")
    except OSError as e:
        raise InputError(f"{path}: cannot open annotation file ({e.strerror})",
                         kind='cannot open its annotation file') from None
    out: dict[str, _Annot] = {}
    with fh:
        rd = csv.reader(fh, delimiter="\t")
        head = None
        for lineno, row in enumerate(rd, 1):
            if not row or (head is not None and row[0].startswith("#")):
                continue
            if head is None:
                head = [h.lstrip("#").strip().upper() for h in row]
                missing = [c for c in ("CHROM", "POS", "REF", "ALT") if c not in head]
                if missing:
                    raise InputError(f"{path}, line {lineno}: the header must name CHROM POS REF ALT (missing"
                                     f" {', '.join(missing)}); optional columns: GENE CONSEQUENCE IMPACT AF",
                                     kind="its annotation file's header lacks a required column")
                idx = {h: i for i, h in enumerate(head)}
                continue
            if len(row) != len(head):
                raise InputError(f"{path}, line {lineno}: {len(row)} tab-separated columns, the header has {len(head)}",
                                 kind='its annotation file has a line with the wrong number of columns')
            if not row[idx["POS"]].isdigit():
                raise InputError(f"{path}, line {lineno}: POS {row[idx['POS']]!r} is not a positive integer",
                                 kind='its annotation file has an invalid POS value')
            key = variant_key(row[idx["CHROM"]], int(row[idx["POS"]]), row[idx["REF"]], row[idx["ALT"]])[0]
            a = out.setdefault(key, _Annot())
            genes = re.split(r"[,&]", row[idx["GENE"]]) if "GENE" in idx else []
            terms = re.split(r"[,&]", row[idx["CONSEQUENCE"]]) if "CONSEQUENCE" in idx else []
            impact = row[idx["IMPACT"]].strip().upper() if "IMPACT" in idx else ""
            af = None
            if "AF" in idx:
                af = _float_or_none(row[idx["AF"]])
                if af is None and row[idx["AF"]].strip() not in ("", ".", "NA"):
                    raise InputError(f"{path}, line {lineno}: AF {row[idx['AF']]!r} is not a number",
                                     kind='its annotation file has a non-numeric AF value')
            for g in genes:
                a.add(g.strip(), [], "", None)
            a.add("", [t.strip() for t in terms], impact, af)
        if head is None:
            raise InputError(f"{path}: the annotation file is empty (it needs a header line)",
                             kind='its annotation file is empty')
    return out


def _info_format(header, key: str) -> list[str] | None:
    """Sub-field names of a VEP CSQ or snpEff ANN INFO field, from its header description."""
    if key not in header.info:
        return None
    desc = header.info[key].description or ""
    m = re.search(r"Format:\s*'?([^'\"]+)'?", desc) or re.search(r"'([^']+)'", desc)
    if not m:
        return None
    return [f.strip() for f in m.group(1).split("|")]


def _vep_alleles(ref: str, alts: tuple) -> list[str]:
    """ALT alleles as VEP writes them (the shared first base dropped from indel records, '-' if empty)."""
    if all(len(a) == 1 for a in alts) and len(ref) == 1:
        return list(alts)
    if all(a and a[0] == ref[0] for a in alts):
        return [a[1:] or "-" for a in alts]
    return list(alts)


def _record_annotation(rec, csq_fmt, ann_fmt, af_field: str | None) -> list[_Annot]:
    """Per-ALT annotation from CSQ (VEP), ANN (snpEff) and an INFO allele-frequency field."""
    alts = rec.alts or ()
    out = [_Annot() for _ in alts]
    for key, fmt, allele_col, gene_cols, cons_col, imp_col in (
        ("CSQ", csq_fmt, "Allele", ("SYMBOL", "Gene"), "Consequence", "IMPACT"),
        ("ANN", ann_fmt, "Allele", ("Gene_Name", "Gene_ID"), "Annotation", "Annotation_Impact"),
    ):
        if fmt is None or key not in rec.info:
            continue
        col = {n: i for i, n in enumerate(fmt)}
        vals = rec.info[key]
        vals = (vals,) if isinstance(vals, str) else vals
        names = _vep_alleles(rec.ref, alts) if key == "CSQ" else list(alts)
        for entry in vals:
            f = entry.split("|")

            def get(name):
                i = col.get(name)
                return f[i] if i is not None and i < len(f) else ""

            which = None
            if "ALLELE_NUM" in col and get("ALLELE_NUM").isdigit():
                which = int(get("ALLELE_NUM")) - 1
            else:
                a = get(allele_col)
                which = names.index(a) if a in names else (0 if len(alts) == 1 else None)
            if which is None or not 0 <= which < len(alts):
                continue
            gene = next((get(g) for g in gene_cols if get(g)), "")
            af = _float_or_none(get(af_field)) if af_field and af_field in col else None
            out[which].add(gene, get(cons_col).split("&"), get(imp_col).upper(), af)
    if af_field and af_field in rec.info:
        v = rec.info[af_field]
        vs = v if isinstance(v, tuple) else (v,)
        for i in range(len(alts)):
            x = vs[i] if len(vs) == len(alts) else vs[0]
            af = _float_or_none(x)
            if af is not None:
                out[i].af = max(out[i].af, af)
    return out


# ----------------------------------------------------------------------------- site rows
@dataclass(frozen=True, eq=False)
class SiteVariants:
    """A site's pre-filtered variant rows and its genotyped individuals.

    keys ``(m,)`` object (``chrom:pos:ref:alt``, unique); chrom, ref, alt ``(m,)``
    object; pos ``(m,)`` int64; genes: list of m tuples of gene symbols;
    consequence ``(m,)`` object ('&'-joined terms, '' if none); pclass ``(m,)`` int8
    (``ploidy`` classes); dosage ``(m, n)`` int8 ALT dosage (haploid ALT = 2, -1
    missing); ped: the n genotyped individuals in dosage column order.
    """

    keys: np.ndarray
    chrom: np.ndarray
    pos: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    genes: list
    consequence: np.ndarray
    pclass: np.ndarray
    dosage: np.ndarray
    ped: Pedigree

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def index(self) -> dict[str, int]:
        """key -> row."""
        return {k: i for i, k in enumerate(self.keys)}

    @classmethod
    def from_rows(cls, ped: Pedigree, rows: list[tuple]) -> "SiteVariants":
        """Rows ``(key, chrom, pos, ref, alt, genes, consequence, dosage (n,))`` (first of duplicate keys kept)."""
        seen, keep = set(), []
        for r in rows:
            if r[0] not in seen:
                seen.add(r[0])
                keep.append(r)
        n = len(ped)
        obj = lambda j: np.array([r[j] for r in keep], dtype=object) if keep else np.zeros(0, object)  # noqa: E731
        chrom = obj(1)
        dosage = np.array([r[7] for r in keep], dtype=np.int8).reshape(len(keep), n)
        return cls(obj(0), chrom, np.array([r[2] for r in keep], dtype=np.int64), obj(3), obj(4),
                   [tuple(r[5]) for r in keep], obj(6),
                   ploidy_class(chrom) if len(keep) else np.zeros(0, np.int8), dosage, ped)


def _call_masks(line: str, names: tuple, cols: np.ndarray, thresholds: tuple) -> np.ndarray:
    """``(n,)`` bool: calls whose FORMAT values reach every threshold (missing values fail)."""
    f = line.rstrip("\n").split("\t")
    keys = f[8].split(":") if len(f) > 8 else []
    ok = np.ones(cols.shape[0], dtype=bool)
    for name, t in zip(names, thresholds):
        if t is None:
            continue
        if name not in keys:
            ok[:] = False
            continue
        j = keys.index(name)
        for k, c in enumerate(cols):
            vals = f[9 + c].split(":")
            v = vals[j] if j < len(vals) else "."
            try:
                ok[k] &= float(v) >= t
            except ValueError:
                ok[k] = False
    return ok


def read_site(vcf, ped, annotation=None, prefilter: PreFilter | None = None, region: str | None = None) -> SiteVariants:
    """Read a site's VCF/BCF, PED and optional annotation TSV and apply the pre-filter (module docstring).

    Individuals are the PED rows whose IID is a sample of the VCF (in VCF order);
    VCF samples missing from the PED are ignored (logged).
    """
    import pysam

    from cipherome.genomics.io.vcf import VcfReader

    pf = prefilter or PreFilter()
    pedigree = read_ped(ped)
    reader = VcfReader(vcf, region=region)
    vcf_samples = list(reader.samples.iid)
    ped_index = {iid: i for i, iid in enumerate(pedigree.iid)}
    if len(set(pedigree.iid)) != len(pedigree):
        dup = next(i for i in pedigree.iid if list(pedigree.iid).count(i) > 1)
        raise InputError(f"{ped}: IID {dup!r} appears in two families; IIDs must be unique at a site",
                         kind='its PED file uses one IID in two families')
    members = [s for s in vcf_samples if s in ped_index]
    if not members:
        raise InputError(f"{vcf}: none of its {len(vcf_samples)} samples is in the PED file {ped}; check the IIDs",
                         kind='none of its VCF samples is in its PED file')
    if len(members) < len(vcf_samples):
        log.info("%s: %d VCF samples not in the PED file are ignored", vcf, len(vcf_samples) - len(members))
    sub = pedigree.subset(np.array([ped_index[s] for s in members], dtype=np.int64))
    reader = VcfReader(vcf, samples=members, region=region)
    cols = np.arange(len(members), dtype=np.int64)  # the reader's record text has the members' columns only
    tsv = read_annotation_tsv(annotation) if annotation is not None else None

    with pysam.VariantFile(str(vcf)) as vf:  # the header only
        csq_fmt, ann_fmt = _info_format(vf.header, "CSQ"), _info_format(vf.header, "ANN")
    fmt_names, thresholds = ("GQ", "DP"), (pf.min_gq, pf.min_dp)
    need_masks = any(t is not None for t in thresholds)
    rows = []
    dropped = {"filter": 0, "af": 0, "consequence": 0, "symbolic": 0, "hom_ref": 0}
    for block, recs in reader.blocks(records=True):  # one pass: genotypes and the records' other fields
        g = block.dosage
        r = 0
        for rec, text in recs:
            alts = rec.alts or (".",)
            k = len(alts)
            passed = (not pf.pass_only) or all(f in ("PASS", ".") for f in rec.filter.keys())
            ann = None if tsv is not None else _record_annotation(rec, csq_fmt, ann_fmt, pf.af_field)
            mask = _call_masks(text, fmt_names, cols, thresholds) if need_masks else None
            for j in range(k):
                row_g = g[r + j].copy()
                alt = alts[j]
                if not _BASES.match(alt.upper()) or not _BASES.match(rec.ref.upper()):
                    dropped["symbolic"] += 1
                    continue
                key, c, p, rf, al = variant_key(rec.chrom, rec.pos, rec.ref, alt)
                a = (tsv.get(key) or _Annot()) if tsv is not None else ann[j]
                if not pf.keeps(a.terms, a.impact, a.af):
                    dropped["af" if (pf.max_pop_af is not None and a.af > pf.max_pop_af) else "consequence"] += 1
                    continue
                if not passed:
                    row_g[:] = -1
                    dropped["filter"] += 1
                elif mask is not None:
                    row_g[~mask] = -1
                if not np.any(row_g != 0):
                    dropped["hom_ref"] += 1
                    continue
                rows.append((key, c, p, rf, al, tuple(a.genes), "&".join(sorted(a.terms)), row_g))
            r += k
    log.info("%s: %d variant rows kept; FILTER-failed rows set missing: %d; dropped: %d by population AF, "
             "%d by consequence, %d symbolic, %d all homozygous reference", vcf, len(rows), dropped["filter"],
             dropped["af"], dropped["consequence"], dropped["symbolic"], dropped["hom_ref"])
    return SiteVariants.from_rows(sub, rows)
