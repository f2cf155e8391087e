"""MaCH imputation quality (plink2's MACH_R2) of pooled dosages, computed in MPC.

Over the n samples with a dosage d in [0, 2] of a variant, with s1 = sum d and
s2 = sum d^2, plink2's unphased MaCH r2 is the dosages' variance over its HWE
expectation from their own frequency p = s1 / 2n:

    MACH_R2 = (s2/n - (s1/n)^2) / (2 p (1 - p)) = 2 (n s2 - s1^2) / (s1 (2n - s1)),

``nan`` (never filtered by ``--mach-r2-filter``) when the variant is monomorphic
(s1 = 0 or s1 = 2n). The value is symmetric in the allele, so it is computed on the
minor allele's dosages (s1 <= n) as 2 (a - b) / (2 - b) with a = s2 / s1 and
b = s1 / n, both in [0, 2], 2 - b >= 1, and MACH_R2 in [0, 2]: no cancellation
for rare variants and a well-conditioned last division. Every site adds its
(n, s1, s2) per variant (a plaintext local sum, free to pool); s1 and s2 are in
units of 1/``unit`` (PLINK 2's dosage grid), so the pooled sums are exact integers.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import arith

__all__ = ["site_dosage_sums", "minor_side", "mach_r2_parts", "mach_r2_fails", "mach_r2_values", "mach_r2_plain"]


def site_dosage_sums(g, unit: int, groups: np.ndarray | None = None, n_groups: int = 1) -> np.ndarray:
    """This site's (V, n_groups, 3) int64 sums: samples with a dosage, ALT sum s1, sum of squares s2.

    g: ``(V, n)`` int8 hard calls (-1 missing), a packed ``GenotypeBlock``, or float
    dosages (NaN missing); s1 and s2 in units of 1/``unit`` (s2 = sum (d unit)^2 / unit,
    rounded; exact for hard calls). groups: ``(n,)`` int group of each sample in
    [0, n_groups) or -1 (counted nowhere); None: one group of every sample.
    """
    from cipherome.genomics.local.stats import HET, HOM_ALT, HOM_REF, group_genotype_counts

    if isinstance(g, np.ndarray) and g.dtype.kind == "f":
        n = g.shape[1]
        groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
        out = np.zeros((g.shape[0], n_groups, 3), dtype=np.int64)
        for k in range(n_groups):
            d = g[:, groups == k].astype(np.float64)
            called = ~np.isnan(d)
            units = np.rint(np.where(called, d, 0.0) * unit)  # PLINK 2's grid: exact in float64
            out[:, k, 0] = called.sum(axis=1)
            out[:, k, 1] = units.sum(axis=1)
            out[:, k, 2] = np.rint((units * units).sum(axis=1) / unit)
        return out
    n = g.shape[1] if isinstance(g, np.ndarray) else g.n
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    c = group_genotype_counts(g, groups, n_groups)
    het, hom = c[:, :, HET], c[:, :, HOM_ALT]
    return np.stack([c[:, :, HOM_REF] + het + hom, (het + 2 * hom) * unit, (het + 4 * hom) * unit], axis=2)


def minor_side(n, s1, s2, unit: int):
    """(s1, s2) of the REF dosages 2 - d: 2 n unit - s1 and 4 n unit - 4 s1 + s2 (plain or shared)."""
    return n * (2 * unit) - s1, n * (4 * unit) - s1 * 4 + s2


def _bits(v: int) -> int:
    return max(int(v), 1).bit_length() + 1


def mach_r2_parts(ctx, n: Shared, s1: Shared, s2: Shared, unit: int, n_max: int):
    """Shares of (a, b, mono) for the minor allele's sums (s1 <= n unit): a = s2/s1, b = s1/n, and
    mono = [s1 == 0 or s1 == 2 n unit] (monomorphic, or no dosage at all).

    Steps: one ``eqz`` over s1 and 2 n unit - s1, one product (their OR); one ``div`` of
    the stacked numerators [s2, s1] by [s1 + mono, n unit + mono] (relative error about
    2^-21), quotients at ctx.frac bits. n_max: public bound on n (the study's sample count).
    """
    from cipherome.protocols import compare, division

    top = 4 * int(n_max) * unit
    V = s1.shape[0]
    z = compare.eqz(concat([s1, n * (2 * unit) - s1]), _bits(top) + 1)
    mono = z[:V] + z[V:] - arith.mul(z[:V], z[V:])
    q = division.div(concat([s2, s1]), concat([s1 + mono, n * unit + mono]), hi=_bits(top), x_hi=_bits(top),
                     q_hi=3, frac=ctx.frac)
    return q[:V], q[V:], mono


def mach_r2_fails(ctx, a: Shared, b: Shared, mono: Shared, r2_min: float, r2_max: float) -> Shared:
    """Shared 0/1: MACH_R2 < r2_min or > r2_max, and the variant not monomorphic (plink2 --mach-r2-filter).

    MACH_R2 >= t  <=>  2 (a - b) - t (2 - b) >= 0, as 2 - b > 0: one ``ltz`` over both bounds,
    no division by the secret 2 - b.
    """
    from cipherome.protocols import compare

    V = a.shape[0]
    num, den = (a - b) * 2, 2 - b
    lo = num - arith.mul_public(den, float(r2_min))
    hi = arith.mul_public(den, float(r2_max)) - num
    out = compare.ltz(concat([lo, hi]), ctx.frac + 6).reshape(2, V)
    either = out[0] + out[1] - arith.mul(out[0], out[1])
    return either - arith.mul(either, mono)


def mach_r2_values(ctx, a: Shared, b: Shared, mono: Shared, label: str) -> np.ndarray:
    """Open MACH_R2 = 2 (a - b) / (2 - b) per variant (``label``, a disclosure); NaN where monomorphic."""
    from cipherome.protocols import division

    r2 = division.div((a - b) * 2, 2 - b, hi=2, x_hi=3, q_hi=2, frac=ctx.frac)
    both = ctx.open(concat([r2, mono.with_frac(ctx.frac)]), label)
    V = a.shape[0]
    return np.where(both[V:] > 0.5, np.nan, np.clip(both[:V], 0.0, 2.0))


def mach_r2_plain(n, s1, s2) -> np.ndarray:
    """The plaintext twin: MACH_R2 from pooled sums (any units of d, s2 in the same units squared)."""
    n, s1, s2 = (np.asarray(v, dtype=np.float64) for v in (n, s1, s2))
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 2 * (n * s2 - s1 * s1) / (s1 * (2 * n - s1))
    return np.where((s1 > 0) & (s1 < 2 * n), r2, np.nan)
