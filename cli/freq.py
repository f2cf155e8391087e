"""``cipherome freq``: the study's pooled .afreq, .vmiss and .hardy, as plink2 --freq --missing --hardy on pooled data.

What a consortium checks before any association: each site's daemon adds its own
counts as secret shares and only the pooled counts of variants that pass every site's
disclosure policy are released (``genomics.gwas.freq``).
"""
from __future__ import annotations

import time

import click

__all__ = ["freq"]


@click.command("freq")
@click.option("--study", "study_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Study file.")
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False), help="Your (submitter) key.")
@click.option("--cert", required=True, type=click.Path(exists=True, dir_okay=False), help="Your certificate.")
@click.option("--out", "prefix", required=True, help="Output prefix (PLINK's --out).")
@click.option("--block", type=click.IntRange(min=1), default=4096, show_default=True, help="Variants per block.")
def freq(study_path, key, cert, prefix, block):
    """Pooled allele frequencies (.afreq; dosages where sites have them), missingness (.vmiss), HWE (.hardy, exact test)."""
    from cipherome.genomics.gwas.freq import write_freq

    from .submit import run_workload

    t0 = time.perf_counter()
    result, _ = run_workload(study_path, key, cert, "gwas.freq", {"block": block}, "pooled frequencies")
    paths = write_freq(prefix, result)
    n, r = len(result["released"]), int(sum(result["released"]))
    click.echo(f"{r} of {n} common variants released (min cell size {result['min_cell_size']}) in"
               f" {time.perf_counter() - t0:.1f} s; wrote " + ", ".join(str(p) for p in paths), err=True)
