"""PCA with pooled products (``--pca K --pca-mode pooled``): plink2 --pca's matrix at plaintext speed, by consent.

The same top-K eigenpairs as ``genomics.gwas.pca`` (PLINK 2's variance-standardised
relationship matrix K = (D Z Z' D + M diag(e)) / M of the chosen variants, pairwise
missing-call factors d, e as ``pairwise_factors``), by the same block Krylov iteration
with the same residual stop (``protocols.krylov``), but with the Krylov basis kept by
the sites row by row in plaintext (``LocalRows``) instead of as shares:

1. public: the PCA variants, per site its sample count, policy bits and a digest of the
   variant set (``pca.site_counts``); every site's policy must set
   ``pca_pooled_products = true`` or the job stops before any data moves;
2. the pooled ALT dosage sum and call count of each PCA variant are opened
   (``pca.pooled_counts``, 1 round): every site standardises its own genotypes in
   plaintext, z = (g - 2p) / sqrt(2p(1-p)) for a call, 0 for a missing call, as plink2;
3. each site draws its own rows V_s of a Gaussian start; the Gram of the start is opened
   (``pca.start_gram``) and each site orthonormalises its rows by the same public matrix;
4. the operator on a block V (n x b), per pass:
     U = sum_s Z_s' D_s V_s         (M x b; each site's term is local, the sum is opened:
                                     ``pca.pooled_products``, 1 round, by ranges of variants
                                     whose transfers overlap the other ranges' products,
                                     ``product_parts``)
     (M K V)_s = D_s Z_s U + M e_s V_s   (local, at site s)
   then the Gram of [basis, M K V_q] is the sum of the sites' local Grams, opened
   (``pca.gram``, 1 round); orthogonalisation and Rayleigh-Ritz as ``block_krylov``;
5. each site's scores are its own rows of the Ritz vectors: computed where they live,
   never sent.
Rounds: 3 + 2 P for P passes. Bytes per party per pass: the opened U, (S - 1) M b
elements of ceil(bits/8) bytes to each other site (16 fractional bits, ``_product_bits``:
4 bytes up to n = 131,000 samples, 5 beyond), and the Gram. Local work per pass: two products
of the site's n_s x M standardised matrix with b columns (about 4 n_s M b multiply-adds;
``pca_operator``: int8 products of the hard calls by AVX-512 VNNI where the CPU has it, float32
table sums over base-3 codes of the calls elsewhere, float32 SGEMM for dosages).

What this discloses beyond the shared mode, and why a site may accept it, is in
docs/threat_model.md ("PCA with pooled products"): U is a pooled per-variant aggregate
of every site's genotypes, of the same kind as the PCA loadings; the pooled frequencies
are those of ``plink2 --freq`` on the pooled data.
"""
from __future__ import annotations

import functools
import math
import secrets

import numpy as np

from cipherome.genomics.errors import InputError
from cipherome.mpc.pipeline import stagger
from cipherome.protocols.krylov import LocalRows, block_krylov, open_sum, orthonormal_start

from .pca_calls import count_int8_calls
from .pca_operator import StandardisedCalls

__all__ = ["POOLED_POLICY_KEY", "DISCLOSURES", "pooled_allowed", "check_pooled_policy", "call_counts",
           "product_parts", "pooled_pca_run"]

#: site policy key: may the pooled products of the PCA (and its pooled allele counts) be opened (default false)
POOLED_POLICY_KEY = "pca_pooled_products"

#: ledger labels of the pooled mode beyond those of the shared mode (kind, what, to whom)
DISCLOSURES = {
    "pca.pooled_counts": ("disclosed", "pooled ALT dosage sum and call count per PCA variant (plink2 --freq "
                                       "--missing of the pooled PCA variants)", "all sites"),
    "pca.pooled_products": ("disclosed", "per Krylov pass, U = Z'DV (M x b): each PCA variant's standardised "
                                         "genotypes summed over all sites' samples with the weights of the "
                                         "current Krylov block", "all sites"),
}

_COUNT_FRAC = 14  # PLINK 2's dosage grid: pooled dosage sums are opened at 2^-14
_D_MAX = 16.0  # largest pairwise factor d = M / (M - missing) the opened products' width allows
#: fractional bits of the opened U: entries are O(1) (rms sqrt(theta) for a Ritz value theta of K), so 2^-17
#: rounding is far below the next product's quantisation, 2^-16 of a column's largest entry (``pca_operator``)
_PRODUCT_FRAC = 16
#: ranges of variants per pass whose openings overlap the others' products, and their least size (``product_parts``)
_PARTS, _MIN_PART = 4, 256


def pooled_allowed(policy: dict | None) -> bool:
    """This site's ``pca_pooled_products`` (default false)."""
    return bool((policy or {}).get(POOLED_POLICY_KEY, False))


def check_pooled_policy(parties: list, allowed: list) -> None:
    """Refuse the pooled mode unless every site's policy allows it (a public decision from public bits)."""
    refuse = [p for p, a in zip(parties, allowed) if not a]
    if refuse:
        msg = (f"--pca-mode pooled opens pooled per-variant products of every site's genotypes; the policy of "
               f"{', '.join(refuse)} does not allow it ({POOLED_POLICY_KEY} = false). Use --pca-mode shared, or "
               f"let every site set {POOLED_POLICY_KEY} = true (docs/threat_model.md)")
        raise InputError(msg, kind=msg)  # public: party names and a policy bit


def call_counts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alt (M,), called (M,), missing (n_s,)) of ``g`` (M, n_s): per variant the ALT dosage sum and the
    call count, per sample the missing calls. int8 hard calls (-1 missing) in one compiled pass (a
    numpy ``where``/``sum`` chain over a 10^8-call matrix takes seconds); float dosages: NaN missing."""
    if g.dtype.kind == "f":
        miss = np.isnan(g)
        return np.nansum(g, axis=1, dtype=np.float64), (~miss).sum(axis=1).astype(np.float64), miss.sum(axis=0)
    alt, obs = np.zeros(g.shape[0], dtype=np.int64), np.zeros(g.shape[0], dtype=np.int64)
    miss = np.zeros(g.shape[1], dtype=np.int64)
    count_int8_calls(np.ascontiguousarray(g, dtype=np.int8), alt, obs, miss)
    return alt.astype(np.float64), obs.astype(np.float64), miss


def product_parts(m: int) -> list[slice]:
    """The ranges of the M PCA variants whose products U_r = sum_s (Z_s' D_s V_s)[r] are opened one after
    another within a pass (``mpc.pipeline.stagger``: one round): while range r travels, the sites
    compute range r + 1's left product, and range r's right product Z_s[:, r] U_r while later ranges
    travel. ``_PARTS`` ranges, at least ``_MIN_PART`` variants each, cut at multiples of 64."""
    count = max(1, min(_PARTS, m // _MIN_PART))
    cuts = [0] + [int(round(m * i / count / 64)) * 64 for i in range(1, count)] + [m]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _product_bits(n: int, d_max: float, frac: int) -> int:
    """Ring bits of the opened U = Z'DV at ``frac`` fractional bits: |U_jk| <= ||D z_j|| ||v_k|| with
    ||D z_j|| <= d_max ||z_j|| and ||z_j||^2 <= 2 n for every variant j. The last because
    g^2 <= 2 g for a call or dosage g in [0, 2] and sum_i g_i = 2 p c over the c called samples
    (p the pooled frequency of those calls): sum_i (g_i - 2p)^2 = sum g^2 - 4 p^2 c <= 4 p (1 - p) c,
    times s^2 = 1 / (2 p (1 - p)) that is 2 c. Columns of V have norm ~1; the bound allows 2."""
    bound = 2.0 * math.sqrt(2.0 * n) * max(d_max, 1.0)
    return min(64, frac + math.ceil(math.log2(bound + 1.0)) + 2)


def pooled_pca_run(ctx, g: np.ndarray, own_counts: tuple, ns: list, b: int, pp, d_own: np.ndarray,
                   e_own: np.ndarray, frac: int, int8_products: bool | None = None) -> tuple:
    """Steps 2-5 of the module docstring for one site: ``g`` (M, n_s) its genotypes of the PCA variants
    (int8 or float dosages, or ``pca_calls.OperatorCalls``; consumed: ``pca_operator`` may turn int8
    calls into its matrix in place),
    ``own_counts`` its (alt, called) per variant (``call_counts``); ``ns`` the sites' sample counts,
    ``b`` the Krylov block size; returns (scores_own (n_s, K), KrylovResult).

    ``d_own``, ``e_own`` (n_s,): this site's pairwise factors (``pairwise_factors``); ``frac``: the
    fixed-point bits of the Gram openings (U has its own, ``_PRODUCT_FRAC``); ``int8_products``: the
    product path this site announced in ``pca.site_counts`` (``StandardisedCalls``; None: its default).
    """
    M = g.shape[0]
    n = int(sum(ns))
    if d_own.size and float(d_own.max()) > _D_MAX:
        msg = (f"--pca-mode pooled: a sample has calls at fewer than 1/{int(_D_MAX)} of the PCA variants; "
               "remove such samples with --mind")
        raise InputError(msg, kind="has a sample with almost no calls among the PCA variants")

    # 2. pooled counts, then local standardisation --------------------------------------------------
    alt, obs = own_counts
    cbits = _COUNT_FRAC + math.ceil(math.log2(2 * n + 2)) + 2
    counts = open_sum(ctx, np.stack([alt, obs]), "pca.pooled_counts", _COUNT_FRAC, cbits)
    alt_all, obs_all = counts[0], np.rint(counts[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(obs_all > 0, alt_all / (2.0 * np.maximum(obs_all, 1.0)), 0.0)
    maf = np.minimum(p, 1.0 - p)
    keep = (maf > 0) & (maf >= pp.min_maf) & (obs_all > 0)
    zt = StandardisedCalls(g, p, keep, int8_products)  # Z' (M, n_s); in int8 it takes over g's memory
    del g

    # 3. Gaussian start, each site its own rows -------------------------------------------------------
    rows = LocalRows(ctx, n, frac, bits=min(64, frac + 18))
    rng = np.random.default_rng(secrets.randbits(128))
    q0 = rng.standard_normal((zt.shape[1], b)) / math.sqrt(n)
    v1 = orthonormal_start(rows, q0, "pca.start_gram")

    # 4. the operator ----------------------------------------------------------------------------------
    ubits = _product_bits(n, _D_MAX, _PRODUCT_FRAC)
    me = float(M)

    parts = product_parts(M)

    def apply(v: np.ndarray, t_bits: int) -> np.ndarray:
        """(M K V)_s / 2^t for this site's rows v (n_s, b): Z_s' D_s V_s pooled, then D_s Z_s U
        (``pca_operator.StandardisedCalls``: integer products with VNNI, table sums, or SGEMM for dosages),
        by ranges of variants whose openings overlap the other ranges' products (``product_parts``)."""
        y = zt.left_input(d_own[:, None] * v)

        def part(rows: slice):
            def run() -> np.ndarray:
                uu = open_sum(ctx, zt.left_rows(y, rows), "pca.pooled_products", _PRODUCT_FRAC, ubits)
                return zt.right_rows(uu, rows)
            return run

        kv = functools.reduce(np.add, stagger(ctx, [part(r) for r in parts]))
        kv *= d_own[:, None]
        if not pp.approx:
            kv += me * e_own[:, None] * v
        return kv / 2.0 ** t_bits

    kr = block_krylov(ctx, apply, v1, pp.k, scale0=me, tol=pp.tol, max_passes=pp.max_passes,
                      fixed_passes=pp.passes, label="pca.gram", rows=rows, rtol=pp.rtol)
    # 5. scores: this site's rows of the Ritz vectors ----------------------------------------------------
    return kr.basis @ kr.coef[:, :pp.k], kr
