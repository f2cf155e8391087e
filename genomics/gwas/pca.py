"""Secure PCA of the study's standardised genotypes, horizontally partitioned over the sites.

Randomized subspace iteration on the relationship matrix K = Z'Z / M of a thinned set
of QC-passing variants (Z standardised as ``plink2 --pca approx``, missing calls at
the mean): products with a site's genotypes go through its matrix masked once
(``protocols.owned``), the small L x L Gram matrices are opened -- by the rotation
invariance of the secret Gaussian start they depend on the data only through the
eigenvalues of K -- and each site learns only its own individuals' PC scores.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat, stack
from cipherome.protocols import arith
from cipherome.protocols.compare import ltz
from cipherome.protocols.division import reciprocal
from cipherome.protocols.reuse import fix
from cipherome.protocols.sketch import gaussian, open_gram
from cipherome.protocols.trunc import truncate

from cipherome.protocols.owned import mask_owned, owned_products
from cipherome.genomics.gwas.thinning import thin_by_count, thin_by_distance

__all__ = ["PCAParams", "PCAResult", "PCAPolicyError", "secure_pca", "select_pca_variants",
           "standardisation_weights", "open_gram", "DISCLOSURES", "POLICY_KEY"]

log = logging.getLogger("cipherome.pca")

#: site policy key: may this site's own individuals' PC scores be opened to it (default true)
POLICY_KEY = "pca_own_scores"

#: ledger labels of this stage: kind, what, to whom (docs/pca_logistic.md has the sizes)
DISCLOSURES = {
    "pca.site_counts": ("public", "samples in the PCA and the scores policy bit, per site", "all sites"),
    "pca.gram": ("disclosed", "L x L Gram matrix per pass; depends on the data only through the "
                              "eigenvalues of K (secret Gaussian start)", "all sites"),
    "pca.scores": ("disclosed", "the site's own individuals' top-K PC scores (n_s x K)", "that site only"),
}

_GRAM_TARGET = 2.0 ** 8  # largest Gram eigenvalue aimed at: far below the 2^14 that a 24-bit product allows
_GRAM_FIRST = 2.0 ** 11  # first pass: a guaranteed bound (lambda_1 <= trace K), so aim higher
_GRAM_LIMIT = 2.0 ** 13  # an opened Gram above this is treated as overflowed and recomputed smaller


class PCAPolicyError(ValueError):
    """A site's disclosure policy forbids opening its PC scores to it."""


@dataclass
class PCAParams:
    """k: PCs; n_variants: count thinning target (``--pca`` on at most this many evenly spaced
    QC-passing variants); bp_space: distance thinning instead (``--bp-space``); oversample:
    extra sketch columns (L = k + oversample); passes: products with K (the first from a
    Gaussian start); min_maf: variants below this pooled MAF get weight 0 (not disclosed
    which); missing: how a missing call enters Z -- "site-mean" (default: the site's own
    mean dosage among its calls, to 1/16 of a dosage; one masked matrix per site) or
    "mean" (0 after standardising, i.e. the pooled mean, exactly ``plink2 --pca approx``/
    ``meanimpute``; each site masks its dosages and its missing-call indicator: twice the
    one-time traffic). Both give PLINK 2's axes (|corr| >= 0.9999 for the structure PCs);
    eigenvalues differ from plink2's default (pairwise) by about -1.2% and -2% with 1% missing;
    frac: fixed-point bits of the iteration (default: the context's)."""

    k: int = 10
    n_variants: int = 2000
    bp_space: int | None = None
    oversample: int = 10
    passes: int = 5
    min_maf: float = 0.01
    missing: str = "site-mean"
    frac: int | None = None

    @classmethod
    def from_gwas(cls, p) -> "PCAParams":
        """From ``GwasParams`` (``pca``, ``pca_variants`` and optional ``extra`` keys
        ``pca_bp_space``, ``pca_oversample``, ``pca_passes``, ``pca_min_maf``, ``pca_missing``)."""
        ex = dict(getattr(p, "extra", {}) or {})
        return cls(k=int(p.pca), n_variants=int(p.pca_variants), bp_space=ex.get("pca_bp_space"),
                   oversample=int(ex.get("pca_oversample", 10)), passes=int(ex.get("pca_passes", 5)),
                   min_maf=float(ex.get("pca_min_maf", 0.01)), missing=str(ex.get("pca_missing", "site-mean")))


@dataclass
class PCAResult:
    """What one site learns from :func:`secure_pca`.

    scores_own (n_kept, K) float64: unit-norm eigenvector entries (PLINK's .eigenvec
    scale) of this site's samples in ``sample_mask``, in their order; eigenvalues (K,)
    descending (PLINK's .eigenval); variants: study-variant indices used (public);
    sample_mask (n_site,) bool. Signs are arbitrary, as in PLINK.
    """

    scores_own: np.ndarray
    eigenvalues: np.ndarray
    variants: np.ndarray
    sample_mask: np.ndarray

    def site_scores(self) -> np.ndarray:
        """(n_site, K) float64: the scores at this site's samples, NaN outside ``sample_mask``."""
        out = np.full((self.sample_mask.size, self.scores_own.shape[1]), np.nan)
        out[self.sample_mask] = self.scores_own
        return out


def select_pca_variants(site, sv, passed_idx: np.ndarray, pp: PCAParams) -> np.ndarray:
    """Study-variant indices (int64, ascending) of the PCA subset: a deterministic function of
    the public QC pass set and positions (count or ``--bp-space`` thinning), the same at every site."""
    passed_idx = np.asarray(passed_idx, dtype=np.int64)
    keep = np.zeros(len(sv), dtype=bool)
    keep[passed_idx] = True
    if pp.bp_space:
        v = site.variants
        li = sv.local_index
        return thin_by_distance(np.asarray(v.chrom)[li], np.asarray(v.pos)[li], int(pp.bp_space), keep)
    return thin_by_count(int(pp.n_variants), keep)


def _weight_frac(min_maf: float) -> int:
    """Fractional bits for 1/q so that every weight x = 2 (c^2, cs, s^2) / q stays below 2^61."""
    t = max(float(min_maf), 1e-4)
    xmax = 2.0 * (1.0 - t) / t + 2.0
    return 60 - math.ceil(math.log2(xmax))


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
    fr = _weight_frac(min_maf)
    qbits = math.ceil(math.log2(max(n_total, 1) ** 2 + 2)) + 1
    rho = reciprocal(q + drop, hi=qbits, frac=fr)  # 1/q, q >= 1 as an integer (frac 0)
    x = arith.mul(ints * 2, concat([rho, rho, rho]))  # integer * fixed: no truncation, scale fr
    x = truncate(x, fr - frac, frac=frac)
    a2, ac, c2w = x[:V], x[V:2 * V], x[2 * V:]
    return stack([stack([a2, ac], axis=1), stack([ac, c2w], axis=1)], axis=1)


def _gram_scale(m: int, lam_hat: float, target: float) -> int:
    """Bits t so that the Gram of Z'Z Q / 2^t (top eigenvalue about (m lam_hat / 2^t)^2) is near ``target``."""
    return max(0, math.ceil(math.log2(max(m * lam_hat, 1.0) / math.sqrt(target))))


def _plausible_gram(g: np.ndarray) -> bool:
    d = np.diag(g)
    return bool(np.all(np.isfinite(g)) and np.all(d >= -1e-6) and d.max() < _GRAM_LIMIT
                and np.allclose(g, g.T, atol=1e-3 * max(1.0, d.max())))


def secure_pca(ctx, site, sv, passed_idx: np.ndarray, sample_mask: np.ndarray, params) -> PCAResult:
    """Top-K principal components of the study (``plink2 --pca K approx`` twin); see module docstring.

    Every compute party calls it with its ``SiteData``, the ``StudyVariants``, the QC
    pass set (study-variant indices, public), the samples it contributes (its ``--mind``
    kept samples) and ``PCAParams`` (or ``GwasParams``). Steps and cost (n samples over
    S sites, M thinned variants, L = K + oversample, P passes):

    1. public: thinning; the sites' sample counts and scores-policy bits (``pca.site_counts``);
    2. sites add their per-variant ALT counts and call counts (free);
       :func:`standardisation_weights` (~45 rounds, O(M) traffic);
    3. each site masks [G; Miss] (2M x n_s, dosages with missing as 0 and the missing
       indicator; for ``missing="site-mean"`` the M x n_s dosages with missing calls at
       the site's mean) once to the other parties (``owned.mask_owned``): 1 round,
       16 M n_s (8 M n_s) bytes to each; the weights X are masked once (``reuse.fix``, 4M);
    4. P passes, from Q_0 = a secret Gaussian n x L (dealer) / sqrt(n); pass t:
       R = sum_s [G_s; Miss_s] Q_s   (owned products, 1 round; |Q_s| to site s)
       W = X [R_1; R_2 - 1 1'Q] / 2^t  (fixed-operand product + truncation, 2 rounds, 4 M L)
       P = Z'Z Q / 2^t = [G; Miss]' W - 1 1'W_2  (owned products, 1 round; 2 M L to each site)
       G = P'P opened as ``pca.gram`` (L x L; :func:`open_gram`: 2 rounds, n L masked);
       eigh(G) = V Gamma V' in plaintext, Q = P V Gamma^-1/2 (public product, 1 round).
       t is chosen from the previous Gram so that G stays in fixed-point range.
    5. eigenvalues = sqrt(Gamma_K) 2^t / M; scores = first K columns of the last Q,
       rows of site s opened to site s only (``pca.scores``, S rounds).
    Rounds: about 50 + 7 P + S. Traffic per party and pass, 3 parties: about
    (12 M + 5 n) L ring elements of 8 bytes; once: 16 M n_s bytes to each other party
    (its mask) + O(M).
    Openings: ``pca.gram`` depends on the data only through the eigenvalues of K,
    because Q_0 is a secret Gaussian and every opened matrix is a function of
    U'Q_0 (U the eigenvectors of K), which is again Gaussian whatever U is.
    """
    pp = params if isinstance(params, PCAParams) else PCAParams.from_gwas(params)
    f = int(pp.frac or ctx.frac)
    mask = np.asarray(sample_mask, dtype=bool)
    idx = select_pca_variants(site, sv, passed_idx, pp)
    M = int(idx.size)

    allow = bool(site.policy.get(POLICY_KEY, True))
    metas = ctx.allgather(np.array([int(mask.sum()), int(allow)], dtype=np.int64), "pca.site_counts")
    refuse = [p for p, mt in zip(ctx.parties, metas) if not int(mt[1])]
    if refuse:
        raise PCAPolicyError(f"the disclosure policy of {', '.join(refuse)} ({POLICY_KEY} = false) forbids "
                             "opening its individuals' PC scores to it; --pca needs them as covariates")
    ns = [int(mt[0]) for mt in metas]
    n = sum(ns)
    L = min(pp.k + pp.oversample, n, M)
    if pp.k < 1 or pp.k > L:
        raise ValueError(f"--pca {pp.k}: needs 1 <= K <= min(samples {n}, PCA variants {M})")

    if pp.missing not in ("mean", "site-mean"):
        raise ValueError(f"PCA missing-call handling must be 'mean' or 'site-mean', not {pp.missing!r}")
    site_mean = pp.missing == "site-mean"

    # local genotypes of the PCA variants ----------------------------------------------------
    g = np.asarray(sv.read(site, idx, mask), dtype=np.int8)
    called = g >= 0
    gt = np.where(called, g, 0).astype(np.int64)
    local = np.stack([gt.sum(axis=1), called.sum(axis=1)]).astype(np.int64)
    cnt = ctx.inputs_sum(local, shape=(2, M), frac=0)

    # standardisation weights (secret) and masks --------------------------------------------------
    xw = standardisation_weights(ctx, cnt[0], cnt[1], n, pp.min_maf, f)
    if site_mean:
        # 8 x dosage with missing calls at 8 x the site mean dosage 2 p_site (0..16): H8 = 8 H; the weights
        # [[a^2/64, ac/64], [ac/8, c^2/8]] turn [H8 Q; -8 1'Q] into [a z / 8; c z] (z = Z Q rows)
        fill = np.rint(8.0 * local[0] / np.maximum(local[1], 1)).astype(np.int64)
        own = np.where(called, 8 * gt, fill[:, None])
        xw = arith.mul_public(xw, np.broadcast_to(np.array([[1 / 64, 1 / 64], [1 / 8, 1 / 8]]), xw.shape))
        rows = M
    else:
        own = np.concatenate([gt, (~called).astype(np.int64)], axis=0)
        rows = 2 * M
    xmax = 2.0 * (1.0 - max(pp.min_maf, 1e-4)) / max(pp.min_maf, 1e-4) + 2.0
    fx = max(8, min(f, 62 - f - math.ceil(math.log2(xmax * 2.0 * math.sqrt(n) * 1.5))))
    xw = truncate(xw, f - fx, frac=fx) if fx < f else xw
    fixed_x = fix(xw, "pca.weights_mask")
    mats = mask_owned(ctx, own, {p: (rows, n_p) for p, n_p in zip(ctx.parties, ns)}, "pca.genotype_mask")
    order = list(ctx.parties)
    offsets = np.concatenate([[0], np.cumsum(ns)])

    # Gaussian start --------------------------------------------------------------------------------
    q = gaussian(ctx, (n, L), f, 1.0 / math.sqrt(n))

    # ||K Q_0|| for the Gaussian start: <= lambda_1 sqrt(2 L / n) + bulk <= sqrt(2 L n) + bulk (lambda_1 <= n)
    lam_hat, target = min(float(n), math.sqrt(2.0 * L * n) + 10.0), _GRAM_FIRST
    gamma = vecs = None
    t_bits = 0
    for it in range(pp.passes):
        t_bits = _gram_scale(M, lam_hat, target)
        # R = sum_s M_s Q_s  (M_s = [G_s; Miss_s], 2M x L; or H8_s, M x L)
        rs = owned_products([(mats[p], q[offsets[i]:offsets[i + 1]]) for i, p in enumerate(order)],
                            transpose=False, label="pca.product")
        r = rs[0]
        for extra in rs[1:]:
            r = r + extra
        colsum = q.sum(axis=0).reshape(1, L).broadcast_to((M, L))
        r2 = -(colsum * 8) if site_mean else r[M:] - colsum
        ry = stack([r[:M], r2], axis=1)  # (M, 2, L)
        raw = fixed_x.left_mul(Shared(ctx, ry.data, 0), "pca.weights_product")  # X R, raw scale fx + f
        w = truncate(raw, fx + t_bits, frac=f)  # (M, 2, L): rows a z (/ 8 for site-mean) and c z of Z Q / 2^t
        wflat = w[:, 0, :] if site_mean else concat([w[:, 0, :], w[:, 1, :]], axis=0)
        ps = owned_products([(mats[p], wflat) for p in order], transpose=True, label="pca.product")
        w2sum = w[:, 1, :].sum(axis=0).reshape(1, L)
        p_all = concat([pi - w2sum.broadcast_to(pi.shape) for pi in ps], axis=0)  # (n, L) = Z'Z Q / 2^t
        while True:
            gram = open_gram(ctx, p_all, "pca.gram")
            if _plausible_gram(gram):
                break
            log.warning("pca: Gram out of range at pass %d (max diagonal %.3g), rescaling", it, np.diag(gram).max())
            p_all = truncate(p_all, 8, frac=p_all.frac)
            t_bits += 8
        gram = (gram + gram.T) / 2.0
        gamma, vecs = np.linalg.eigh(gram)
        o = np.argsort(gamma)[::-1]
        gamma, vecs = np.maximum(gamma[o], 1e-300), vecs[:, o]
        h = vecs / np.sqrt(gamma)[None, :]
        q = Shared(ctx, ring_matmul(p_all.data, encode(h, f)), 2 * f)
        q = truncate(q, f)
        est = math.sqrt(gamma[0]) * 2.0**t_bits / M  # ||K Q_prev|| <= lambda_1: the next pass's scale
        # from the Gaussian start, |u_1' Q| ~ sqrt(L / n) (chi-square_L tail: 3x is safe); afterwards
        # ||K Q|| ~ lambda_1; an underestimate shows as an out-of-range Gram and is recomputed smaller
        lam_hat = min(float(n), 3.0 * est * math.sqrt(n / L)) if it == 0 else 2.0 * est
        target = _GRAM_TARGET
    for om in mats.values():
        om.free()

    eig = np.sqrt(gamma[: pp.k]) * 2.0**t_bits / M
    scores = None
    for i, p in enumerate(order):
        got = ctx.open(q[offsets[i]:offsets[i + 1], : pp.k], "pca.scores", to=p)
        if p == ctx.me:
            scores = got
    return PCAResult(scores_own=np.asarray(scores, dtype=np.float64), eigenvalues=eig, variants=idx,
                     sample_mask=mask)
