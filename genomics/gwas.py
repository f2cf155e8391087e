"""The secure GWAS job: sample QC, common variants, variant QC, standardisation, association.

It runs at every compute party (``@job("gwas")``) on that site's ``SiteData``;
only the lead returns the variant columns for the output files. Stages, with
what each opens (the disclosure ledger lists the same labels):

1. local: ``--mind`` sample QC and complete-case selection; nothing leaves the site;
2. metadata (public within the study): sample counts, trait type, hashed variant keys;
3. variant QC over the pooled counts: one pass/fail bit per variant (``qc.pass``)
   and the tested allele A1 (``gwas.a1_is_alt``: is ALT the non-major allele);
4. standardisation: pooled means and variances of the phenotype and covariates
   (``gwas.covariate_moments``), used as a public affine transform, which leaves
   every association statistic unchanged and keeps fixed-point values O(1);
5. association per block of QC-passing variants: OBS_CT, the effect and its test
   statistic per variant (``gwas.obs_ct``, ``gwas.beta``, ``gwas.t_stat`` or
   ``gwas.chisq``) and the ERRCODE bit for constant genotypes (``gwas.const``).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from cipherome.mpc.jobs import job

from . import gwas_qc, gwas_stats
from .assoc import neumann_terms, pool_sums, project_off_covariates
from .localstats import SiteDesign, genotype_counts, variant_sums
from .gwas_params import GwasParams
from .site import SiteData, binary_trait
from .study_variants import intersect_variants, variant_hashes
from .variants import flip_dosage

__all__ = ["run_gwas", "gwas_job", "local_sample_qc"]

log = logging.getLogger("cipherome.gwas")


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


def _read_oriented(site: SiteData, sv, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Dosages of study variants ``idx`` (positions in the study list), in study orientation."""
    g = site.read(sv.local_index[idx], mask)
    flip = sv.flip[idx]
    return flip_dosage(g, flip) if flip.any() else g


def _progress(ctx, stage: str, done: int, total: int, t0: float) -> None:
    st = ctx.transport.stats
    log.info("%s: %d/%d variants, %.1f s, %.1f MB sent", stage, done, total, time.perf_counter() - t0, st.bytes_sent / 1e6)


def run_gwas(ctx, params: GwasParams, site: SiteData) -> dict:
    """The GWAS at one compute party; returns the public results (variant columns at the lead)."""
    params.validate()
    t_start = time.perf_counter()

    # 1. local sample selection -----------------------------------------------------
    with ctx.stage("sample_qc"):
        keep = local_sample_qc(site, params.mind)
        cov, cov_names = site.select_covariates(params.covar_names)
        y = site.y
        complete = keep & np.isfinite(y) & np.all(np.isfinite(cov), axis=1)

    # 2. public metadata ----------------------------------------------------------------
    with ctx.stage("metadata"):
        binary = binary_trait(y[complete])
        min_cell = int(site.policy.get("min_cell_size", 0))
        meta = np.array([keep.sum(), complete.sum(), int(binary), len(cov_names), min_cell], dtype=np.int64)
        metas = ctx.allgather(meta, "gwas.site_counts")
        if len({int(m[3]) for m in metas}) != 1:
            raise ValueError("sites disagree on the number of covariates")
        n_qc = int(sum(int(m[0]) for m in metas))
        n_assoc = int(sum(int(m[1]) for m in metas))
        is_binary = all(int(m[2]) for m in metas)
        # the strictest site's policy applies to every released statistic
        params.min_cell_size = max(int(m[4]) for m in metas)
        if n_assoc < max(params.min_cell_size, 1):
            raise ValueError(f"the study has {n_assoc} samples with phenotype and covariates, fewer than the "
                             f"minimum cell size {params.min_cell_size} of the sites' disclosure policies")
        hashes, orient = variant_hashes(site.variants)
        all_h = ctx.allgather(hashes, "gwas.variant_keys")
        all_o = ctx.allgather(orient.astype(np.uint8), "gwas.variant_orientation")
        sv = intersect_variants(all_h, all_o, ctx.index)
        n_var = len(sv)
        log.info("study: %d samples for QC, %d for association, %d common variants", n_qc, n_assoc, n_var)

    # 3. variant QC ------------------------------------------------------------------------
    with ctx.stage("variant_qc"):
        counts = np.zeros((n_var, 4), dtype=np.int64)
        for start in range(0, n_var, params.block):
            idx = np.arange(start, min(start + params.block, n_var))
            counts[idx] = genotype_counts(_read_oriented(site, sv, idx, keep))
        qc = gwas_qc.secure_variant_qc(ctx, counts, n_qc, params)
        passed = np.flatnonzero(qc.passed)

    glm = params.glm
    if glm == "auto":
        glm = "trend" if is_binary else "linear"

    # 4. public standardisation -------------------------------------------------------------
    with ctx.stage("standardise"):
        cols = np.column_stack([y[complete], cov[complete]])
        local = np.concatenate([cols.sum(0), (cols * cols).sum(0)]) / max(n_assoc, 1)
        pooled = ctx.inputs_sum(local, shape=local.shape, frac=ctx.frac)
        mom = ctx.open(pooled, "gwas.covariate_moments")
        c = cols.shape[1]
        mean = mom[:c]
        var = mom[c:] - mean**2
        bad = [(["phenotype"] + cov_names)[i] for i in np.flatnonzero(var <= 1e-12)]
        if bad:
            raise ValueError(f"constant phenotype/covariate over the study: {', '.join(bad)}")
        sd = np.sqrt(var)
        z = (cols - mean) / sd
        ys = z[:, 0]
        xs = np.column_stack([np.ones(len(ys)), z[:, 1:]])
        k = xs.shape[1]

    # 5. association ------------------------------------------------------------------------------
    with ctx.stage("association"):
        design = SiteDesign(xs, ys)
        terms = neumann_terms(params.geno if params.geno is not None else params.missing_bound)
        out = {name: np.full(len(passed), np.nan) for name in ("beta", "t_stat", "chisq")}
        obs_ct = np.zeros(len(passed), dtype=np.int64)
        const = np.zeros(len(passed), dtype=bool)
        t0 = time.perf_counter()
        for start in range(0, len(passed), params.block):
            sel = np.arange(start, min(start + params.block, len(passed)))
            V = len(sel)
            vs = variant_sums(_read_oriented(site, sv, passed[sel], complete), design)
            n_obs = ctx.inputs_sum(vs.n_obs, shape=(V,), frac=0)
            pm = project_off_covariates(pool_sums(ctx, design.sums, vs, n_assoc), terms)
            res = gwas_stats.finish(ctx, pm, n_obs, k, glm, n_assoc)
            obs_ct[sel] = res["obs_ct"]
            const[sel] = res["const"]
            for name in out:
                if name in res:
                    out[name][sel] = res[name]
            _progress(ctx, "association", start + V, len(passed), t0)

    table = gwas_stats.output_columns(out, obs_ct, const, k, glm, sd[0], params.ci, qc.a1_is_alt[passed])
    result = {
        "glm": glm,
        "pheno": site.pheno_name,
        "trait": "binary" if is_binary else "quantitative",
        "n_qc": n_qc,
        "n_assoc": n_assoc,
        "covariates": cov_names,
        "n_variants": n_var,
        "qc": qc.summary(),
        "qc_pass": qc.passed,
        "tested": passed,
        "a1_is_alt": qc.a1_is_alt[passed],
        "assoc": table,
        "seconds": time.perf_counter() - t_start,
    }
    if ctx.is_lead:
        v = site.variants
        li = sv.lead_index
        result["variants"] = {"chrom": v.chrom[li], "pos": v.pos[li], "id": v.id[li], "ref": v.ref[li], "alt": v.alt[li]}
    return result


@job("gwas")
def gwas_job(ctx, params: dict, site) -> dict:
    """Registered job: ``params`` is ``GwasParams.to_dict()``; ``site`` a ``SiteData`` or a site config."""
    from .site_files import site_from_config

    p = GwasParams.from_dict(params)
    if not isinstance(site, SiteData):
        site = site_from_config(site, p)
    if ctx.frac != p.frac:
        ctx.frac = p.frac
    return run_gwas(ctx, p, site)
