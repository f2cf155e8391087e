"""Imputed dosages as PLINK 2 holds them: ALT allele counts in [0, 2] in steps of 1/16384, and the hard calls derived from them.

A reader of probabilities (BGEN, VCF ``GP``) or of decimal dosages (VCF ``DS``) rounds
each dosage to PLINK 2's step, as ``plink2 --bgen/--vcf`` does on import, and derives
hard calls with plink2's default ``--hard-call-threshold 0.1``: a dosage within 0.1 of
0, 1 or 2 is that call, any other is a missing hard call (its dosage is kept).
"""
from __future__ import annotations

import numpy as np

__all__ = ["DOSAGE_UNIT", "HARD_CALL_THRESHOLD", "quantize", "hard_calls", "dosage_from_probs", "probability_bits"]

#: PLINK 2's dosage resolution: it stores dosages as integers times 1/16384 (float32 holds them exactly).
DOSAGE_UNIT = 16384
#: plink2's default --hard-call-threshold
HARD_CALL_THRESHOLD = 0.1


def quantize(d: np.ndarray) -> np.ndarray:
    """Dosages rounded to PLINK 2's 1/16384 step, as float32 (NaN stays NaN)."""
    return (np.rint(np.asarray(d, dtype=np.float64) * DOSAGE_UNIT) / DOSAGE_UNIT).astype(np.float32)


def hard_calls(d: np.ndarray, threshold: float = HARD_CALL_THRESHOLD) -> np.ndarray:
    """int8 hard calls (0/1/2, -1 missing) of dosages: the nearest call if within ``threshold`` of it."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        r = np.rint(d)
        ok = np.abs(d - r) <= threshold + 1e-9
    return np.where(ok, r, -1).astype(np.int8)


def probability_bits(p: np.ndarray) -> int:
    """The probability width of a BGEN variant: the first of 8, 16, 24, 32 bits whose step 1/(2^B - 1)
    makes every probability in ``p`` a whole number of steps (what ``bits=8|16`` exports write;
    a 16-bit variant whose probabilities all sit on the 8-bit grid reads as 8-bit, which moves a
    dosage by one 1/16384 step only where it lies within 2^-9 of a rounding boundary)."""
    q = np.asarray(p, dtype=np.float64)
    q = q[np.isfinite(q)]
    for bits in (8, 16, 24, 32):
        top = float((1 << bits) - 1)
        x = q * top
        if np.all(np.abs(x - np.rint(x)) <= 1e-7 * max(1.0, top / 65535)):
            return bits
    return 32


def dosage_from_probs(p: np.ndarray, phased: bool, alt_first: bool, bits: int | None = None) -> np.ndarray:
    """ALT dosage of diploid biallelic genotype probabilities ``(n, 3)`` (or phased ``(n, 4)``), NaN missing.

    Unphased columns are P(11), P(12), P(22) of alleles 1 and 2; phased ones are the two
    haplotypes' P(allele 1), P(allele 2). ``alt_first``: allele 1 is ALT (plink2's
    default reading of BGEN, REF last). With ``bits`` (the file's probability width),
    the result is already on PLINK 2's 1/16384 grid, rounded as ``plink2 --bgen`` rounds
    it: floor((c * 16384 + 2^(bits-1)) / (2^bits - 1)) for the integer dosage numerator c.
    """
    p = np.asarray(p, dtype=np.float64)
    if phased:
        a1 = p[:, 0] + p[:, 2]
    else:
        a1 = 2.0 * p[:, 0] + p[:, 1]
    d = a1 if alt_first else 2.0 - a1
    if bits is None:
        return d
    top = float((1 << bits) - 1)
    c = np.rint(d * top)
    return np.floor((c * DOSAGE_UNIT + float(1 << (bits - 1))) / top) / DOSAGE_UNIT
