"""The study's pooled descriptive statistics, ``plink2 --freq --missing --hardy`` on data no one pools: the ``gwas.freq`` job.

Every site adds, per common variant, its hard-call genotype counts for males and for
everyone else (plink2's ploidy rules need both) and, if it has dosages, its dosage
counts in PLINK 2's 1/16384 units, as shares. The sums are opened to every party as
a documented disclosure (``freq.counts``): this workload's purpose is to release them.
Under the sites' disclosure policy (``min_cell_size``, the strictest site's), a variant
is released only if its called samples and both allele counts reach it; that test runs
on shares and only its pass bit is opened first (``freq.released``), so the counts of
a suppressed variant never leave MPC.

The lead then writes PREFIX.afreq (ALT_FREQS from dosages where a site has them),
PREFIX.vmiss and PREFIX.hardy (autosomes only; P is the exact test of Wigginton,
Cutler and Abecasis 2005, as plink2's default, computed from the released counts).
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from cipherome.mpc.jobs import job
from cipherome.mpc.ledger import PUBLIC
from cipherome.mpc.shares import concat

from cipherome.genomics.gwas.variants import common_variants
from cipherome.genomics.io.dosage import DOSAGE_UNIT
from cipherome.genomics.io.ploidy import AUTOSOMAL, dosage_freq, plink_counts, ploidy_class
from cipherome.genomics.io.variants import normalize_chroms
from cipherome.genomics.local.stats import dosage_sums, group_genotype_counts

__all__ = ["HARDY_HEADER", "hwe_exact_p", "hardy_rows", "run_freq", "write_freq", "freq_job"]

HARDY_HEADER = "#CHROM\tID\tA1\tAX\tHOM_A1_CT\tHET_A1_CT\tTWO_AX_CT\tO(HET_A1)\tE(HET_A1)\tP\n"
#: bit width of the release checks: counts below 2^23 samples, dosage units below 2^38
_CHECK_BITS = 48


def hwe_exact_p(hom1: np.ndarray, het: np.ndarray, hom2: np.ndarray) -> np.ndarray:
    """Exact Hardy-Weinberg p-values, ``(m,)`` float64 (Wigginton et al. 2005; plink2 --hardy's P).

    Given n samples and n1 copies of allele 1, heterozygote count h has null probability
    proportional to n! 2^h / (((n1 - h)/2)! h! ((2n - n1 - h)/2)!) over h of n1's parity;
    p = sum of the probabilities not above the observed one (relative tolerance 1e-7).
    """
    out = np.ones(len(het))
    for j, (a, h, b) in enumerate(zip(np.asarray(hom1).tolist(), np.asarray(het).tolist(), np.asarray(hom2).tolist())):
        n, n1 = a + h + b, 2 * a + h
        n2 = 2 * n - n1
        if n == 0 or n1 == 0 or n2 == 0:
            continue
        hs = np.arange(n1 % 2, min(n1, n2) + 1, 2)
        logp = (gammaln(n + 1) + hs * np.log(2.0) - gammaln((n1 - hs) // 2 + 1) - gammaln(hs + 1)
                - gammaln((n2 - hs) // 2 + 1))
        logp -= logp.max()
        prob = np.exp(logp)
        obs = prob[(h - n1 % 2) // 2]
        out[j] = min(1.0, prob[prob <= obs * (1 + 1e-7)].sum() / prob.sum())
    return out


def hardy_rows(chrom: np.ndarray, ids, ref, alt, counts: np.ndarray) -> str:
    """``.hardy`` rows (no header) for autosomal variants: A1 = REF, AX = ALT; counts (m, 3) hom REF, het, hom ALT."""
    c = np.asarray(counts, dtype=np.int64)
    n = c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = (2 * c[:, 0] + c[:, 1]) / (2.0 * n)
        o_het = c[:, 1] / n
    e_het = 2 * p1 * (1 - p1)
    p = hwe_exact_p(c[:, 0], c[:, 1], c[:, 2])
    return "".join("%s\t%s\t%s\t%s\t%d\t%d\t%d\t%g\t%g\t%g\n" % r for r in zip(
        chrom.tolist(), list(ids), list(ref), list(alt), c[:, 0].tolist(), c[:, 1].tolist(), c[:, 2].tolist(),
        o_het.tolist(), e_het.tolist(), p.tolist()))


def run_freq(ctx, site, block: int = 4096) -> dict:
    """The job at one compute party on its ``SiteData``; returns the released counts (variant columns at the lead)."""
    from cipherome.protocols import compare

    everyone = np.ones(site.n, dtype=bool) if site.included is None else np.asarray(site.included, bool)
    meta = np.array([int(site.policy.get("min_cell_size", 0)), int(site.read_dosage is not None)], dtype=np.int64)
    metas = ctx.allgather(meta, "freq.site_policy", kind=PUBLIC)
    mcs = max(int(m[0]) for m in metas)
    dosage = any(int(m[1]) for m in metas)
    sv = common_variants(ctx, site.variants, None, site.name)  # the secure intersection (genomics.gwas.variants)
    V = len(sv)
    sex = np.zeros(site.n) if site.sex is None else np.asarray(site.sex)
    groups = np.where(everyone, np.where(sex == 1, 0, 1), -1)
    local = np.zeros((V, 12), dtype=np.int64)  # [male 4 counts, other 4 counts, male (obs, units), other (obs, units)]
    for start in range(0, V, block):
        idx = np.arange(start, min(start + block, V))
        g = sv.read(site, idx, np.ones(site.n, dtype=bool))
        local[idx, :8] = group_genotype_counts(g, groups, 2).reshape(len(idx), 8)
        if dosage:
            if site.read_dosage is not None:
                ds = dosage_sums(sv.read(site, idx, np.ones(site.n, bool), dosage=True), groups, 2)
            else:
                c = local[idx, :8].reshape(len(idx), 2, 4)
                ds = np.stack([c[:, :, :3].sum(axis=2), c[:, :, 1] + 2.0 * c[:, :, 2]], axis=2)
            local[idx, 8:] = np.column_stack([ds[:, 0, 0], np.rint(ds[:, 0, 1] * DOSAGE_UNIT),
                                              ds[:, 1, 0], np.rint(ds[:, 1, 1] * DOSAGE_UNIT)]).astype(np.int64)
    pooled = ctx.inputs_sum(local, shape=local.shape, frac=0)
    released = np.ones(V, dtype=bool)
    if mcs > 0 and V:
        both = pooled[:, 0:4] + pooled[:, 4:8]
        called = both[:, 0] + both[:, 1] + both[:, 2]
        alt = both[:, 1] + both[:, 2] * 2
        ref = both[:, 1] + both[:, 0] * 2
        bits = compare.ltz(concat([called - mcs, alt - mcs, ref - mcs]), _CHECK_BITS).reshape(3, V)
        suppressed = bits[0] + bits[1] + bits[2]  # > 0: some cell below the policy
        released = ctx.open(suppressed, "freq.released") == 0
    rows = np.flatnonzero(released)
    counts = np.zeros((V, 12), dtype=np.int64)
    if rows.size:
        counts[rows] = ctx.open(pooled[rows], "freq.counts").astype(np.int64)
    out = {"released": released, "counts": counts, "dosage": dosage, "min_cell_size": mcs}
    if ctx.is_lead:
        v = site.variants
        li = sv.lead_index
        out["variants"] = {"chrom": v.chrom[li], "pos": v.pos[li], "id": v.id[li], "ref": v.ref[li], "alt": v.alt[li]}
    return out


def write_freq(prefix, result: dict) -> list:
    """Write PREFIX.afreq, PREFIX.vmiss, PREFIX.hardy (released variants) atomically; returns the paths."""
    from pathlib import Path

    from cipherome.genomics.io.blocks import VariantTable
    from cipherome.genomics.io.formats import AFREQ_HEADER, VMISS_HEADER, afreq_rows, atomic_outputs, vmiss_rows

    r = np.asarray(result["released"], bool)
    var = result["variants"]
    v = VariantTable.from_columns(*(np.asarray(var[k], dtype=object)[r] if k != "pos" else np.asarray(var[k])[r]
                                    for k in ("chrom", "pos", "id", "ref", "alt")))
    c = np.asarray(result["counts"], dtype=np.int64)[r]
    chrom = normalize_chroms(v.chrom)
    classes = ploidy_class(chrom)
    pc = plink_counts(c[:, :8].reshape(-1, 2, 4), classes)
    if result["dosage"]:
        d = c[:, 8:].reshape(-1, 2, 2).astype(np.float64)
        d[:, :, 1] /= DOSAGE_UNIT
        alt_ct, obs = dosage_freq(d, classes)
        pc = pc._replace(alt_ct=alt_ct, allele_obs=obs)
    auto = classes == AUTOSOMAL
    both = c[:, 0:4] + c[:, 4:8]
    p = Path(prefix)
    paths = [p.with_name(p.name + s) for s in (".afreq", ".vmiss", ".hardy")]
    with atomic_outputs(paths) as fh:
        fh[0].write(AFREQ_HEADER + afreq_rows(v, pc, chrom))
        fh[1].write(VMISS_HEADER + vmiss_rows(v, pc, chrom))
        fh[2].write(HARDY_HEADER + hardy_rows(chrom[auto], v.id[auto], v.ref[auto], v.alt[auto], both[auto][:, :3]))
    return paths


@job("gwas.freq")
def freq_job(ctx, params: dict, site) -> dict:
    """Registered job: ``params`` {"block": int}; ``site`` a ``SiteData`` or a site config (no phenotype needed)."""
    from cipherome.genomics.io.site_files import site_genotypes_only
    from cipherome.genomics.site import SiteData

    if not isinstance(site, SiteData):
        site = site_genotypes_only(site)
    return run_freq(ctx, site, int(params.get("block", 4096)))
