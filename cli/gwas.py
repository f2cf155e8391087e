"""``cipherome gwas``: run a secure GWAS on a study's party daemons and write PLINK-style results.

Flags follow PLINK 2 (``--pheno-name``, ``--covar-name``, ``--geno``, ``--maf``,
``--hwe``, ``--mind``, ``--glm``, ``--ci``, ``--extract``/``--exclude``, ``--chr``,
``--from-bp``/``--to-bp``, ``--mach-r2-filter``, ``--glm cols=``; sample lists are each site's ``keep``/``remove`` config); each site's daemon reads its own
genotype, phenotype and covariate files from its config, so the command line
never names another site's files. Results are written only after the job has
succeeded everywhere, each file atomically.
"""
from __future__ import annotations

import time

import click

__all__ = ["gwas", "gwas_params_from_cli", "pca_extra", "print_top_hits", "qc_summary", "mach_r2_bounds"]


def _read_extract(path) -> list[str]:
    """Variant IDs of a ``--pca-extract`` file (first whitespace field per line, as ``plink2 --extract``)."""
    from pathlib import Path

    try:
        ids = [ln.split()[0] for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--pca-extract") from None
    if not ids:
        raise click.BadParameter(f"{path} lists no variant IDs", param_hint="--pca-extract")
    return ids


def pca_extra(pca_modifiers=(), pca_extract=None, pca_thin_count=None, pca_bp_space=None, pca_passes=None,
              out_name=None, pca_mode="shared", pca_rtol=None) -> dict:
    """The ``GwasParams.extra`` keys of the PCA flags (``--pca K [approx]``, ``--pca-extract``, thinning,
    ``--pca-passes``, ``--pca-rtol``, ``--pca-mode``)."""
    extra = {} if pca_mode == "shared" else {"pca_mode": str(pca_mode)}
    for word in pca_modifiers:
        if word == "approx":
            extra["pca_approx"] = True
        else:
            raise click.BadParameter(f"unknown --pca modifier {word!r} (approx)", param_hint="--pca")
    if pca_extract:
        extra["pca_extract"] = _read_extract(pca_extract)
    if pca_bp_space:
        extra["pca_bp_space"] = int(pca_bp_space)
    if pca_passes:
        extra["pca_passes"] = int(pca_passes)
    if pca_rtol is not None:
        extra["pca_rtol"] = float(pca_rtol)
    if out_name:
        extra["out_name"] = str(out_name)
    return extra


#: --glm modifiers (besides cols=) that may follow the first one without repeating --glm
GLM_WORDS = ("linear", "logistic", "trend", "hide-covar", "allow-no-covars")


def mach_r2_bounds(value, args=()) -> tuple[list[float] | None, list[str]]:
    """plink2's ``--mach-r2-filter [min] [max]`` (defaults 0.1 and 2.0): (bounds or None, the other extra args).

    ``value``: the option's value ('' when given bare); a max given after it arrives among
    the command's extra arguments (the first number there).
    """
    rest = list(args)
    if value is None:
        return None, rest
    try:
        lo = float(value) if value != "" else 0.1
        hi = 2.0
        nums = [a for a in rest if _is_number(a)]
        if nums and value != "":
            hi = float(nums[0])
            rest.remove(nums[0])
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number", param_hint="--mach-r2-filter") from None
    return [lo, hi], rest


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def gwas_params_from_cli(pheno_name, covar_names, mind, geno, maf, hwe, glm, ci, pca, block, extract=None,
                         exclude=None, chrom=None, from_bp=None, to_bp=None, extra=None, pca_variants=0,
                         mach_r2_filter=None):
    from cipherome.genomics.errors import InputError
    from cipherome.genomics.gwas.glm_cols import parse_cols
    from cipherome.genomics.gwas.params import GwasParams
    from cipherome.genomics.gwas.select import parse_chr_list, read_id_list

    try:
        ids_in = read_id_list(extract) if extract else None
        ids_out = read_id_list(exclude) if exclude else None
        chroms = parse_chr_list(chrom) if chrom else None
    except InputError as exc:
        raise click.UsageError(str(exc)) from None

    covs = [c for part in covar_names for c in part.split(",") if c] or None
    glm_mode = "auto"
    hide = True
    cols, drop = [], []
    for word in glm:
        if word.startswith("cols="):
            try:
                cols, drop = parse_cols(word[5:])
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--glm") from None
            continue
        if word in ("linear", "logistic", "trend"):
            glm_mode = word
        elif word == "hide-covar":
            hide = True
        elif word in ("firth-fallback", "no-firth"):  # firth-fallback is the default, as plink2's
            extra = {**(extra or {}), "no_firth": word == "no-firth"}
        elif word == "allow-no-covars":
            if covs:
                raise click.UsageError("--glm allow-no-covars runs without covariates; drop --covar-name")
            covs = []
        else:
            raise click.BadParameter(f"unknown --glm modifier {word!r} (linear, logistic, trend, hide-covar,"
                                     " firth-fallback, no-firth, allow-no-covars, cols=)", param_hint="--glm")
    del hide  # covariate rows are never released: hide-covar is the only mode
    try:
        return GwasParams(pheno_name=pheno_name, covar_names=covs, mind=mind, geno=geno, maf=maf, hwe=hwe,
                          glm=glm_mode, ci=ci, pca=pca, block=block, extract=ids_in, exclude=ids_out,
                          chroms=chroms, from_bp=from_bp, to_bp=to_bp, pca_variants=int(pca_variants or 0),
                          mach_r2_filter=mach_r2_filter, glm_cols=cols, glm_drop=drop,
                          extra=dict(extra or {})).validate()
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


@click.command("gwas", context_settings={"allow_extra_args": True})
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
              help="linear | logistic | trend, optionally hide-covar (always on), allow-no-covars (ignore the "
                   "sites' covariate files) and cols=SETS (plink2's column sets; +a1freq, +a1freqcc, +machr2 "
                   "release A1_FREQ, A1_CASE_FREQ/A1_CTRL_FREQ, MACH_R2: disclosures, only when asked).  "
                   "[default: linear for a quantitative trait, logistic for a case/control trait, as PLINK 2]")
@click.option("--mach-r2-filter", "mach_r2_filter", is_flag=False, flag_value="", default=None, metavar="[MIN [MAX]]",
              help="Remove variants whose pooled dosages' MaCH r2 is below MIN or above MAX (plink2's defaults 0.1 "
                   "and 2.0; monomorphic variants stay).  [default: off]")
@click.option("--covar-variance-standardize", "covar_standardize", is_flag=True,
              help="Accepted for plink2 compatibility: results are invariant, since the secure GWAS always"
                   " standardises the covariates with their pooled means and variances.")
@click.option("--ci", type=float, default=None,
              help="Add L95/U95 confidence intervals at this level, e.g. 0.95.  [default: none]")
@click.option("--pca", type=click.IntRange(min=0), default=0, show_default=True,
              help="K principal components of plink2 --pca's matrix on every QC-passing variant, securely, "
                   "adjusted for (0: none); named PC1..PCK, eigenvalues in PREFIX.PHENO.eigenval; "
                   "'--pca K approx' uses plink2 --pca approx's (mean-imputed) matrix.")
@click.option("--pca-extract", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Public list of variant IDs (e.g. from plink2 --indep-pairwise) to compute the PCs on.")
@click.option("--pca-thin-count", type=click.IntRange(min=1), default=None,
              help="PCs on N evenly spaced PCA variants only.  [default: all]")
@click.option("--pca-bp-space", type=click.IntRange(min=1), default=None,
              help="PCs on variants at least BP apart only (plink2 --bp-space).  [default: all]")
@click.option("--pca-passes", type=click.IntRange(min=1), default=None,
              help="Fixed number of Krylov passes instead of the convergence stop (the pass count is then not "
                   "disclosed to the dealer).  [default: stop at the residual tolerance]")
@click.option("--pca-rtol", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
              help="Stop the PCA when every PC's relative residual |Kv - lambda v| / lambda is at most this: each "
                   "eigenvalue is then within this fraction of the exact one. Larger is faster; the PCs themselves "
                   "may then mix with noise components of nearly equal eigenvalue (docs/pca_logistic.md, 'When to "
                   "stop').  [default: 0.002]")
@click.option("--pca-mode", type=click.Choice(["shared", "pooled"]), default="shared", show_default=True,
              help="shared: the PCA's iterates stay secret-shared. pooled: each site multiplies its own "
                   "genotypes in plaintext and only pooled per-variant products are opened (much faster on large "
                   "studies; a disclosure every site must allow: pca_pooled_products = true, see "
                   "docs/threat_model.md).")
@click.option("--block-size", "block", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Variants per association block (bounds memory, not rounds).")
@click.option("--block", "block_alias", type=click.IntRange(min=1), default=None, hidden=True)  # old spelling
@click.option("--extract", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Test only the variants whose IDs this file lists (sent with the job).  [default: all]")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Leave out the variants whose IDs this file lists (sent with the job).  [default: none]")
@click.option("--chr", "chrom", default=None, metavar="LIST", help="Chromosomes to test, e.g. 1-4,X.  [default: all]")
@click.option("--from-bp", type=int, default=None, help="First position to test (needs one --chr).")
@click.option("--to-bp", type=int, default=None, help="Last position to test (needs one --chr).")
@click.option("--threads", type=int, default=None,
              help="Accepted for PLINK compatibility and ignored (each daemon uses its own threads).")
@click.pass_context
def gwas(cctx, study_path, key, cert, prefix, pheno_name, covar_names, mind, geno, maf, hwe, glm, mach_r2_filter,
         covar_standardize, ci, pca, pca_extract, pca_thin_count, pca_bp_space, pca_passes, pca_rtol, pca_mode, block,
         block_alias,
         extract, exclude, chrom, from_bp, to_bp, threads):
    """Secure GWAS over the study's sites; writes PREFIX.PHENO.glm.linear (.glm.logistic.hybrid, .trend), .qc.json,
    .manhattan.png, .qq.png, .run.json (and .eigenval with --pca).

    Prints the QC summary, including the variants withheld by the sites' min_cell_size policy. With
    --pca K each site's daemon writes its own samples' scores to PREFIX.SITE.eigenvec in its output
    folder (``output_dir`` in its [data] table, default: beside its genotype file).
    """
    from pathlib import Path

    from cipherome.genomics.gwas.output import result_table, write_gwas_outputs

    from .submit import run_workload

    del covar_standardize  # invariant: stage 4 of the job standardises every covariate anyway
    r2_bounds, args = mach_r2_bounds(mach_r2_filter, cctx.args)
    # plink2 writes --glm's modifiers after one flag (--glm hide-covar cols=+a1freq): the later words arrive here
    glm = tuple(glm) + tuple(a for a in args if a in GLM_WORDS or a.startswith("cols="))
    args = [a for a in args if not (a in GLM_WORDS or a.startswith("cols="))]
    if args and not pca:
        raise click.UsageError(f"unexpected argument(s) {' '.join(args)}")
    extra = (pca_extra(args, pca_extract, pca_thin_count, pca_bp_space, pca_passes, Path(prefix).name, pca_mode,
                       pca_rtol) if pca else {})
    params = gwas_params_from_cli(pheno_name, covar_names, mind, geno, maf, hwe, glm, ci, pca, block_alias or block,
                                  extract, exclude, chrom, from_bp, to_bp, extra, pca_thin_count, r2_bounds)
    t0 = time.perf_counter()
    result, reports = run_workload(study_path, key, cert, "gwas", params.to_dict(), "secure GWAS")
    pheno = result.get("pheno") or pheno_name or "PHENO1"
    paths = write_gwas_outputs(prefix, pheno, result, reports)
    table, _ = result_table(result)
    print_top_hits(table)
    click.echo(qc_summary(result), err=True)
    click.echo(f"{len(table)} variants tested in {time.perf_counter() - t0:.1f} s; wrote "
               + ", ".join(str(p) for p in paths.values()), err=True)
