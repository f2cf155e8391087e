"""``cipherome filter``: find candidate disease variants or genes shared across a study's sites without pooling genomes.

Each site's daemon reads its own VCF/BCF, PED and optional annotation from its
config ([data] vcf, ped, annotation), pre-filters them on the public criteria
given here, and the sites run the chosen model in MPC; only the qualifying
variants (PREFIX.filter.tsv, PREFIX.filter.vcf) or genes (PREFIX.genes.tsv) are
released, with counts where every site's minimum cell size allows, plus a run
report with the disclosure ledger (PREFIX.run.json). Files are written only
after the job succeeded everywhere.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["filter_cmd", "filter_params_from_cli"]

_MODELS = ("carrier", "dominant", "recessive", "xlinked", "denovo", "comphet", "max-gene", "top-genes",
           "gene-intersect", "gene-diff")


def _read_genes(path: str) -> list[str]:
    genes = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        genes.append(f[0])
    if not genes:
        raise click.BadParameter(f"{path}: no gene symbols (one per line)", param_hint="--genes")
    if len(set(genes)) != len(genes):
        dup = next(g for g in genes if genes.count(g) > 1)
        raise click.BadParameter(f"{path}: gene {dup!r} listed twice", param_hint="--genes")
    return genes


def filter_params_from_cli(model, min_affected, max_unaffected, max_cohort_af, top, pass_only, min_gq, min_dp,
                           max_pop_af, af_field, consequences, genes, table_size, lanes, max_variants, gene_buckets,
                           max_member_variants=None):
    """Validated ``FilterParams`` from command-line values (click errors on bad combinations)."""
    from cipherome.genomics.filtering.params import FilterParams

    cons = [c.strip() for part in consequences for c in part.split(",") if c.strip()] or None
    d = {"model": model, "min_affected": min_affected, "max_unaffected": max_unaffected,
         "max_cohort_af": max_cohort_af, "top": top, "pass_only": pass_only, "min_gq": min_gq, "min_dp": min_dp,
         "max_pop_af": max_pop_af, "af_field": af_field, "consequences": cons,
         "genes": _read_genes(genes) if genes else None, "table_size": table_size, "lanes": lanes,
         "max_variants": max_variants, "gene_buckets": gene_buckets, "max_member_variants": max_member_variants}
    try:
        return FilterParams.from_dict({k: v for k, v in d.items() if v is not None})
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("filter")
@click.option("--study", "study_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Study file.")
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False), help="Your (submitter) key.")
@click.option("--cert", required=True, type=click.Path(exists=True, dir_okay=False), help="Your certificate.")
@click.option("--model", required=True, type=click.Choice(_MODELS), help="Inheritance model or gene-level operation.")
@click.option("--out", "prefix", required=True, metavar="PREFIX",
              help="Output prefix: PREFIX.filter.tsv, .filter.vcf (or .genes.tsv) and .run.json.")
@click.option("--min-affected", type=int, default=None,
              help="Affected individuals that must carry (default 1 for carrier, all affected otherwise).")
@click.option("--max-unaffected", type=int, default=0, show_default=True,
              help="Unaffected carriers allowed (carrier model).")
@click.option("--max-cohort-af", default=None, help="Largest study-wide ALT frequency, e.g. 0.01.  [default: no limit]")
@click.option("--top", type=int, default=10, show_default=True, help="Genes wanted by top-genes.")
@click.option("--pass-only/--keep-filtered", default=True, show_default=True,
              help="Treat calls of records that fail FILTER as missing.")
@click.option("--min-gq", type=int, default=None, help="Calls with GQ below this are missing.  [default: off]")
@click.option("--min-dp", type=int, default=None, help="Calls with DP below this are missing.  [default: off]")
@click.option("--max-pop-af", type=float, default=None, help="Drop variants with population AF above this.  [default: off]")
@click.option("--af-field", default=None, help="INFO key or CSQ/ANN sub-field with the population AF.  [default: none; needed with --max-pop-af]")
@click.option("--consequence", "consequences", multiple=True,
              help="Keep only these SO terms / impacts (HIGH, MODERATE, ...); comma-separated or repeated.  [default: all]")
@click.option("--genes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Public gene list, one symbol per line (gene-level models and comphet).  [default: none]")
@click.option("--table-size", type=int, default=None, help="Slots of the hashed variant table.  [default: sized from --max-variants]")
@click.option("--lanes", type=int, default=None, help="Lanes per slot (variants of one site in one slot).  [default: sized from --max-variants]")
@click.option("--max-variants", type=int, default=20000, show_default=True,
              help="Public bound on one site's variants after pre-filtering; sizes the table when not given.")
@click.option("--max-member-variants", type=int, default=None,
              help="Public bound on one family member's variants after pre-filtering (denovo; comphet: its "
                   "(variant, listed gene) entries; sizes their cuckoo tables; default --max-variants).")
@click.option("--gene-buckets", type=int, default=1, show_default=True,
              help="Slots per gene (comphet on the gene-partitioned table: --lanes without --table-size).")
def filter_cmd(study_path, key, cert, model, prefix, min_affected, max_unaffected, max_cohort_af, top, pass_only,
               min_gq, min_dp, max_pop_af, af_field, consequences, genes, table_size, lanes, max_variants,
               max_member_variants, gene_buckets):
    """Secure variant filtering over the study's sites; writes PREFIX.filter.tsv/.vcf or PREFIX.genes.tsv."""
    from cipherome.genomics.filtering.output import write_filter_outputs

    from .submit import run_workload

    params = filter_params_from_cli(model, min_affected, max_unaffected, max_cohort_af, top, pass_only, min_gq,
                                    min_dp, max_pop_af, af_field, consequences, genes, table_size, lanes,
                                    max_variants, gene_buckets, max_member_variants)
    t0 = time.perf_counter()
    result, reports = run_workload(study_path, key, cert, "filter", params.to_dict(), "secure filtering")
    paths = write_filter_outputs(prefix, result, reports)
    n = len(result.get("rows", result.get("genes", [])))
    what = "genes" if "genes" in result else "variants"
    click.echo(f"{n} {what} released in {time.perf_counter() - t0:.1f} s; wrote "
               + ", ".join(str(p) for p in paths.values()), err=True)
