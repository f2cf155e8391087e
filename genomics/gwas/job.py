"""The secure GWAS job: sample QC, common variants, variant QC, standardisation, association.

It runs at every compute party (``@job("gwas")``) on that site's ``SiteData``;
only the lead returns the variant columns for the output files. Stages, with
what each opens (the disclosure ledger lists the same labels):

1. local: ``--mind`` sample QC and complete-case selection; nothing leaves the site;
2. metadata: sample counts and trait type (public within the study); the common
   variants by a secure intersection (``genomics.gwas.variants``): each site learns
   which of its own variants are common to all sites, nothing about the others';
3. variant QC over the pooled counts: one pass/fail bit per variant (``qc.pass``)
   and the tested allele A1 (``gwas.a1_is_alt``: is ALT the non-major allele);
3b. with ``--pca K``, secure PCA (``genomics.gwas.pca``): Gram matrices of the Krylov basis
   (``pca.gram``), the pass count to the dealer (``pca.passes``) and each site's own samples'
   PC scores, to that site only (``pca.scores``), which join the covariates and are written
   at that site to ``OUT.SITE.eigenvec`` in its output folder;
4. standardisation: pooled means and variances of the phenotype and covariates
   (``gwas.covariate_moments``), used as a public affine transform, which leaves
   every association statistic unchanged and keeps fixed-point values O(1);
5. association of all QC-passing variants in one protocol run (sites read their
   genotypes ``block`` variants at a time; the secure stage's rounds do not grow with
   the number of variants): each site's spectral bound of its missing calls
   (``gwas.missing_bound``, which sets the Neumann length), OBS_CT, the effect and its test
   statistic per variant (``gwas.obs_ct``, ``gwas.beta``, ``gwas.t_stat`` or
   ``gwas.chisq``) and the ERRCODE bit for constant genotypes (``gwas.const``);
   for ``--glm logistic`` the labels of ``genomics.logistic`` (null-model sums, score
   statistic of every variant, Wald fits of the top hits).
"""
from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from cipherome.mpc.errors import PublicError
from cipherome.mpc.jobs import job
from cipherome.mpc.ledger import DISCLOSED, PUBLIC
from cipherome.mpc.pipeline import contiguous_parts, stagger

from cipherome.genomics.gwas import qc as gwas_qc
from cipherome.genomics.gwas import stats as gwas_stats
from cipherome.genomics.gwas.assoc import (SiteTerms, pool_terms, project_off_covariates, site_terms, whiten,
                                           study_series_terms)
from cipherome.genomics.local.background import Background
from cipherome.genomics.local.stats import SiteDesign, VariantSums, genotype_counts, variant_sums
from cipherome.genomics.gwas.params import MAX_CORR, MAX_VIF, GwasParams
from cipherome.genomics.gwas.select import select_variants
from cipherome.genomics.gwas.logistic import logistic_association
from cipherome.genomics.gwas.machr2 import site_dosage_sums
from cipherome.genomics.gwas.glm_cols import OPTIONAL, ColumnSums, release_columns
from cipherome.genomics.gwas.pca import (MEMORY_FRACTION, PCAParams, prefault_operator, secure_pca, select_pca_variants,
                                         write_eigenvec)
from cipherome.genomics.job_memory import refuse_over_budget, site_budget
from cipherome.genomics.policy import (check_pca_loadings, min_sites, pca_allows_loadings, require_sites,
                                       shares_variant_list)
from cipherome.genomics.site import SiteData, binary_trait
from cipherome.genomics.gwas.variants import common_variants
from cipherome.genomics.io.dosage import DOSAGE_UNIT

__all__ = ["run_gwas", "gwas_job", "local_sample_qc", "association_memory", "prefetch_fits"]

log = logging.getLogger("cipherome.gwas")


#: the per-variant stages (variant QC, the association's projection and statistics) run their
#: variants in this many parts whose rounds overlap each other's computation (``mpc.pipeline.stagger``):
#: the same bytes and rounds; on a link with round-trip time L a round costs max(L, compute)
#: instead of L + compute
STAGGER_PARTS = 4

#: the association's memory per party and tested variant, about ASSOC_BYTES + ASSOC_TERM_BYTES k(k+1)/2
#: for k design columns: every tested variant is in one protocol run (its rounds do not grow with the
#: study), so its per-variant arrays (sums, shares, the missing-call masks, the series) are held at once.
#: Measured peak traced memory of 3 parties and the dealer in process (1,500 samples, 3,000 and 6,000
#: variants; linear), divided by 4, per tested variant: 3.1 kB at k = 5, 8.2-9.4 kB at k = 13, 20.9-21.8 kB
#: at k = 23. The estimate stays about 20% below them (2.3, 6.5, 16.7 kB), so that no job that fits is
#: refused (``tests/test_gwas_memory.py`` checks it against a measured peak)
ASSOC_BYTES, ASSOC_TERM_BYTES = 1500, 55


def association_memory(n_tested: int, k: int) -> int:
    """Estimated bytes of the association at each party (``ASSOC_BYTES``)."""
    return int(n_tested) * (ASSOC_BYTES + ASSOC_TERM_BYTES * k * (k + 1) // 2)


def prefetch_fits(n_common: int, k: int, budget: int) -> bool:
    """Whether the association's local sums of all ``n_common`` variants, computed during variant QC, fit
    ``budget`` bytes, judged by the association's own estimate for as many tested variants (the sums
    are part of what that estimate counts)."""
    return association_memory(n_common, k) <= budget


def _statistics(ctx, pooled, terms: np.ndarray, obs_ct: np.ndarray, k: int, glm: str, n_total: int) -> dict:
    """``stats.finish`` of ``project_off_covariates`` (lean) over every tested variant, in staggered parts."""
    parts = contiguous_parts(obs_ct.shape[0], STAGGER_PARTS)
    with ctx.lean():  # per-variant arrays: the lean openings (one more round, a third of the bytes) pay
        pms = stagger(ctx, [lambda sl=sl: project_off_covariates(pooled.part(sl), terms[sl]) for sl in parts])
    outs = stagger(ctx, [lambda sl=sl, pm=pm: gwas_stats.finish(ctx, pm, obs_ct[sl], k, glm, n_total)
                         for sl, pm in zip(parts, pms)])
    return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}


def local_sample_qc(site: SiteData, mind: float | None, block: int = 8192) -> np.ndarray:
    """(n,) bool: samples kept by ``--mind`` (missing-call rate over all the site's variants <= mind)."""
    n = site.n
    if mind is None:
        return np.ones(n, dtype=bool)
    m = len(site.variants)
    missing = np.zeros(n, dtype=np.int64)
    everyone = np.ones(n, dtype=bool)
    for start in range(0, m, block):
        g = site.read(np.arange(start, min(start + block, m)), everyone)
        missing += (g < 0).sum(axis=0)
    # PLINK removes F_MISS > mind, compared exactly: missing * den > num * m
    from fractions import Fraction

    t = Fraction(str(mind))
    return ~(missing * t.denominator > t.numerator * m)


def _standardise(ctx, y: np.ndarray, cov: np.ndarray, names: list[str], n_total: int, binary: bool = False):
    """Open the pooled moments and return (y standardised, [1, covariates standardised], A^-1, sd(y)).

    Opened (``gwas.covariate_moments``), in two rounds: first the means of the
    phenotype and covariates, then the second moments *about those public means*
    (phenotype variance, covariate covariance matrix), which each site sums in
    float64 before they enter the ring; phenotype-covariate cross moments stay
    secret. Centring first makes the variances exact to the fixed-point resolution
    ``ulp = 2^-frac``: for a constant column every site's term is ~0, so the opened
    variance is at most ``n_sites * ulp / 2`` (each site's term rounds to half an
    ulp); a variance at or below ``n_sites * ulp`` is therefore decided constant,
    whatever the column's mean. The affine transform the moments define is public,
    leaves every association statistic unchanged and keeps the fixed-point values
    O(1); A = X'X/N of the standardised design is then public too.
    """
    c = cov.shape[1]
    n = max(n_total, 1)
    first = np.concatenate([[y.sum()], cov.sum(0)]) / n
    means = ctx.open(ctx.inputs_sum(first, shape=first.shape, frac=ctx.frac), "gwas.covariate_moments")
    my, mx = float(means[0]), means[1:]
    yc, xc = y - my, cov - mx
    second = np.concatenate([[yc @ yc], (xc.T @ xc).ravel()]) / n
    mom = ctx.open(ctx.inputs_sum(second, shape=second.shape, frac=ctx.frac), "gwas.covariate_moments")
    vy, covx = float(mom[0]), mom[1:].reshape(c, c)
    tol = ctx.n * 2.0 ** -ctx.frac
    if vy <= tol:
        if binary:
            who = "a case" if my > 0.5 else "a control"
            raise PublicError(f"every one of the study's {n_total} samples is {who}; a case/control GWAS needs both "
                              "cases and controls: check the phenotype column and its coding (--1)")
        raise PublicError(f"the phenotype is constant over the study's {n_total} samples (variance <= {tol:.2g}, the "
                          f"fixed-point resolution); a GWAS needs a phenotype that varies: check --pheno-name")
    bad = [names[i] for i in np.flatnonzero(np.diag(covx) <= tol)]
    if bad:
        raise PublicError(f"covariate(s) {', '.join(bad)} constant over the study's {n_total} samples (variance <= "
                          f"{tol:.2g}, the fixed-point resolution); remove them from --covar-name")
    sd_y, sx = float(np.sqrt(vy)), np.sqrt(np.diag(covx))
    corr = covx / np.outer(sx, sx)
    if c > 1:
        off = np.abs(corr - np.eye(c))
        i, j = np.unravel_index(np.argmax(off), off.shape)
        if off[i, j] > MAX_CORR:
            raise PublicError(f"covariates {names[i]} and {names[j]} are collinear (|corr| = {off[i, j]:.4f} > "
                              f"{MAX_CORR}); remove one of them")
        vif = np.diag(np.linalg.inv(corr))
        if vif.max() > MAX_VIF:
            raise PublicError(f"covariate {names[int(np.argmax(vif))]} has VIF {vif.max():.1f} > {MAX_VIF}; "
                              "the covariates are nearly collinear")
    a = np.eye(c + 1)
    a[1:, 1:] = corr
    xs = np.column_stack([np.ones(len(y)), (cov - mx) / sx])
    return (y - my) / sd_y, xs, np.linalg.inv(a), sd_y


def _dosage_qc_columns(site: SiteData, sv, idx: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(V, 3) int64: samples with a dosage, the ALT dosage sum and the sum of squared dosages in units
    of 1/DOSAGE_UNIT (``machr2.site_dosage_sums``). A hard-call site gives its calls (from ``counts``).
    """
    if site.read_dosage is None:
        het, hom = counts[:, 1], counts[:, 2]
        return np.column_stack([counts[:, :3].sum(axis=1), (het + 2 * hom) * DOSAGE_UNIT, (het + 4 * hom) * DOSAGE_UNIT])
    return site_dosage_sums(sv.read(site, idx, mask, dosage=True), DOSAGE_UNIT)[:, 0, :]


def _progress(ctx, stage: str, done: int, total: int, t0: float) -> None:
    st = ctx.transport.stats
    ctx.progress = f"{stage}: {done}/{total} variants"
    log.info("%s: %d/%d variants, %.1f s, %.1f MB sent", stage, done, total, time.perf_counter() - t0, st.bytes_sent / 1e6)


def _site_sums(ctx, stage: str, total: int, block: int, t0: float, sums, stop=None) -> VariantSums | None:
    """This site's ``VariantSums`` of variants 0..total-1, read ``block`` at a time (local, no traffic).

    ``stop``: a ``threading.Event``; once set, the loop ends between blocks and returns None."""
    if total < 1:  # the callers stop earlier (no common variant, no tested variant)
        raise ValueError("no variants to sum")
    out = None  # filled block by block: no list of parts beside a concatenated copy (2 x 100 MB at 100,000 x 13)
    for start in range(0, total, block):
        if stop is not None and stop.is_set():
            return None
        part = sums(np.arange(start, min(start + block, total)))
        if out is None:
            out = VariantSums(*(np.empty((total,) + a.shape[1:], a.dtype) for a in part))
        for whole, a in zip(out, part):
            whole[start:start + len(a)] = a
        _progress(ctx, f"{stage} (local sums)", min(start + block, total), total, t0)
    return out


def _association_inputs(ctx, site, sv, mask, design: SiteDesign, n_assoc: int, block: int, stop=None):
    """(VariantSums, SiteTerms) of every common variant: the linear association's local inputs (plaintext),
    from the whitened design (``assoc.whiten``)."""
    t0 = time.perf_counter()
    vs = _site_sums(ctx, "variant_qc, association sums beside its rounds", len(sv), block, t0,
                    lambda sel: variant_sums(sv.read_calls(site, sel, mask), design), stop)
    return None if vs is None else (vs, site_terms(design.sums, vs, None, n_assoc))


def run_gwas(ctx, params: GwasParams, site: SiteData) -> dict:
    """The GWAS at one compute party; returns the public results (variant columns at the lead)."""
    try:
        params.validate()
    except ValueError as exc:  # the parameters are public
        raise PublicError(str(exc)) from None
    t_start = time.perf_counter()

    # 1. local sample selection -----------------------------------------------------
    with ctx.stage("sample_qc"):
        keep = local_sample_qc(site, params.mind)
        if site.included is not None:  # the site's keep/remove lists
            keep &= site.included
        cov, cov_names = site.select_covariates(params.covar_names)
        y = site.y
        complete = keep & np.isfinite(y) & np.all(np.isfinite(cov), axis=1)

    # 2. public metadata ----------------------------------------------------------------
    with ctx.stage("metadata"):
        binary = binary_trait(y[complete])
        min_cell = int(site.policy.get("min_cell_size", 0))
        meta = np.array([keep.sum(), complete.sum(), int(binary), len(cov_names), min_cell,
                         int(site.read_dosage is not None), min_sites(site.policy),
                         int(pca_allows_loadings(site.policy)), int(shares_variant_list(site.policy)),
                         site_budget(site.policy, MEMORY_FRACTION) >> 20],  # memory budget, MiB
                        dtype=np.int64)
        metas = ctx.allgather(meta, "gwas.site_counts", kind=PUBLIC)
        require_sites(ctx.n, [int(m[6]) for m in metas], "gwas")
        if len({int(m[3]) for m in metas}) != 1:
            raise PublicError("sites disagree on the number of covariates")
        n_qc = int(sum(int(m[0]) for m in metas))
        n_assoc = int(sum(int(m[1]) for m in metas))
        is_binary = all(int(m[2]) for m in metas)
        dosage = any(int(m[5]) for m in metas)  # imputed dosages at some site: plink2's dosage rules
        budgets = [int(m[9]) << 20 for m in metas]  # each site's memory budget in bytes, as it sent it
        # the strictest site's policy applies to every released statistic
        params.min_cell_size = max(int(m[4]) for m in metas)
        empty = [ctx.parties[i] for i, m in enumerate(metas) if int(m[1]) == 0]
        if empty:
            if int(meta[1]) == 0:
                log.error("this site has no sample with a phenotype and every covariate: %d genotype samples, %d "
                          "pass --mind, %d with a phenotype; check that the phenotype file's IDs match the genotype "
                          "file's", site.n, int(keep.sum()), int(np.isfinite(y).sum()))
            raise PublicError(f"site(s) {', '.join(empty)} contribute no sample with a phenotype and the covariates "
                              "(e.g. its phenotype IDs match none of its genotype samples); see its log")
        if n_assoc < max(params.min_cell_size, 1):
            raise PublicError(f"the study has {n_assoc} samples with phenotype and covariates, fewer than the "
                             f"minimum cell size {params.min_cell_size} of the sites' disclosure policies")
        chosen = np.flatnonzero(select_variants(site.variants, params.extract, params.exclude, params.chroms,
                                                params.from_bp, params.to_bp))
    glm = params.glm
    if glm == "auto":  # as PLINK 2: logistic regression for case/control traits
        glm = "logistic" if is_binary else "linear"
    if glm == "logistic" and not is_binary:
        raise PublicError("--glm logistic needs a case/control phenotype (1 = case, 0 = control at every site)")
    # linear/trend on hard calls without --pca: the covariates are final before QC, so the public
    # standardisation comes first and the association's local sums run beside the QC rounds
    early = (not params.pca and glm != "logistic" and not dosage and not set(params.glm_cols) & set(OPTIONAL))
    with ctx.stage("variant_intersection"):
        sv = common_variants(ctx, site.variants[chosen], params.variant_bound, site.name,
                             shared_lists=all(int(m[8]) for m in metas))
        sv.local_index = chosen[sv.local_index]  # rows of the site's file
        if ctx.is_lead:
            sv.lead_index = chosen[sv.lead_index]
        n_var = len(sv)
        if n_var == 0:
            raise PublicError("the sites share no variant (matched on chromosome, position and alleles); check that "
                              "every site uses the same genome build and chromosome names")
        log.info("study: %d samples for QC, %d for association, %d common variants", n_qc, n_assoc, n_var)

    prefetch = None
    if early:
        with ctx.stage("standardise"):
            ys, xs, ainv, sd_y = _standardise(ctx, y[complete], cov[complete], cov_names, n_assoc, is_binary)
            k = xs.shape[1]

    # 3. variant QC ------------------------------------------------------------------------
    # the pooled PCA's matrices are faulted in while the QC rounds wait (``pca.prefault_operator``)
    warm = prefault_operator(site, params, n_var, int(keep.sum()), dosage) if params.pca else None
    with ctx.stage("variant_qc"):
        counts = np.zeros((n_var, 4), dtype=np.int64)
        dcols = np.zeros((n_var, 3), dtype=np.int64) if dosage else None
        for start in range(0, n_var, params.block):
            idx = np.arange(start, min(start + params.block, n_var))
            counts[idx] = genotype_counts(sv.read_calls(site, idx, keep))
            if dosage:
                dcols[idx] = _dosage_qc_columns(site, sv, idx, keep, counts[idx])
        # every common variant's sums, while the QC rounds wait for the peers; they are held for every
        # common variant, and the association's budget check below counts only the tested ones, so a
        # study whose common variants would not fit this site's budget computes them after QC instead
        early_sums = early and prefetch_fits(n_var, k, budgets[ctx.index])
        if early and not early_sums:
            log.info("association sums after QC: %d common variants exceed this site's memory budget", n_var)
        if early_sums:
            design = SiteDesign(whiten(xs, ainv), ys)
            prefetch = Background(lambda stop: _association_inputs(ctx, site, sv, complete, design, n_assoc,
                                                                   params.block, stop))
        try:  # per-variant arrays: the lean truncation (one more round, a third of the bytes) pays
            with ctx.lean():
                qc = gwas_qc.secure_variant_qc(ctx, counts, n_qc, params, dosage=dcols, unit=DOSAGE_UNIT,
                                               parts=STAGGER_PARTS)
        except BaseException:
            if prefetch is not None:
                prefetch.cancel()
            raise
        passed = np.flatnonzero(qc.passed)

    # 3b. secure PCA (--pca K): each site learns its own samples' scores, added as covariates --------
    pca = None
    if params.pca:
        with ctx.stage("pca"):
            n_pca = len(select_pca_variants(site, sv, passed, PCAParams.from_gwas(params)))
            check_pca_loadings(ctx.parties, [int(m[0]) for m in metas], [bool(m[7]) for m in metas], n_pca)
            if warm is not None:
                warm.release()  # its pages back to the heap, for the PCA's matrices
            pca = secure_pca(ctx, site, sv, passed, keep, params, dosage=dosage)
            if site.output_dir:  # this site's own scores, at this site only (PLINK's .eigenvec)
                stem = Path(str(params.extra.get("out_name") or "cipherome")).name or "cipherome"  # no folders
                name = f"{stem}.{site.name}.eigenvec"
                write_eigenvec(Path(site.output_dir) / name, None if site.fid is None else site.fid[keep],
                               site.iid[keep], pca.scores_own)
            taken = set(cov_names)
            names = [f"PC{i + 1}" if f"PC{i + 1}" not in taken else f"SECURE_PC{i + 1}" for i in range(params.pca)]
            # unit variance (PLINK's unit-norm eigenvectors times sqrt(N)) keeps the moments O(1)
            cov = np.column_stack([cov, pca.site_scores() * np.sqrt(n_qc)])
            cov_names = list(cov_names) + names
            complete = keep & np.isfinite(y) & np.all(np.isfinite(cov), axis=1)

    # 4. public standardisation -------------------------------------------------------------
    if not early:
        with ctx.stage("standardise"):
            ys, xs, ainv, sd_y = _standardise(ctx, y[complete], cov[complete], cov_names, n_assoc, is_binary)
            k = xs.shape[1]

    # 5. association ------------------------------------------------------------------------------
    with ctx.stage("association"):
        try:  # before its arrays exist: every tested variant is held at once
            refuse_over_budget(list(ctx.parties), [association_memory(len(passed), k)] * ctx.n,
                               budgets,
                               f"the association of {len(passed)} tested variants with {k} design columns needs about",
                               "test fewer variants in one run (--chr, --extract)", MEMORY_FRACTION)
        except BaseException:
            if prefetch is not None:
                prefetch.cancel()
            raise
        read = lambda sel: sv.read(site, passed[sel], complete, dosage)  # noqa: E731
        cols = None
        if set(params.glm_cols) & set(OPTIONAL):  # --glm cols=: the optional columns' sums, from the same reads
            cc = "a1freqcc" in params.glm_cols and is_binary
            cols = ColumnSums(len(passed), DOSAGE_UNIT if dosage else 1, y[complete].astype(np.int64) if cc else None)
            read = cols.wrap(read)
        if glm == "logistic":
            lres = logistic_association(ctx, xs, y[complete], read,
                                        len(passed), n_assoc, params, a1_is_alt=qc.a1_is_alt[passed],
                                        xtx=np.linalg.inv(ainv), site_counts=[int(m[1]) for m in metas])
            table = {"columns": lres["columns"], "errcode": lres["errcode"], "obs_ct": lres["obs_ct"],
                     "test": lres["test"], **({"firth": lres["firth"]} if "firth" in lres else {})}
        else:
            t0 = time.perf_counter()
            if not len(passed):
                if prefetch is not None:
                    prefetch.cancel()
                raise ValueError("no variant passed the QC filters; nothing to test (relax --geno/--maf/--hwe)")
            if prefetch is not None:  # computed during QC for every common variant: keep the tested ones
                vs_all, st_all = prefetch.result()
                vs = VariantSums(*(np.asarray(f)[passed] for f in vs_all))
                st = SiteTerms(*(getattr(st_all, f.name)[passed] for f in fields(SiteTerms)))
                del vs_all, st_all
            else:
                design = SiteDesign(whiten(xs, ainv), ys)
                if cols is None and not dosage:  # hard calls: the kernels read them packed
                    read = lambda sel: sv.read_calls(site, passed[sel], complete)  # noqa: E731
                vs = _site_sums(ctx, "association", len(passed), params.block, t0,
                                lambda sel: variant_sums(read(sel), design))
                st = site_terms(design.sums, vs, None, n_assoc)
            if site.check_inputs is not None:  # a file changed after the (background) reads still fails the job
                site.check_inputs()
            # one protocol run for every tested variant: the stage's rounds do not grow with the study
            obs_ct = ctx.open(ctx.inputs_sum(vs.n_obs, shape=vs.n_obs.shape, frac=0), "gwas.obs_ct",
                              bits=max(1, n_assoc.bit_length())).astype(np.int64)  # 0 <= OBS_CT <= N
            # the sums are of the whitened design: A^-1 is I for them
            terms, shift = study_series_terms(ctx, vs.miss_xx, np.eye(k), n_assoc, n_assoc - obs_ct,
                                              "gwas.missing_bound")
            pooled = pool_terms(ctx, st, shift)
            del st, vs  # the sites' own float sums, input now: not held through the statistics (their peak)
            res = _statistics(ctx, pooled, terms, obs_ct, k, glm, n_assoc)
            out = {name: res.get(name, np.full(len(passed), np.nan)) for name in ("beta", "t_stat", "chisq")}
            const = res["const"]
            log.info("association: %d variants, %.2f series terms on average (at most %d), %.1f s", len(passed),
                     terms.mean(), terms.max(), time.perf_counter() - t0)

            # the statistic columns go to the submitter from the lead only (``result`` below)
            table = (gwas_stats.output_columns(out, obs_ct, const, k, glm, sd_y, params.ci, qc.a1_is_alt[passed])
                     if ctx.is_lead else {"obs_ct": obs_ct})
        if cols is not None:
            table["optional"] = release_columns(ctx, cols, params.glm_cols, np.asarray(table["obs_ct"]),
                                                qc.a1_is_alt[passed], params.min_cell_size)

    result = {
        "glm": glm,
        "pheno": site.pheno_name,
        "trait": "binary" if is_binary else "quantitative",
        "n_qc": n_qc,
        "n_assoc": n_assoc,
        "covariates": cov_names,
        "n_variants": n_var,
        "qc": qc.summary(),
        "min_cell_size": params.min_cell_size,  # public (gwas.site_counts): the strictest site's policy
        "glm_drop": list(params.glm_drop),
        "glm_cols": list(params.glm_cols),
        "seconds": time.perf_counter() - t_start,
    }
    if pca is not None:  # public: eigenvalues (PREFIX.eigenval) and the PCA variant subset
        result["pca"] = {"eigenvalues": pca.eigenvalues, "variants": pca.variants, "names": cov_names[-params.pca:],
                         "passes": pca.passes, "bound": pca.bound,
                         "rel_residual": pca.history[-1].get("rel_residual") if pca.history else None}
    if ctx.is_lead:  # the per-variant results reach the submitter once, from the lead (5.8 MB per site at 100,000)
        result.update(qc_pass=qc.passed, tested=passed, a1_is_alt=qc.a1_is_alt[passed], assoc=table)
        v = site.variants
        li = sv.lead_index
        result["variants"] = {"chrom": v.chrom[li], "pos": v.pos[li], "id": v.id[li], "ref": v.ref[li], "alt": v.alt[li]}
        # the lead returns the results to the submitter: a recipient of the study's outputs
        n_cols = len(table["columns"]) + 2 + len((table.get("optional") or {}).get("columns", {}))
        ctx.ledger.record("gwas.results", DISCLOSED, ["submitter"], len(passed) * n_cols)
    return result


@job("gwas")
def gwas_job(ctx, params: dict, site) -> dict:
    """Registered job: ``params`` is ``GwasParams.to_dict()``; ``site`` a ``SiteData`` or a site config."""
    from cipherome.genomics.io.site_files import site_from_config

    p = GwasParams.from_dict(params)
    if not isinstance(site, SiteData):
        site = site_from_config(site, p)
    if ctx.frac != p.frac:
        ctx.frac = p.frac
    return run_gwas(ctx, p, site)
