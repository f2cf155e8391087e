"""Secure variant QC over pooled genotype counts: --geno, --maf, --hwe and the A1 allele.

Sites add their genotype counts (hom-ref, het, hom-alt, missing) as shares;
every threshold becomes an integer comparison, batched into one comparison call
for all variants and filters, and only the pass/fail bit per variant is opened
(plus per-filter totals for the log, the A1 bit that the output needs and, with
--hwe, the pass bit of the other filters).

* --geno: fail iff missing * D > T * n_samples (geno = T/D exactly, as PLINK 2);
* --maf: fail iff min(alt, 2n - alt) * D < T * 2n, or no called allele;
* --hwe: fail iff G^2 > chi2_1^{-1}(1 - hwe), the likelihood-ratio (G) HWE test on
  all samples, run last, on the variants that pass every other filter (``_hwe_after``:
  their pass bit is opened as ``qc.prefilter``). PLINK 2 uses the exact test (Wigginton 2005); of the tests that MPC
  can compute, G tracks it best: on simulated data the log10 ratio of G to exact
  p-values has sd 0.035 (chi-square: 0.37), and pass sets differ only for variants
  whose p-values straddle the threshold (3 of 2,895 vs 8 for chi-square);
* A1 (the tested allele) is ALT iff 2 alt <= 2n, PLINK 2's non-major allele rule;
* disclosure control (the sites' ``min_cell_size`` policy): a variant whose minor
  allele count or number of called samples is below it is never released.

With imputed dosages at any site, --maf, A1 and the allele-count part of
disclosure control use the dosage frequencies, as plink2 does: every site adds the
number of its samples with a dosage and its ALT dosage sum in PLINK 2's units of
1/16384 (an exact integer; a hard-call site adds its calls), and the checks stay
integer comparisons, 14 bits wider (``check_bits``). --geno and --hwe use the hard calls, as plink2's
--geno and --hwe do by default.

--mach-r2-filter MIN MAX (``genomics.gwas.machr2``): fail iff the pooled dosages' MaCH
r2 is below MIN or above MAX (plink2's defaults 0.1 and 2.0; monomorphic variants
pass), from each site's per-variant count, dosage sum and sum of squared dosages
(hard calls at a hard-call site), on the minor allele's side (selected by the secret
A1 bit); only its pass/fail bit joins ``qc.pass``.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from cipherome.mpc.pipeline import contiguous_parts, stagger
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import arith

from cipherome.genomics.gwas.tails import chi2_isf

__all__ = ["QCResult", "secure_variant_qc", "rational"]


MAX_SAMPLES = 1 << 22


def check_bits(n_samples: int, unit: int, thresholds, mcs: int = 0) -> int:
    """Width of the batched integer checks, from public parameters only (ltz ``bits``).

    Every check is a difference of integers below 2 n unit (allele counts, in dosage
    units ``unit``) times a threshold's numerator or denominator: a1_ref
    |n_alleles - 2 alt| <= 2 n unit; --geno |T n - miss D| <= n max(T, D); --maf
    |alt D - n_alleles T| <= 2 n unit max(T, D); min_cell_size adds mcs unit. So every
    value lies in [-M, M] with
    M = 2 n unit max(2, T, D) + mcs unit, and bits = bit_length(M) + 1 is exact. At
    10,000 samples with --geno 0.1 --maf 0.01 that is 22 bits where the fixed bound for
    2^22 samples and D <= 10^6 was 46: half the opened circuit bits (and the dealer
    learns only this width: the study size and thresholds to a factor of two).
    """
    coef = max([2] + [max(int(t), int(d)) for t, d in thresholds])
    bound = 2 * int(n_samples) * int(unit) * coef + int(mcs) * int(unit)
    return min(64, bound.bit_length() + 1)


def hwe_bits(n_samples: int, frac: int) -> int:
    """Width of the HWE check t*/2 - G^2/2 at ``frac`` bits: |G^2/2| <= 66 n (see ``_hwe_g_check``) < 2^7 n."""
    return min(64, (128 * max(int(n_samples), 1)).bit_length() + int(frac) + 1)


def rational(t: float, max_den: int = 10**6) -> tuple[int, int]:
    """A threshold as an exact fraction T/D (decimals with up to 6 digits kept exact)."""
    f = Fraction(str(t)).limit_denominator(max_den)
    return f.numerator, f.denominator


@dataclass
class QCResult:
    passed: np.ndarray  # (V,) bool
    a1_is_alt: np.ndarray  # (V,) bool
    failed_counts: dict  # filter -> number of variants failing it (not exclusive; --hwe: among those passing the rest)

    def summary(self) -> dict:
        return {"variants": int(self.passed.size), "passed": int(self.passed.sum()), "failed": self.failed_counts}


def _hwe_g_check(ctx, aa: Shared, het: Shared, bb: Shared, called: Shared, hwe: float, n_samples: int) -> Shared:
    """Shares of t*/2 - G^2/2 for the likelihood-ratio HWE test (negative: HWE fails), at ctx.frac bits.

    With the integer counts (n_AA, n_Aa, n_aa), n called samples, allele counts
    n_A = 2 n_AA + n_Aa, n_a = 2 n_aa + n_Aa and expected counts E_AA = n_A^2 / 4n,
    E_Aa = n_A n_a / 2n, E_aa = n_a^2 / 4n, G^2/2 = sum O ln(O / E) is
        G^2/2 = n_AA ln n_AA + n_Aa ln n_Aa + n_aa ln n_aa - n_A ln n_A - n_a ln n_a
                + n ln n + (2n - n_Aa) ln 2
    (sum O ln E = n_A ln n_A + n_a ln n_a - n ln 4n + n_Aa ln 2), with c ln c = 0 at c = 0.
    Steps: one ``log_int`` of the six integers (no reciprocal of n, no frequencies), on
    bit_length(2 N) bits (every count is at most 2 N; exact powers up to 32,767 samples); the six products count * ln count
    are exact (an integer times a fixed-point value needs no truncation), the ln 2 term is
    local. A count of 0 needs no test: ``log`` returns some finite ring value for it, and
    the exact product 0 * that value is 0, as c ln c is at c = 0. Error: ln has absolute
    error ~5e-8 plus half a unit of 2^-frac, each weighted by its count: |error of G^2/2|
    <= 66 n 1e-7, the same order as the frequency form's n * 3e-7, against the test's own
    distance from PLINK's exact test (log10 ratio of p-values: sd 0.035 measured, vs 0.37
    for chi-square). Range: |G^2/2| <= (n + 2n + n) ln 2^23 + 2n ln 2 < 66 n.
    """
    from cipherome.protocols import functions

    V = aa.shape[0]
    n_a = aa * 2 + het
    n_b = bb * 2 + het
    width = max(1, (2 * int(n_samples)).bit_length())
    logs = functions.log_int(concat([aa, het, bb, n_a, n_b, called]), width, frac=ctx.frac)
    xl = arith.mul(concat([aa, het, bb, -n_a, -n_b, called]), logs).reshape(6, V).sum(axis=0)
    lin = Shared(ctx, (called * 2 - het).data * encode(float(np.log(2.0)), ctx.frac), ctx.frac)
    t_star = float(chi2_isf(hwe, 1))
    return Shared.public(ctx, np.full(V, t_star / 2), ctx.frac) - (xl + lin)


def _hwe_after(ctx, keep: Shared, counts, hwe: float, n_samples: int) -> tuple[Shared, Shared]:
    """--hwe as the last filter: (fail bits, new keep bits), the test run only where ``keep`` is 1.

    ``keep`` (0/1 per variant: every other filter passed) is opened (``qc.prefilter``, a
    documented disclosure: for a variant that fails QC it tells whether --hwe alone made
    it fail), and the G test (``_hwe_g_check``, six logarithms: the largest share of QC
    traffic) runs on those variants only. Rare variants, most of a sequencing study,
    fail --maf and so never pay for it. fail = [t*/2 - G^2/2 < 0] there, 0 elsewhere;
    keep' = keep (1 - fail), a product with a public bit (local). One round more than the
    test on all variants.
    """
    from cipherome.protocols import compare

    V = keep.shape[0]
    pre = ctx.open(keep, "qc.prefilter", bits=1).astype(bool)
    idx = np.flatnonzero(pre)
    fail = np.zeros(V, dtype=np.uint64)
    if idx.size:
        check = _hwe_g_check(ctx, *(c[idx] for c in counts), hwe, n_samples)
        fail[idx] = compare.ltz(check, hwe_bits(n_samples, ctx.frac)).data
    fail_sh = Shared(ctx, fail, 0)
    return fail_sh, Shared.public(ctx, pre.astype(np.int64), 0) - fail_sh


def _any_of(*bits: Shared) -> Shared:
    """OR of shared 0/1 integer bits: 1 - prod(1 - b), one product round per extra bit."""
    none = 1 - bits[0]
    for b in bits[1:]:
        none = arith.mul(none, 1 - b)
    return 1 - none


def _mach_r2_fail(ctx, a1_ref: Shared, n: Shared, s1: Shared, s2: Shared, unit: int, n_samples: int,
                  bounds) -> Shared:
    """--mach-r2-filter's fail bit from the pooled (n, s1, s2), on the minor allele's side (a1_ref: REF is minor)."""
    from cipherome.genomics.gwas import machr2

    r1, r2 = machr2.minor_side(n, s1, s2, unit)
    V = s1.shape[0]
    flip = arith.mul(concat([a1_ref, a1_ref]), concat([r1 - s1, r2 - s2]))  # one round: select the minor side
    a, b, mono = machr2.mach_r2_parts(ctx, n, s1 + flip[:V], s2 + flip[V:], unit, n_samples)
    return machr2.mach_r2_fails(ctx, a, b, mono, *bounds)


def secure_variant_qc(ctx, counts: np.ndarray, n_samples: int, params, dosage: np.ndarray | None = None,
                      unit: int = 1, parts: int = 1) -> QCResult:
    """Pool per-site counts (V, 4) int64 and apply the QC filters; returns public bits.

    dosage: None (hard calls), or (V, 3) int64 per site: samples with a dosage, ALT
    dosage sum and sum of squared dosages in units of 1/``unit``; --maf, A1, the
    allele-count disclosure check and --mach-r2-filter then use them (every site must
    pass them or none). ``parts``: the variants are checked in that many contiguous
    parts whose rounds overlap each other's computation (``mpc.pipeline.stagger``: the
    same bytes and, per cycle of parts, one round); the per-filter totals are opened once.
    """
    V = counts.shape[0]
    c = ctx.inputs_sum(counts, shape=counts.shape, frac=0)
    dsum = None
    if dosage is not None:
        dosage = np.asarray(dosage, dtype=np.int64)
        dsum = ctx.inputs_sum(dosage, shape=dosage.shape, frac=0)
    outs = stagger(ctx, [lambda sl=sl: _qc_part(ctx, c[sl], None if dsum is None else dsum[sl], n_samples, params,
                                                unit) for sl in contiguous_parts(V, parts)])
    passed = np.concatenate([o[0] for o in outs])
    a1_is_alt = np.concatenate([o[1] for o in outs])
    totals = {}
    names = list(outs[0][2])
    if names:
        sums = concat([concat([o[2][name] for o in outs]).sum().reshape(1) for name in names])
        totals = {name: int(v) for name, v in zip(names, ctx.open(sums, "qc.failed_counts"))}
    return QCResult(passed, a1_is_alt, totals)


def _qc_part(ctx, c: Shared, dsum: Shared | None, n_samples: int, params, unit: int):
    """(passed, a1_is_alt, fail bits per filter) of the variants whose pooled counts are ``c`` (V, 4)."""
    from cipherome.protocols import compare

    V = c.shape[0]
    aa, het, bb, miss = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    called = aa + het + bb
    n_alleles = called * 2
    alt = het + bb * 2
    n_dos, sq = called, het + bb * 4  # --mach-r2-filter's sums from hard calls
    if dsum is None:
        unit = 1
    else:  # allele counts from the dosages, scaled by ``unit``
        n_alleles, alt = dsum[:, 0] * (2 * unit), dsum[:, 1]
        n_dos, sq = dsum[:, 0], dsum[:, 2] if dsum.shape[1] > 2 else None
    checks: list[Shared] = [(n_alleles - alt * 2)]  # < 0 -> A1 is REF
    names = ["a1_ref"]
    thresholds = []
    if params.geno is not None:
        T, D = rational(params.geno)
        thresholds.append((T, D))
        checks.append(Shared.public(ctx, np.full(V, T * n_samples), 0) - miss * D)  # < 0 -> fail
        names.append("geno")
    maf_exclusive = True
    if params.maf is not None:
        T, D = rational(params.maf)
        thresholds.append((T, D))
        maf_exclusive = 2 * T <= D  # maf <= 1/2: at most one of the three can hold
        checks += [alt * D - n_alleles * T, (n_alleles - alt) * D - n_alleles * T, n_alleles - unit]
        names += ["maf_alt", "maf_ref", "maf_none"]
    mcs = int(getattr(params, "min_cell_size", 0) or 0)
    if mcs > 0:
        # disclosure control: minor allele count >= mcs and called samples >= mcs
        checks += [alt - mcs * unit, (n_alleles - alt) - mcs * unit, called - mcs]
        names += ["mcs_alt", "mcs_ref", "mcs_obs"]
    fails = {}
    if n_samples >= MAX_SAMPLES:
        raise ValueError(f"secure QC supports up to {MAX_SAMPLES} samples")
    width = check_bits(n_samples, unit, thresholds, mcs)
    bits = compare.ltz(concat(checks), width).reshape(len(checks), V)
    row = {name: bits[i] for i, name in enumerate(names)}
    if "geno" in row:
        fails["geno"] = row["geno"]
    if "maf_alt" in row:  # mutually exclusive bits: their OR is their sum (no product round)
        maf = (row["maf_alt"], row["maf_ref"], row["maf_none"])
        fails["maf"] = maf[0] + maf[1] + maf[2] if maf_exclusive else _any_of(*maf)
    bounds = getattr(params, "mach_r2_filter", None)
    if bounds is not None:
        if sq is None:
            raise ValueError("--mach-r2-filter needs each site's sum of squared dosages")
        fails["mach_r2"] = _mach_r2_fail(ctx, row["a1_ref"], n_dos, alt, sq, unit, n_samples, bounds)
    if "mcs_alt" in row:
        fails["min_cell_size"] = _any_of(row["mcs_alt"], row["mcs_ref"], row["mcs_obs"])
    keep = 1 - _any_of(*fails.values()) if fails else Shared.public(ctx, np.ones(V, dtype=np.int64), 0)
    if params.hwe is not None:  # HWE last, on the variants that pass every other filter
        fails["hwe"], keep = _hwe_after(ctx, keep, (aa, het, bb, called), params.hwe, n_samples)
    passed = ctx.open(keep, "qc.pass", bits=1).astype(bool)  # 0/1 bits: one byte each on the wire
    a1_is_alt = np.zeros(V, dtype=bool)  # opened only for the variants that are tested
    a1_is_alt[passed] = ~ctx.open(row["a1_ref"][np.flatnonzero(passed)], "gwas.a1_is_alt", bits=1).astype(bool)
    return passed, a1_is_alt, fails
