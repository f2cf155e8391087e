"""Secure PCA of the study's standardised genotypes, horizontally partitioned over the sites: ``plink2 --pca``.

The top-K eigenpairs of PLINK 2's variance-standardised relationship matrix of the chosen
variants (default: every QC-passing variant), computed by block Krylov iteration with a
residual stop (``protocols.krylov``) on products with each site's genotypes masked once
(``protocols.owned``); only Gram matrices of the secret Krylov basis (functions of the
eigenvalues and a secret Gaussian start) and each site's own scores (to that site) are opened.
With ``--pca-mode pooled`` (every site's consent) the same iteration runs on the sites'
plaintext rows with pooled products opened instead (``genomics.gwas.pca_pooled``).
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.ledger import DISCLOSED, PUBLIC
from cipherome.mpc.memory import Prefault
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat, stack
from cipherome.protocols import arith
from cipherome.protocols.compare import ltz
from cipherome.protocols.division import reciprocal
from cipherome.protocols.krylov import SharedRows, block_krylov, orthonormal_start
from cipherome.protocols.owned import mask_owned, owned_products
from cipherome.protocols.reuse import fix
from cipherome.protocols.sketch import gaussian, open_gram
from cipherome.protocols.trunc import truncate

from cipherome.genomics.job_memory import refuse_over_budget, site_budget
from cipherome.genomics.gwas import pca_pooled
from cipherome.genomics.gwas.pca_calls import OperatorCalls
from cipherome.genomics.gwas.pca_operator import KERNELS, bytes_per_call, kernel_for
from cipherome.genomics.gwas.thinning import thin_by_count, thin_by_distance

__all__ = ["PCAParams", "PCAResult", "PCAPolicyError", "secure_pca", "select_pca_variants", "dosage_bits",
           "frequency_bits",
           "standardisation_weights", "open_gram", "pairwise_factors", "write_eigenvec", "DISCLOSURES",
           "POLICY_KEY", "MODES", "memory_need", "check_memory", "MEMORY_FRACTION", "prefault_operator"]

#: site policy key: may this site's own individuals' PC scores be opened to it (default true)
POLICY_KEY = "pca_own_scores"

#: ledger labels of this stage: kind, what, to whom (docs/pca_logistic.md has the sizes)
DISCLOSURES = {
    "pca.site_counts": ("public", "per site: samples in the PCA, scores policy bit, PCA variant count, "
                                  "a digest of the (public) PCA variant set, pooled-mode policy bit, "
                                  "memory budget (policy max_job_memory_gb) and its pooled-mode product "
                                  "kernel (int8 by AVX-512 VNNI or base-3 tables for hard calls, float32 "
                                  "for dosages: the memory need; tells the others the site's CPU has "
                                  "VNNI or not, and whether it holds dosages)", "all sites"),
    "pca.start_gram": ("disclosed", "b x b Gram of the secret Gaussian start (independent of the data)",
                       "all sites"),
    "pca.gram": ("disclosed", "Gram matrix of [Krylov basis, K x newest block] per pass; depends on the "
                              "data only through the eigenvalues of K (secret Gaussian start)", "all sites"),
    "pca.passes": ("disclosed", "the number of Krylov passes (the dealer counts its requests); a function "
                                "of the opened Gram matrices, so of the eigenvalues of K and the start only; "
                                "not disclosed with a fixed public pass count (pca_passes)", "dealer"),
    "pca.scores": ("disclosed", "the site's own individuals' top-K PC scores (n_s x K)", "that site only"),
    **pca_pooled.DISCLOSURES,
}

#: --pca-mode: "shared" (the Krylov basis as shares; the default) or "pooled" (pca_pooled; by consent)
MODES = ("shared", "pooled")
#: Krylov block b = K + oversample and pass cap by mode. A shared pass is rounds of MPC (fewer, wider passes
#: are cheaper): b = K + 10. A pooled pass is two local products whose work grows with b and two rounds:
#: b = K + 2 rounded up to a multiple of 4 and at least 12 (``pooled_block``; the int8 products run in groups
#: of 8 columns, 4 Krylov columns at 2 digits, so 22 columns cost what 24 do). At K = 10 on the benchmark
#: study b = 12 needs 36-39 passes, 432-468 columns, against 28-33 passes and 560-660 columns at b = 20
#: (docs/wan.md, twelfth pass), hence more passes allowed.
DEFAULT_OVERSAMPLE = {"shared": 10, "pooled": 2}
DEFAULT_MAX_PASSES = {"shared": 40, "pooled": 80}
POOLED_MIN_BLOCK = 12


def pooled_block(k: int) -> int:
    """The pooled mode's default Krylov block for K PCs (``DEFAULT_OVERSAMPLE``'s comment)."""
    return max(POOLED_MIN_BLOCK, -(-(int(k) + DEFAULT_OVERSAMPLE["pooled"]) // 4) * 4)


_D_BITS = 16  # fractional bits of the pairwise scaling d (relative rounding <= 8e-6)
#: a GWAS job's memory budget without ``[policy] max_job_memory_gb``: this fraction of physical memory
MEMORY_FRACTION = 0.5


class PCAPolicyError(ValueError):
    """A site's disclosure policy forbids opening its PC scores to it."""


@dataclass
class PCAParams:
    """The public parameters of the PCA (``--pca K [approx]`` and its variant choice).

    k: PCs; approx: ``--pca K approx``'s matrix (missing calls mean-imputed: 0 after
    standardising, divided by M) instead of PLINK 2's default (pairwise: each pair's
    cross-product over the variants called in both); extract: variant IDs
    (``--pca-extract FILE``, public) to restrict the PCA to; thin_count: evenly spaced count
    thinning of the chosen variants (``--pca-thin-count N``); bp_space: distance thinning
    (``--bp-space``); oversample: block size b = k + oversample of the Krylov iteration (default
    by mode, ``DEFAULT_OVERSAMPLE``);
    tol: stop when the residual bound on the sine of the angle between the computed and the
    exact top-k subspace is below this; rtol: or when every top-k Ritz pair's relative
    residual is below this (``block_krylov``: the stop that also ends on clustered noise
    eigenvalues); max_passes: cap on Krylov passes (default by mode, ``DEFAULT_MAX_PASSES``); passes: a fixed
    public number of passes instead of the stop (the pass count is then not a disclosure);
    min_maf: variants below this pooled MAF get weight 0 inside MPC (0: only those with one
    allele, as PLINK); frac: fixed-point bits (default: the context's); mode: one of
    ``MODES`` (``--pca-mode``).
    """

    k: int = 10
    approx: bool = False
    extract: tuple | None = None
    thin_count: int | None = None
    bp_space: int | None = None
    oversample: int | None = None
    tol: float = 0.02
    rtol: float = 2e-3
    max_passes: int | None = None
    passes: int | None = None
    min_maf: float = 0.0
    frac: int | None = None
    mode: str = "shared"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"--pca-mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.oversample is None:
            self.oversample = pooled_block(self.k) - self.k if self.mode == "pooled" else DEFAULT_OVERSAMPLE[self.mode]
        if self.max_passes is None:
            self.max_passes = DEFAULT_MAX_PASSES[self.mode]
        if not 0.0 < self.rtol < 1.0:
            raise ValueError(f"--pca-rtol {self.rtol:g}: expected a relative residual between 0 and 1 (default 0.002)")

    @classmethod
    def from_gwas(cls, p) -> "PCAParams":
        """From ``GwasParams``: ``pca``, ``pca_variants`` (count thinning, 0 = all) and the optional
        ``extra`` keys ``pca_approx``, ``pca_extract`` (list of IDs), ``pca_bp_space``,
        ``pca_oversample``, ``pca_tol``, ``pca_rtol``, ``pca_max_passes``, ``pca_passes``, ``pca_min_maf``, ``pca_mode``."""
        ex = dict(getattr(p, "extra", {}) or {})
        ext = ex.get("pca_extract")
        fixed = ex.get("pca_passes")
        return cls(k=int(p.pca), approx=bool(ex.get("pca_approx", False)),
                   extract=tuple(str(v) for v in ext) if ext is not None else None,
                   thin_count=int(p.pca_variants) or None, bp_space=ex.get("pca_bp_space"),
                   oversample=_opt_int(ex.get("pca_oversample")), tol=float(ex.get("pca_tol", 0.02)),
                   rtol=float(ex.get("pca_rtol", 2e-3)),
                   max_passes=_opt_int(ex.get("pca_max_passes")), passes=int(fixed) if fixed else None,
                   min_maf=float(ex.get("pca_min_maf", getattr(p, "maf", None) or 0.0)),
                   mode=str(ex.get("pca_mode", "shared")))


def _opt_int(v) -> int | None:
    """An optional integer parameter (None: the mode's default)."""
    return None if v is None else int(v)


@dataclass
class PCAResult:
    """What one site learns from :func:`secure_pca`.

    scores_own (n_kept, K) float64: unit-norm eigenvector entries (PLINK's .eigenvec
    scale) of this site's samples in ``sample_mask``, in their order; eigenvalues (K,)
    descending (PLINK's .eigenval); variants: study-variant indices used (public);
    sample_mask (n_site,) bool; passes: Krylov passes run; bound: the final residual bound
    on the sine of the subspace angle. Signs are arbitrary, as in PLINK.
    """

    scores_own: np.ndarray
    eigenvalues: np.ndarray
    variants: np.ndarray
    sample_mask: np.ndarray
    passes: int = 0
    bound: float = float("nan")
    history: list = field(default_factory=list)

    def site_scores(self) -> np.ndarray:
        """(n_site, K) float64: the scores at this site's samples, NaN outside ``sample_mask``."""
        out = np.full((self.sample_mask.size, self.scores_own.shape[1]), np.nan)
        out[self.sample_mask] = self.scores_own
        return out


def select_pca_variants(site, sv, passed_idx: np.ndarray, pp: PCAParams) -> np.ndarray:
    """Study-variant indices (int64, ascending) of the PCA variants: the QC pass set (public),
    restricted to the ``extract`` IDs, then thinned by distance and/or count -- a deterministic
    function of public data, the same at every site and every rerun."""
    keep = np.zeros(len(sv), dtype=bool)
    keep[np.asarray(passed_idx, dtype=np.int64)] = True
    v = site.variants
    li = sv.local_index
    if pp.extract is not None:
        keep &= np.isin(np.asarray(v.id)[li].astype(str), np.asarray(pp.extract, dtype=str))
        if not keep.any():
            raise ValueError(f"--pca-extract: none of its {len(pp.extract)} variant IDs is a QC-passing "
                             "study variant")
    if pp.bp_space:
        keep = np.isin(np.arange(len(sv)), thin_by_distance(np.asarray(v.chrom)[li], np.asarray(v.pos)[li],
                                                             int(pp.bp_space), keep))
    if pp.thin_count:
        return thin_by_count(int(pp.thin_count), keep)
    return np.flatnonzero(keep).astype(np.int64)


def _digest(idx: np.ndarray) -> int:
    return int.from_bytes(hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).digest()[:7], "big")


def _weight_max(min_maf: float, n_total: int = 0) -> float:
    """Largest weight 2 (called/q)(...) = about 1/(2 p (1 - p)) + 2 for a pooled MAF of at least
    ``min_maf`` (or 1/(2n), the smallest possible, when min_maf is 0)."""
    t = max(float(min_maf), 1.0 / (2.0 * max(n_total, 1)), 1e-6)
    return 2.0 * (1.0 - t) / t + 2.0


def _weight_frac(min_maf: float, n_total: int) -> int:
    """Fractional bits for 1/q so that every weight x = 2 (c^2, cs, s^2) / q stays below 2^61."""
    return 60 - math.ceil(math.log2(_weight_max(min_maf, n_total)))


def standardisation_weights(ctx, alt: Shared, called: Shared, n_total: int, min_maf: float, frac: int) -> Shared:
    """Per-variant 2x2 weights X = [[a^2, a c], [a c, c^2]] (V, 2, 2) at scale ``frac``, shared.

    With p = alt / (2 called) the pooled ALT frequency, a = 1/sd = 1/sqrt(2p(1-p)) and
    c = 2p/sd, so that z = a g - c for a call g (standardised as plink2); in integers
    q = alt (2 called - alt) and a^2 = 2 called^2/q, a c = 2 called alt/q, c^2 = 2 alt^2/q.
    Variants with pooled MAF below ``min_maf`` (or no two alleles) get X = 0, secretly.
    Steps: q, called^2 (1 product round); keep = [q D^2 >= 4 T (D-T) called^2] and [q >= 1]
    for min_maf = T/D (one batched comparison, 1 product); the integer products
    called keep, alt keep and their squares (2 rounds); 1/q by ``reciprocal`` (about 30
    rounds) at 60 - log2(max x) bits; X (1 round) and one truncation to ``frac``.
    Traffic: O(V) ring elements (a few hundred bytes per variant). Nothing is opened.
    """
    from fractions import Fraction

    V = alt.shape[0]
    prod = arith.mul(concat([alt, called]), concat([called * 2 - alt, called]))
    q, c2 = prod[:V], prod[V:]
    t = Fraction(str(min_maf)).limit_denominator(1000)
    T, D = t.numerator, t.denominator
    diff = q * (D * D) - c2 * (4 * T * (D - T))
    nbits = 2 * math.ceil(math.log2(2 * max(n_total, 1) + 1)) + 2 * math.ceil(math.log2(D + 1)) + 6
    b = ltz(concat([diff, q - 1]), min(64, nbits))
    bb = arith.mul(b[:V], b[V:])
    keep = 1 - b[:V] - b[V:] + bb
    drop = 1 - keep
    ck = arith.mul(concat([called, alt]), concat([keep, keep]))
    ints = arith.mul(concat([ck[:V], ck[:V], ck[V:]]), concat([ck[:V], ck[V:], ck[V:]]))  # c^2, cs, s^2 (kept)
    fr = _weight_frac(min_maf, n_total)
    qbits = math.ceil(math.log2(max(n_total, 1) ** 2 + 2)) + 1
    rho = reciprocal(q + drop, hi=qbits, frac=fr)  # 1/q, q >= 1 as an integer (frac 0)
    x = arith.mul(ints * 2, concat([rho, rho, rho]))  # integer * fixed: no truncation, scale fr
    x = truncate(x, fr - frac, frac=frac)
    a2, ac, c2w = x[:V], x[V:2 * V], x[2 * V:]
    return stack([stack([a2, ac], axis=1), stack([ac, c2w], axis=1)], axis=1)


def dosage_bits(n: int, frac: int, h: int) -> int:
    """Bits of the dosage grid in the owned matrix: |G D V| stays below 2^61 at scale frac + h + db.

    Rows of V have unit norm, so |sum_a g_a d_a v_a| <= 2 d_max sqrt(n) with d_max <= 2; at most
    PLINK 2's own 14 bits.
    """
    return max(0, min(14, 61 - frac - h - 2 - math.ceil(math.log2(math.sqrt(max(n, 1)))) - 1))


def frequency_bits(n: int, min_maf: float) -> int:
    """Bits of the pooled ALT dosage sum (2^-ub units) that keep ``standardisation_weights``' checks in 62 bits."""
    from fractions import Fraction

    den = Fraction(str(min_maf)).limit_denominator(1000).denominator
    used = 2 * math.ceil(math.log2(2 * max(n, 1) + 1)) + 2 * math.ceil(math.log2(den + 1)) + 6
    return max(0, min(8, (62 - used) // 2))


def _site_genotypes(g: np.ndarray, db: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, n_s) int64 genotypes at 2^-db (0 where missing) and the called mask, from int8 calls or float dosages."""
    g = np.asarray(g)
    if g.dtype.kind == "f":
        called = ~np.isnan(g)
        return np.rint(np.where(called, g, 0.0) * 2.0 ** db).astype(np.int64), called
    called = g >= 0
    return np.where(called, g, 0).astype(np.int64) << db, called


def pairwise_factors(missing: np.ndarray, m: int, approx: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (d, e), float64 (n_s,): PLINK 2's relationship matrix as K = (D A D + M diag(e)) / M.

    A = Z'Z with missing calls at 0 after standardising (``--pca approx``'s matrix is A / M:
    d = 1, e = 0). PLINK 2's default divides each pair's cross-product by M_ab, the variants
    called in both samples a and b: M_ab = M - m_a - m_b + c_ab (m_a missing calls of a, c_ab
    missing in both). With d_a = M / (M - m_a), d_a d_b / M = 1 / (M - m_a - m_b + m_a m_b / M):
    exact up to c_ab - m_a m_b / M (zero in expectation when calls are missing independently).
    On the diagonal M_aa = M - m_a, so K_aa = A_aa / (M - m_a) = d_a^2 A_aa / M - A_aa m_a / (M - m_a)^2;
    with A_aa ~ M - m_a (E z^2 = 1 per call) the correction is e_a = -m_a / (M - m_a). Measured on
    a 1,000 x 3,753 study with 1% missing calls: top-10 eigenvalues within 1.4e-4 of PLINK's,
    subspace cosines >= 0.99999. ``missing`` (n_s,) missing calls per sample among the M variants.
    """
    mm = np.asarray(missing, dtype=np.float64)
    if approx:
        return np.ones_like(mm), np.zeros_like(mm)
    called = np.maximum(float(m) - mm, 1.0)
    return float(m) / called, -mm / called


def _site_input(ctx, mine: np.ndarray | None, ns: list, cols: int, frac: int) -> Shared:
    """Shares of the rows every site inputs for its own samples, stacked in party order (free)."""
    parts = [ctx.input(p, mine if p == ctx.me else None, shape=(n_p, cols), frac=frac)
             for p, n_p in zip(ctx.parties, ns)]
    return concat(parts, axis=0)


def memory_need(mode: str, m: int, ns: list, kernels: list | None = None) -> list:
    """Bytes of the PCA's largest arrays at each compute party (from public sizes; a lower bound on its peak).

    ``shared``: every party holds one (2M + 1) x n_p matrix of 8-byte ring elements per site p (its own
    mask, and the other sites' masked matrices: ``owned.mask_owned``), 8 (2M + 1) n bytes in all;
    ``pooled``: site s holds its calls of the PCA variants (int8) and ``pca_operator``'s matrices for its
    kernel (``kernels[s]``, default "float"): 1 + ``bytes_per_call`` bytes per call, 2 (a transposed uint8 G'
    beside G, VNNI), 1.5 (base-3 codes of G and G', tables) or 5 (float32 Z').
    """
    if mode == "pooled":
        kernels = ["float"] * len(ns) if kernels is None else kernels
        return [int((1 + bytes_per_call(k)) * int(m) * int(n_s)) for n_s, k in zip(ns, kernels)]
    return [8 * (2 * int(m) + 1) * int(sum(ns))] * len(ns)


def check_memory(parties: list, mode: str, m: int, ns: list, budgets: list, kernels: list | None = None) -> None:
    """Refuse (``InputError``, the same at every party) a PCA whose arrays exceed a site's memory budget,
    before any of them is allocated (``job_memory.refuse_over_budget``)."""
    other = ", --pca-mode pooled" if mode == "shared" else ""
    refuse_over_budget(parties, memory_need(mode, m, ns, kernels), budgets,
                       f"--pca: the PCA's matrices ({m} PCA variants, {sum(ns)} samples, --pca-mode {mode}) need at least",
                       f"choose fewer PCA variants (--pca-thin-count, --pca-extract){other}", MEMORY_FRACTION)


def _kernel(site, dosage: bool) -> str:
    """This site's pooled product kernel (``pca_operator.kernel_for``): int8 by VNNI or base-3 tables for a
    site that reads hard calls, float32 for dosages."""
    return kernel_for(not (dosage and site.read_dosage is not None))


def prefault_operator(site, params, n_var: int, n_s: int, dosage: bool = False) -> Prefault | None:
    """The pooled int8 operator's two call matrices (G and G', at most ``n_var`` PCA variants x ``n_s``
    samples each) faulted in by a background thread (``mpc.memory.Prefault``) while variant QC waits on
    its rounds; None for the other modes and paths, a site that does not allow the pooled products, or
    matrices beyond this site's PCA memory budget. ``release()`` it before ``secure_pca``."""
    pp = params if isinstance(params, PCAParams) else PCAParams.from_gwas(params)
    if pp.mode != "pooled" or _kernel(site, dosage) != "vnni" or not pca_pooled.pooled_allowed(site.policy):
        return None
    need = memory_need("pooled", n_var, [n_s], ["vnni"])[0]
    if need > site_budget(site.policy, MEMORY_FRACTION):
        return None
    return Prefault([n_var * n_s, n_var * n_s])


def secure_pca(ctx, site, sv, passed_idx: np.ndarray, sample_mask: np.ndarray, params,
               dosage: bool = False) -> PCAResult:
    """Top-K principal components of the study, ``plink2 --pca K [approx]``; see module docstring.

    Every compute party calls it with its ``SiteData``, the ``StudyVariants``, the QC pass set
    (study-variant indices, public), the samples it contributes (its ``--mind`` kept samples) and
    ``PCAParams`` (or ``GwasParams``). n samples over S sites, M PCA variants, block b = K + oversample:

    1. public: the PCA variants (:func:`select_pca_variants`); per site its sample count, scores
       policy bit and a digest of its variant set (``pca.site_counts``; all must agree);
    2. sites add per-variant ALT and call counts (free); :func:`standardisation_weights`
       X = [[a^2, ac], [ac, c^2]] with z = a g - c (~45 rounds, O(M) traffic), masked once;
    3. each site masks [G D; Miss D; 1'D] ((2M + 1) x n_s: dosages with 0 for missing, the missing
       indicator, a row of ones; columns scaled by d at 16 bits) once to the other parties
       (``owned.mask_owned``, 1 round, 8 (2M + 1) n_s bytes to each);
    4. the operator on a block V (n x b) with shift t (``apply``), A = Z'Z (missing z = 0):
         R = sum_s M_s V_s = [G D V; Miss D V; 1'D V]   (owned products, 1 round; truncation, 1)
         W = X [R_1; R_2 - 1 1'D V] / 2^t_w              (fixed-operand product + truncation, 2 rounds)
         P0 = sum_s M_s' [W_1; W_2; -1'W_2] = D A D V     (owned products, 1 round)
         P = (P0 + M diag(e) V) / 2^(t - t_w) = M K V / 2^t  (product with the sites' e, 1 round;
         truncation, 1 round); ``approx``: D = I, e = 0, no R truncation and no e product;
    5. block Krylov (``protocols.krylov.block_krylov``) from a secret Gaussian start, orthonormalised
       (``pca.start_gram``): per pass the operator, the Gram of [basis, new block] opened
       (``pca.gram``, 2 rounds) and one truncation for the next block (1 round): 10 rounds per
       pass (8 with approx); it stops when the residual bound on the top-K subspace angle is
       below ``tol`` (the pass count: ``pca.passes``, to the dealer) or runs ``passes`` passes;
    6. eigenvalues = top-K Ritz values; scores = basis @ Ritz coefficients, rows of site s opened
       to site s only (``pca.scores``, S rounds).
    With ``dosage`` (public: some site holds imputed dosages) the matrix is plink2's on dosages:
    sites read their dosages (hard calls at a hard-call site), the pooled ALT frequency is the
    dosage frequency, and G holds each dosage on a grid of 2^-db (``dosage_bits``: 13 at
    n = 1,000, 10 at n = 10^6; PLINK 2 stores 2^-14) with every row of the owned matrix at
    the same extra scale 2^db, which the first truncation and the final shift remove.
    Rounds: about 50 + 10 P + S for P passes, independent of n and M. Bytes per party and pass q
    (8 per ring element): owned products b (n - n_p) + (S - 1)(2M + 1) b, weights product and
    truncations about 8 (S - 1) M b, Gram (S - 1) n q b masked + (q b)^2 opened; once 8 (2M + 1) n_p
    bytes to each other party. Local work per pass: 2 (2M + 1) n b ring multiply-adds per party.
    """
    pp = params if isinstance(params, PCAParams) else PCAParams.from_gwas(params)
    f = int(pp.frac or ctx.frac)
    mask = np.asarray(sample_mask, dtype=bool)
    idx = select_pca_variants(site, sv, passed_idx, pp)
    M = int(idx.size)

    allow = bool(site.policy.get(POLICY_KEY, True))
    pooled = pca_pooled.pooled_allowed(site.policy)
    budget = site_budget(site.policy, MEMORY_FRACTION) >> 20  # MiB
    kernel = _kernel(site, dosage)
    metas = ctx.allgather(np.array([int(mask.sum()), int(allow), M, _digest(idx), int(pooled), budget,
                                    KERNELS.index(kernel)],
                                   dtype=np.int64), "pca.site_counts", kind=PUBLIC)
    refuse = [p for p, mt in zip(ctx.parties, metas) if not int(mt[1])]
    if refuse:
        raise PCAPolicyError(f"the disclosure policy of {', '.join(refuse)} ({POLICY_KEY} = false) forbids "
                             "opening its individuals' PC scores to it; --pca needs them as covariates")
    if len({(int(mt[2]), int(mt[3])) for mt in metas}) != 1:
        raise ValueError("the sites chose different PCA variant sets (with --pca-extract: the listed IDs must "
                         "name the same variants in every site's variant file)")
    ns = [int(mt[0]) for mt in metas]
    n = sum(ns)
    b = min(pp.k + pp.oversample, n, M)
    if pp.k < 1 or pp.k >= min(n, M):
        raise ValueError(f"--pca {pp.k}: needs 1 <= K < min(samples {n}, PCA variants {M})")
    check_memory(list(ctx.parties), pp.mode, M, ns, [int(mt[5]) << 20 for mt in metas],
                 [KERNELS[int(mt[6])] for mt in metas])
    if pp.mode == "pooled":
        pca_pooled.check_pooled_policy(ctx.parties, [bool(mt[4]) for mt in metas])
        if kernel != "float":  # straight into the operator's layout (a .bed site's packed rows without an int8 matrix)
            g = OperatorCalls.build(sv.read_calls(site, idx, mask), codes=kernel == "tables")
            alt, obs, missing = g.alt, g.obs, g.missing
        else:
            g = sv.read(site, idx, mask, dosage=dosage)
            alt, obs, missing = pca_pooled.call_counts(g)
        d_own, e_own = pairwise_factors(missing, M, pp.approx)
        scores, kr = pca_pooled.pooled_pca_run(ctx, g, (alt, obs), ns, b, pp, d_own, e_own, f, kernel != "float")
        return PCAResult(scores_own=scores, eigenvalues=kr.eigenvalues[:pp.k].copy(), variants=idx,
                         sample_mask=mask, passes=kr.passes, bound=kr.bound, history=kr.history)

    # local genotypes (or dosages) of the PCA variants ---------------------------------------
    h = 0 if pp.approx else _D_BITS
    db, ub = (dosage_bits(n, f, h), frequency_bits(n, pp.min_maf)) if dosage else (0, 0)
    gt, called = _site_genotypes(sv.read(site, idx, mask, dosage=dosage), db)
    alt = np.rint(gt.sum(axis=1) * 2.0 ** (ub - db)).astype(np.int64)  # ALT dosage sum at 2^-ub
    local = np.stack([alt, called.sum(axis=1) << ub]).astype(np.int64)
    cnt = ctx.inputs_sum(local, shape=(2, M), frac=0)
    d_own, e_own = pairwise_factors((~called).sum(axis=0), M, pp.approx)

    # standardisation weights (secret) and masks --------------------------------------------------
    xw = standardisation_weights(ctx, cnt[0], cnt[1], n << ub, pp.min_maf, f)
    # owned matrix [G D; Miss D; 1' D] (2M + 1 rows) with D = diag(d) at h bits: the same rounded d
    # on both sides keeps the operator exactly symmetric; with dosages every row carries 2^db
    dq = np.rint(d_own * 2.0 ** h).astype(np.int64)
    own = np.concatenate([gt * dq, ((~called).astype(np.int64) * dq) << db, dq[None, :] << db], axis=0)
    h += db  # from here on h is the owned matrix's whole extra scale
    xmax = _weight_max(pp.min_maf, n)
    fx = max(8, min(f, 62 - f - math.ceil(math.log2(xmax * 2.0 * math.sqrt(n) * 1.5))))
    xw = truncate(xw, f - fx, frac=fx) if fx < f else xw
    fixed_x = fix(xw, "pca.weights_mask")
    mats = mask_owned(ctx, own, {p: (2 * M + 1, n_p) for p, n_p in zip(ctx.parties, ns)}, "pca.genotype_mask")
    order = list(ctx.parties)
    offsets = np.concatenate([[0], np.cumsum(ns)])

    def apply(v: Shared, t_bits: int) -> Shared:
        """M K V / 2^t for the block V (step 4)."""
        rs = owned_products([(mats[p], v[offsets[i]:offsets[i + 1]]) for i, p in enumerate(order)],
                            transpose=False, label="pca.product")
        r = rs[0]
        for extra in rs[1:]:
            r = r + extra
        if h:
            r = truncate(r, h, frac=f)  # [G D V; Miss D V; 1'D V]
        ry = stack([r[:M], r[M:2 * M] - r[2 * M:].broadcast_to((M, b))], axis=1)  # (M, 2, b): G DV, -O DV
        raw = fixed_x.left_mul(Shared(ctx, ry.data, 0), "pca.weights_product")  # X R, scale fx + f
        # W = [a; c] * (Z D V) / 2^t_w keeps f bits; the rest of the shift 2^-t follows the second product,
        # where |D A D V| / 2^t_w <= 2^(61 - f - h) by the choice of t (|M K V| / 2^t ~ 16) or of t_w
        t_w = max(0, min(t_bits, t_bits - (61 - f - h - 6)))
        w = truncate(raw, fx + t_w, frac=f)
        ps = owned_products([(mats[p], concat([w[:, 0, :], w[:, 1, :], -w[:, 1, :].sum(axis=0).reshape(1, b)],
                                              axis=0)) for p in order], transpose=True, label="pca.product")
        p_raw = concat(ps, axis=0)  # D A D V / 2^t_w at scale f + h
        if not pp.approx:
            e_int = np.rint(e_own * M * 2.0 ** (h - t_w)).astype(np.int64)
            ev = arith.mul(v, _site_input(ctx, np.repeat(e_int[:, None], b, axis=1), ns, b, 0))
            p_raw = Shared(ctx, p_raw.data + ev.data, f + h)  # + M diag(e) V / 2^t_w
        shift = h + t_bits - t_w
        return truncate(p_raw, shift, frac=f) if shift else Shared(ctx, p_raw.data, f)

    # orthonormal Gaussian start -------------------------------------------------------------------
    q0 = gaussian(ctx, (n, b), f, 1.0 / math.sqrt(n))
    v1 = orthonormal_start(SharedRows(ctx, n), q0, "pca.start_gram")

    kr = block_krylov(ctx, apply, v1, pp.k, scale0=float(M), tol=pp.tol, max_passes=pp.max_passes,
                      fixed_passes=pp.passes, label="pca.gram", rtol=pp.rtol)
    for om in mats.values():
        om.free()
    if not pp.passes:
        ctx.ledger.record("pca.passes", DISCLOSED, [ctx.dealer], 1)

    # Ritz vectors, each site's rows to that site only ---------------------------------------------
    vec = Shared(ctx, ring_matmul(np.ascontiguousarray(kr.basis.data), encode(kr.coef[:, :pp.k], f)), 2 * f)
    scores = None
    for i, p in enumerate(order):
        got = ctx.open(vec[offsets[i]:offsets[i + 1]], "pca.scores", to=p)
        if p == ctx.me:
            scores = got
    return PCAResult(scores_own=np.asarray(scores, dtype=np.float64), eigenvalues=kr.eigenvalues[:pp.k].copy(),
                     variants=idx, sample_mask=mask, passes=kr.passes, bound=kr.bound, history=kr.history)


def write_eigenvec(path, fid, iid, scores: np.ndarray) -> Path:
    """Write ``scores`` (n, K) as a PLINK 2 ``.eigenvec`` (``#FID IID PC1 ..``, or ``#IID ..`` without
    family IDs) atomically (temp file, then rename); returns the path."""
    path = Path(path)
    k = scores.shape[1]
    head = (["#FID", "IID"] if fid is not None else ["#IID"]) + [f"PC{i + 1}" for i in range(k)]
    lines = ["\t".join(head)]
    for j in range(scores.shape[0]):
        ids = [str(fid[j]), str(iid[j])] if fid is not None else [str(iid[j])]
        lines.append("\t".join(ids + [f"{x:.6g}" for x in scores[j]]))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
