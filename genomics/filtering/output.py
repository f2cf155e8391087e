"""Result files of a filtering job: the qualifying variants as TSV and as a sites-only VCF, genes as TSV, and a run report.

Only what the job released is written: chrom, pos, ref, alt, gene, consequence,
model, family and inheritance, and the counts the disclosure policy allowed
('.' where a count was suppressed). Every file is written to a temporary name
and renamed, so a failed run never leaves half a file.
"""
from __future__ import annotations

from pathlib import Path

from cipherome.genomics.gwas.output import write_json
from cipherome.genomics.io.variants import chrom_order
from cipherome.genomics.io.writers import atomic_path

__all__ = ["COUNT_COLUMNS", "write_filter_tsv", "write_filter_vcf", "write_genes_tsv", "write_filter_outputs"]

#: count columns in output order (a model releases some of them)
COUNT_COLUMNS = ("AFF_CARRIERS", "UNAFF_CARRIERS", "AFF_HOM", "UNAFF_HOM", "AFF_XGENO", "UNAFF_XGENO", "AC", "AN")
_DESCR = {
    "AFF_CARRIERS": "Affected individuals carrying the ALT allele",
    "UNAFF_CARRIERS": "Unaffected individuals carrying the ALT allele",
    "AFF_HOM": "Affected individuals homozygous for the ALT allele",
    "UNAFF_HOM": "Unaffected individuals homozygous for the ALT allele",
    "AFF_XGENO": "Affected males with the ALT allele plus affected homozygous females",
    "UNAFF_XGENO": "Unaffected males with the ALT allele plus unaffected homozygous females",
    "AC": "ALT alleles among called genotypes (study-wide)",
    "AN": "Called alleles (study-wide)",
}


def _cell(v) -> str:
    return "." if v is None or v == "" else str(v)


def _count_columns(rows: list[dict]) -> list[str]:
    return [c for c in COUNT_COLUMNS if any(c in r for r in rows)]


def write_filter_tsv(path, rows: list[dict]) -> Path:
    """One line per released variant (and family), PLINK-style header ``#CHROM POS REF ALT ...``."""
    counts = _count_columns(rows)
    cols = ["#CHROM", "POS", "REF", "ALT", "GENE", "CONSEQUENCE", "MODEL", "FAMILY", "INHERITANCE", *counts]
    keys = ["chrom", "pos", "ref", "alt", "gene", "consequence", "model", "family", "inheritance", *counts]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("\t".join(cols) + "\n")
            for r in rows:
                f.write("\t".join(_cell(r.get(k)) for k in keys) + "\n")
    return Path(path)


def _info_value(v) -> str:
    s = str(v)
    for bad, good in ((";", "%3B"), ("=", "%3D"), (" ", "_"), ("\t", "_"), (",", "%2C")):
        s = s.replace(bad, good)
    return s


def write_filter_vcf(path, rows: list[dict], source: str = "cipherome filter") -> Path:
    """A sites-only VCF 4.2 of the released variants; the released fields go to INFO."""
    counts = _count_columns(rows)
    chroms = sorted({r["chrom"] for r in rows}, key=chrom_order)
    head = ["##fileformat=VCFv4.2", f"##source={source}"]
    head += [f"##contig=<ID={c}>" for c in chroms]
    head += [
        '##INFO=<ID=GENE,Number=.,Type=String,Description="Gene symbol(s) from the annotation">',
        '##INFO=<ID=CONSEQUENCE,Number=1,Type=String,Description="Consequence terms from the annotation">',
        '##INFO=<ID=MODEL,Number=1,Type=String,Description="cipherome filter model the variant qualified under">',
        '##INFO=<ID=FAMILY,Number=1,Type=String,Description="Family (PED FID) of a family model">',
        '##INFO=<ID=INHERITANCE,Number=1,Type=String,Description="paternal or maternal (compound heterozygous)">',
    ]
    head += [f'##INFO=<ID={c},Number=1,Type=Integer,Description="{_DESCR[c]} (missing: withheld by the '
             'disclosure policy)">' for c in counts]
    head.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(head) + "\n")
            for r in sorted(rows, key=lambda r: (chrom_order(r["chrom"]), r["pos"], r["ref"], r["alt"])):
                info = []
                for key, tag in (("gene", "GENE"), ("consequence", "CONSEQUENCE"), ("model", "MODEL"),
                                 ("family", "FAMILY"), ("inheritance", "INHERITANCE")):
                    v = r.get(key)
                    if v:
                        info.append(f"{tag}={','.join(_info_value(g) for g in str(v).split(','))}"
                                    if tag == "GENE" else f"{tag}={_info_value(v)}")
                info += [f"{c}={r[c]}" for c in counts if r.get(c) is not None]
                f.write(f"{r['chrom']}\t{r['pos']}\t.\t{r['ref']}\t{r['alt']}\t.\tPASS\t{';'.join(info) or '.'}\n")
    return Path(path)


def write_genes_tsv(path, genes: list[dict]) -> Path:
    """One line per released gene: GENE MODEL FAMILY RANK COUNT ('.' where not applicable or withheld)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("#GENE\tMODEL\tFAMILY\tRANK\tCOUNT\n")
            for g in genes:
                f.write("\t".join(_cell(g.get(k)) for k in ("gene", "model", "family", "rank", "count")) + "\n")
    return Path(path)


def write_filter_outputs(prefix, result: dict, reports: dict | None = None) -> dict[str, Path]:
    """PREFIX.filter.tsv and PREFIX.filter.vcf (variant models) or PREFIX.genes.tsv (gene models), PREFIX.run.json."""
    prefix = str(prefix)
    out = {}
    if "genes" in result:
        out["genes"] = write_genes_tsv(prefix + ".genes.tsv", result["genes"])
    else:
        out["tsv"] = write_filter_tsv(prefix + ".filter.tsv", result["rows"])
        out["vcf"] = write_filter_vcf(prefix + ".filter.vcf", result["rows"])
    doc = {k: v for k, v in result.items() if k not in ("rows", "genes")}
    doc["reports"] = reports or {}
    out["json"] = write_json(prefix + ".run.json", doc)
    return out
