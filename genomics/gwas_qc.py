"""Secure variant QC over pooled genotype counts: --geno, --maf, --hwe and the A1 allele.

Sites add their genotype counts (hom-ref, het, hom-alt, missing) as shares;
every threshold becomes an integer comparison, batched into one comparison call
for all variants and filters, and only the pass/fail bit per variant is opened
(plus per-filter totals for the log, and the A1 bit that the output needs).

* --geno: fail iff missing * D > T * n_samples (geno = T/D exactly, as PLINK 2);
* --maf: fail iff min(alt, 2n - alt) * D < T * 2n, or no called allele;
* --hwe: fail iff n F^2 > chi2_{1}^{-1}(1 - hwe), the 1-df chi-square HWE test
  with F = (4 AA aa - Aa^2) / ((2AA + Aa)(2aa + Aa)) (F is the inbreeding
  coefficient). PLINK 2 uses the exact test (Wigginton 2005) on all samples:
  the two agree except for variants whose p-values straddle the threshold,
  chiefly rare variants with a minor homozygote (docs/statistics.md);
* A1 (the tested allele) is ALT iff 2 alt <= 2n, PLINK 2's non-major allele rule;
* disclosure control (the sites' ``min_cell_size`` policy): a variant whose minor
  allele count or number of called samples is below it is never released.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import stats

from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import arith
from cipherome.protocols.trunc import truncate

__all__ = ["QCResult", "secure_variant_qc", "rational"]


def rational(t: float, max_den: int = 10**9) -> tuple[int, int]:
    """A threshold as an exact fraction T/D (decimal input kept exact)."""
    f = Fraction(str(t)).limit_denominator(max_den)
    return f.numerator, f.denominator


@dataclass
class QCResult:
    passed: np.ndarray  # (V,) bool
    a1_is_alt: np.ndarray  # (V,) bool
    failed_counts: dict  # filter -> number of variants failing it (not exclusive)

    def summary(self) -> dict:
        return {"variants": int(self.passed.size), "passed": int(self.passed.sum()), "failed": self.failed_counts}


def _fixed_from_int(x: Shared, scale: float, frac: int, extra: int = 30) -> Shared:
    """Integer shares times a small public real (e.g. 1/N^2) as fixed point with ``frac`` bits."""
    z = Shared(x.ctx, x.data * encode(scale, frac + extra), frac + extra)
    return truncate(z, extra)


def secure_variant_qc(ctx, counts: np.ndarray, n_samples: int, params) -> QCResult:
    """Pool per-site counts (V, 4) int64 and apply the QC filters; returns public bits."""
    from cipherome.protocols import compare, division

    V = counts.shape[0]
    c = ctx.inputs_sum(counts, shape=counts.shape, frac=0)
    aa, het, bb, miss = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    called = aa + het + bb
    n_alleles = called * 2
    alt = het + bb * 2
    checks: list[Shared] = [(n_alleles - alt * 2)]  # < 0 -> A1 is REF
    names = ["a1_ref"]
    if params.geno is not None:
        T, D = rational(params.geno)
        checks.append(Shared.public(ctx, np.full(V, T * n_samples), 0) - miss * D)  # < 0 -> fail
        names.append("geno")
    if params.maf is not None:
        T, D = rational(params.maf)
        checks += [alt * D - n_alleles * T, (n_alleles - alt) * D - n_alleles * T, n_alleles - 1]
        names += ["maf_alt", "maf_ref", "maf_none"]
    mcs = int(getattr(params, "min_cell_size", 0) or 0)
    if mcs > 0:
        # disclosure control: minor allele count >= mcs and called samples >= mcs
        checks += [alt - mcs, (n_alleles - alt) - mcs, called - mcs]
        names += ["mcs_alt", "mcs_ref", "mcs_obs"]
    fails = {}
    if params.hwe is not None:
        # F = D/P with D = 4 AA aa - Aa^2, P = (2AA + Aa)(2aa + Aa), both over N^2 (O(1) fixed point)
        t_star = float(stats.chi2.isf(params.hwe, 1))
        prods = arith.mul(concat([aa * 4, het, aa * 2 + het]), concat([bb, het, bb * 2 + het]))
        dnum = prods[:V] - prods[V : 2 * V]
        pden = prods[2 * V :]
        mono = compare.eqz(pden)  # monomorphic: P = D = 0, the test passes
        scale = 1.0 / float(max(n_samples, 1)) ** 2
        f_num = _fixed_from_int(dnum, scale, ctx.frac)
        f_den = _fixed_from_int(pden, scale, ctx.frac) + mono  # P = 0 -> denominator 1, F = 0
        f = division.div(f_num, f_den, hi=2, x_hi=2)  # |D/N^2| <= 1, P/N^2 in [2/N, 2)
        n_frac = _fixed_from_int(called, 1.0 / n_samples, ctx.frac)
        stat = arith.mul(n_frac, arith.square(f))  # chi2 / N
        checks.append(Shared.public(ctx, np.full(V, t_star / n_samples), ctx.frac) - stat)  # < 0 -> fail
        names.append("hwe")
    aligned = [x.with_frac(max(x.frac for x in checks)) for x in checks]
    bits = compare.ltz(concat(aligned)).reshape(len(checks), V)
    row = {name: bits[i] for i, name in enumerate(names)}
    one = Shared.public(ctx, np.ones(V, dtype=np.int64), 0)
    fail_list = []
    if "geno" in row:
        fails["geno"] = row["geno"]
    if "maf_alt" in row:
        # OR of three bits: 1 - (1-a)(1-b)(1-c)
        ab = arith.mul(one - row["maf_alt"], one - row["maf_ref"])
        fails["maf"] = one - arith.mul(ab, one - row["maf_none"])
    if "hwe" in row:
        fails["hwe"] = row["hwe"]
    if "mcs_alt" in row:
        ab = arith.mul(one - row["mcs_alt"], one - row["mcs_ref"])
        fails["min_cell_size"] = one - arith.mul(ab, one - row["mcs_obs"])
    fail_list = list(fails.values())
    keep = one
    for f_ in fail_list:
        keep = arith.mul(keep, one - f_)
    passed = ctx.open(keep, "qc.pass").astype(bool)
    a1_is_alt = np.zeros(V, dtype=bool)  # opened only for the variants that are tested
    a1_is_alt[passed] = ~ctx.open(row["a1_ref"][np.flatnonzero(passed)], "gwas.a1_is_alt").astype(bool)
    totals = {}
    if fails:
        sums = ctx.open(concat([f_.sum().reshape(1) for f_ in fails.values()]), "qc.failed_counts")
        totals = {name: int(v) for name, v in zip(fails, sums)}
    return QCResult(passed, a1_is_alt, totals)
