"""``cipherome gwas``: run a secure GWAS on a study's party daemons and write PLINK-style results.

Flags follow PLINK 2 (``--pheno-name``, ``--covar-name``, ``--geno``, ``--maf``,
``--hwe``, ``--mind``, ``--glm``, ``--ci``); each site's daemon reads its own
genotype, phenotype and covariate files from its config, so the command line
never names another site's files. Results are written only after the job has
succeeded everywhere, each file atomically.
"""
from __future__ import annotations

import time

import click

__all__ = ["gwas", "gwas_params_from_cli", "print_top_hits", "qc_summary"]


def gwas_params_from_cli(pheno_name, covar_names, mind, geno, maf, hwe, glm, ci, pca, block):
    from cipherome.genomics.gwas.params import GwasParams

    covs = [c for part in covar_names for c in part.split(",") if c] or None
    glm_mode = "auto"
    hide = True
    for word in glm:
        if word in ("linear", "logistic", "trend"):
            glm_mode = word
        elif word == "hide-covar":
            hide = True
        else:
            raise click.BadParameter(f"unknown --glm modifier {word!r} (linear, logistic, trend, hide-covar)",
                                     param_hint="--glm")
    del hide  # covariate rows are never released: hide-covar is the only mode
    try:
        return GwasParams(pheno_name=pheno_name, covar_names=covs, mind=mind, geno=geno, maf=maf, hwe=hwe,
                          glm=glm_mode, ci=ci, pca=pca, block=block).validate()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def print_top_hits(table, n: int = 10, truth: set | None = None) -> None:
    """Print the n smallest p-values (with a mark for planted causal variants when known)."""
    import numpy as np

    p = table.stats["P"]
    order = np.argsort(np.where(np.isfinite(p), p, np.inf))[:n]
    stat = next(c for c in ("BETA", "OR", "CHISQ") if c in table.stats)
    click.echo(f"{'#CHROM':<7}{'POS':>11}  {'ID':<14}{'A1':<4}{stat:>10}{'P':>12}" + ("  planted" if truth else ""))
    for i in order:
        mark = ("  *" if str(table.vid[i]) in truth else "") if truth else ""
        click.echo(f"{str(table.chrom[i]):<7}{int(table.pos[i]):>11}  {str(table.vid[i]):<14}{str(table.a1[i]):<4}"
                   f"{table.stats[stat][i]:>10.4g}{p[i]:>12.3e}{mark}")


def qc_summary(result: dict) -> str:
    """One line on what QC removed and what the sites' policies withheld (counts overlap between filters)."""
    qc = result["qc"]
    failed = dict(qc.get("failed", {}))
    policy = failed.pop("min_cell_size", None)
    line = (f"QC: {qc['passed']} of {result['n_variants']} common variants tested"
            + ("; failing " + ", ".join(f"--{k} {v}" for k, v in failed.items()) if failed else ""))
    if policy is not None:
        line += (f"; withheld by the sites' policy (min_cell_size = {result.get('min_cell_size', '?')}: minor "
                 f"allele count or OBS_CT below it): {policy}")
    return line + (" (a variant can fail several filters)" if len(failed) + (policy is not None) > 1 else "")


@click.command("gwas")
@click.option("--study", "study_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Study file.")
@click.option("--key", required=True, type=click.Path(exists=True, dir_okay=False), help="Your (submitter) key.")
@click.option("--cert", required=True, type=click.Path(exists=True, dir_okay=False), help="Your certificate.")
@click.option("--out", "prefix", required=True, metavar="PREFIX",
              help="Output prefix (PLINK's --out): writes PREFIX.PHENO.glm.linear and friends.")
@click.option("--pheno-name", default=None, help="Phenotype column.  [default: the first column of the pheno file]")
@click.option("--covar-name", "covar_names", multiple=True,
              help="Covariate columns (comma-separated or repeated); principal components come from --pca, "
                   "not from here.  [default: every column of the covar file]")
@click.option("--mind", type=float, default=None,
              help="Remove samples with missing call rate > T (each site on its own samples).  [default: off]")
@click.option("--geno", type=float, default=None, help="Remove variants with missing call rate > T.  [default: off]")
@click.option("--maf", type=float, default=None,
              help="Remove variants with minor allele frequency < T.  [default: off]")
@click.option("--hwe", type=float, default=None,
              help="Remove variants with Hardy-Weinberg p < T (likelihood-ratio test).  [default: off]")
@click.option("--glm", multiple=True, default=(),
              help="linear | logistic | trend, optionally hide-covar (always on).  [default: linear for a "
                   "quantitative trait, logistic for a case/control trait, as PLINK 2]")
@click.option("--ci", type=float, default=None,
              help="Add L95/U95 confidence intervals at this level, e.g. 0.95.  [default: none]")
@click.option("--pca", type=click.IntRange(min=0), default=0, show_default=True,
              help="Compute K principal components securely and adjust for them (0: none); they are named "
                   "PC1..PCK and written to PREFIX.PHENO.eigenval.")
@click.option("--block-size", "block", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Variants per association block (bounds memory, not rounds).")
@click.option("--block", "block_alias", type=click.IntRange(min=1), default=None, hidden=True)  # old spelling
@click.option("--threads", type=int, default=None,
              help="Accepted for PLINK compatibility and ignored (each daemon uses its own threads).")
def gwas(study_path, key, cert, prefix, pheno_name, covar_names, mind, geno, maf, hwe, glm, ci, pca, block,
         block_alias, threads):
    """Secure GWAS over the study's sites; writes PREFIX.PHENO.glm.linear (.glm.logistic, .trend), .qc.json,
    .manhattan.png, .qq.png, .run.json (and .eigenval with --pca).

    Prints the QC summary, including the variants withheld by the sites' min_cell_size policy.
    """
    from cipherome.genomics.gwas.output import result_table, write_gwas_outputs

    from .submit import run_workload

    params = gwas_params_from_cli(pheno_name, covar_names, mind, geno, maf, hwe, glm, ci, pca, block_alias or block)
    t0 = time.perf_counter()
    result, reports = run_workload(study_path, key, cert, "gwas", params.to_dict(), "secure GWAS")
    pheno = result.get("pheno") or pheno_name or "PHENO1"
    paths = write_gwas_outputs(prefix, pheno, result, reports)
    table, _ = result_table(result)
    print_top_hits(table)
    click.echo(qc_summary(result), err=True)
    click.echo(f"{len(table)} variants tested in {time.perf_counter() - t0:.1f} s; wrote "
               + ", ".join(str(p) for p in paths.values()), err=True)
