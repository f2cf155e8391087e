"""``cipherome local-stats``: a site's own allele frequencies, missingness and genotype counts, as plink2 reports them.

What a site runs on its data before it joins a study: it reads a PLINK 1 fileset, a
PLINK 2 fileset (.pgen, hard calls and dosages) or a VCF/BCF in blocks and writes PREFIX.afreq, PREFIX.vmiss and PREFIX.gcount with the
columns and number format of ``plink2 --freq --missing --geno-counts``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

__all__ = ["local_stats"]


@click.command("local-stats")
@click.option("--bfile", "bfile", metavar="PREFIX", help="PLINK 1 fileset PREFIX.bed/.bim/.fam.")
@click.option("--pfile", "pfile", metavar="PREFIX",
              help="PLINK 2 fileset PREFIX.pgen/.pvar/.psam (dosages used where stored, as plink2 does).")
@click.option("--bgen", "bgen", metavar="FILE", help="BGEN 1.2/1.3 file (dosages; REF is the last allele).")
@click.option("--sample", "sample", metavar="FILE", help="With --bgen: its Oxford .sample file.")
@click.option("--vcf", "vcf", metavar="FILE", help="VCF, bgzipped VCF or BCF file.")
@click.option("--pheno", "pheno", metavar="FILE", help="Phenotype file (#FID IID ... / #IID ...).")
@click.option("--pheno-name", "pheno_name", metavar="NAME",
              help="Phenotype column (default: the first). Samples missing it are left out, as with"
                   " plink2 --require-pheno; a binary trait also gives PREFIX.cases.gcount and"
                   " PREFIX.controls.gcount.")
@click.option("--1", "control_zero", is_flag=True, help="Binary phenotypes are coded 0 control / 1 case.")
@click.option("--strict-samples", is_flag=True,
              help="Fail if a sample is in only one of the genotype and phenotype files.")
@click.option("--vcf-dosage", "vcf_dosage", type=click.Choice(["DS", "GP"]),
              help="With --vcf: read dosages from this FORMAT field (as plink2 --vcf FILE dosage=DS).")
@click.option("--region", metavar="CHR[:START-END]", help="VCF/BCF only: read one region (needs an index).")
@click.option("--vcf-half-call", "half_call", default="error", show_default=True,
              type=click.Choice(["error", "missing", "haploid", "reference"]),
              help="How to treat GT half-calls such as ./1 (as plink2 --vcf-half-call).")
@click.option("--multiallelic", default="split", show_default=True, type=click.Choice(["split", "skip"]),
              help="VCF/BCF records with several ALT alleles: one row per ALT, or leave them out.")
@click.option("--block-size", type=click.IntRange(min=1), metavar="N",
              help="Variants per block (default: about 32 MB of genotypes).")
@click.option("--out", "out", required=True, metavar="PREFIX", help="Output prefix.")
def local_stats(bfile, pfile, bgen, sample, vcf, vcf_dosage, pheno, pheno_name, control_zero, strict_samples, region, half_call,
                multiallelic, block_size, out):
    """Allele frequencies (.afreq), variant missingness (.vmiss) and genotype counts (.gcount).

    Output equals plink2 --freq --missing --geno-counts on the same input: haploid
    chromosomes follow plink2's rules (chrX males and chrY from the .fam sex column,
    MT for everyone; VCF input has no sex, so chrX is diploid and chrY uncounted, as in
    plink2 --vcf without --update-sex). Multi-allelic VCF records are split into one
    row per ALT allele. With dosages (.pgen, BGEN), ALT_FREQS and OBS_CT come from the
    dosages and .vmiss/.gcount from the hard calls, as plink2 computes them.
    """
    from cipherome.genomics.errors import InputError

    try:
        _run(bfile, pfile, bgen, sample, vcf, vcf_dosage, pheno, pheno_name, control_zero, strict_samples, region, half_call,
             multiallelic, block_size, out)
    except InputError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out}: {e.strerror or e}") from None


def _run(bfile, pfile, bgen, sample, vcf, vcf_dosage, pheno, pheno_name, control_zero, strict_samples, region, half_call,
         multiallelic, block_size, out):
    from cipherome.genomics.io.bed import BedReader
    from cipherome.genomics.errors import InputError
    from cipherome.genomics.io.formats import (AFREQ_HEADER, GCOUNT_HEADER, VMISS_HEADER, afreq_rows,
                                            atomic_outputs, gcount_rows, vmiss_rows)
    from cipherome.genomics.local.stats import dosage_sums, group_genotype_counts
    from cipherome.genomics.io.pheno import align_to_samples, read_pheno
    from cipherome.genomics.io.pgen import PgenReader
    from cipherome.genomics.io.ploidy import dosage_freq, plink_counts, ploidy_class
    from cipherome.genomics.progress import Progress
    from cipherome.genomics.io.variants import normalize_chroms
    from cipherome.genomics.io.vcf import VcfReader

    if sum(x is not None for x in (bfile, pfile, bgen, vcf)) != 1:
        raise InputError("give exactly one of --bfile PREFIX, --pfile PREFIX, --bgen FILE and --vcf FILE")
    if sample is not None and bgen is None:
        raise InputError("--sample works with --bgen only")
    if vcf_dosage is not None and vcf is None:
        raise InputError("--vcf-dosage works with --vcf only")
    if region is not None and vcf is None:
        raise InputError("--region works with --vcf only")
    if pheno_name is not None and pheno is None:
        raise InputError("--pheno-name needs --pheno FILE")
    if bfile is not None:
        reader = BedReader(bfile, block_size=block_size)
        total = reader.n_variants
        source = f"{bfile}.bed"
    elif vcf_dosage is not None:
        from cipherome.genomics.io.vcf_dosage import VcfDosageReader

        reader = VcfDosageReader(vcf, vcf_dosage, region=region, block_size=block_size)
        total = None
        source = vcf
    elif bgen is not None:
        from cipherome.genomics.io.bgen import BgenReader

        reader = BgenReader(bgen, sample, block_size=block_size)
        total = reader.n_variants
        source = bgen
    elif pfile is not None:
        reader = PgenReader(pfile, block_size=block_size)
        total = reader.n_variants
        source = f"{pfile}.pgen"
    else:
        reader = VcfReader(vcf, region=region, block_size=block_size, multiallelic=multiallelic,
                           half_call=half_call)
        total = None
        source = vcf
    samples = reader.samples
    n = len(samples)
    mask = np.ones(n, dtype=bool)
    status = None  # 0/1 per sample for a binary trait
    if pheno is not None:
        table = read_pheno(pheno, names=None if pheno_name is None else [pheno_name],
                           control_zero=control_zero)
        values = align_to_samples(table, samples, strict=strict_samples)[:, 0]
        mask = ~np.isnan(values)
        if not mask.any():
            raise InputError(f"{pheno}: no genotype sample has a value in column {table.names[0]!r};"
                             " check the sample IDs (FID/IID) and the column name")
        if table.binary[0]:
            status = values
    male = samples.sex == 1
    # groups: 0 male, 1 other (x2 for control/case when the trait is binary); -1 left out
    groups = np.where(male, 0, 1)
    n_groups = 2
    if status is not None:
        groups = groups + 2 * np.nan_to_num(status).astype(np.int64)
        n_groups = 4
    groups = np.where(mask, groups, -1)

    prefix = Path(out)
    names = ["afreq", "vmiss", "gcount"] + (["cases.gcount", "controls.gcount"] if status is not None else [])
    paths = [prefix.with_name(prefix.name + "." + s) for s in names]
    progress = Progress("local-stats", total=total, stream=sys.stderr)
    done = 0
    with atomic_outputs(paths) as fh:
        fh[0].write(AFREQ_HEADER)
        fh[1].write(VMISS_HEADER)
        for h in fh[2:]:
            h.write(GCOUNT_HEADER)
        for block in reader.blocks():
            counts = group_genotype_counts(block, groups, n_groups)
            v = block.variants
            chrom = normalize_chroms(v.chrom)
            classes = ploidy_class(chrom)
            if status is not None:
                controls, cases = counts[:, 0:2], counts[:, 2:4]
                pc = plink_counts(controls + cases, classes)
                fh[3].write(gcount_rows(v, plink_counts(cases, classes), chrom))
                fh[4].write(gcount_rows(v, plink_counts(controls, classes), chrom))
            else:
                pc = plink_counts(counts, classes)
            if block.float_dosage is not None:  # .afreq from the dosages, the rest from hard calls
                dsum = dosage_sums(block.float_dosage, groups, n_groups)
                alt_ct, obs = dosage_freq(dsum.reshape(len(v), -1, 2, 2).sum(axis=1), classes)
                pc = pc._replace(alt_ct=alt_ct, allele_obs=obs)
            fh[0].write(afreq_rows(v, pc, chrom))
            fh[1].write(vmiss_rows(v, pc, chrom))
            fh[2].write(gcount_rows(v, pc, chrom))
            done += len(block)
            progress.update(done)
    progress.finish()
    used = int(mask.sum())
    click.echo(f"local-stats: {done:,} variants x {used:,} samples"
               f"{'' if used == n else f' ({n - used:,} without phenotype left out)'} from {source};"
               f" wrote {', '.join(str(p) for p in paths)}", err=True)
