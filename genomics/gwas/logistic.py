"""Secure logistic regression for case/control traits: covariate-only null model, a score test for every variant, Wald fits for the top hits.

The null model is fitted by a fixed number of secret Newton steps (no iterate, score
or phenotype-covariate moment is opened); only its final coefficients are opened,
so each site knows its own individuals' fitted probabilities and
computes the score-test sums in plaintext, which ``genomics.assoc`` projects per variant
on its called samples (one Newton step of the null model refitted there); the top hits
are refitted with the genotype by Newton steps whose genotype information stays secret.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cipherome.mpc.kernels import ring_matmul, unpack_upper
from cipherome.mpc.ledger import PUBLIC
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import arith
from cipherome.protocols.compare import eqz, ltz
from cipherome.protocols.functions import sigmoid
from cipherome.protocols.owned import mask_owned, owned_products
from cipherome.protocols.division import reciprocal
from cipherome.protocols.reuse import fix
from cipherome.protocols.roots import invsqrt
from cipherome.protocols.spdinv import neumann_doubling, neumann_inverse
from cipherome.protocols.trunc import truncate

from cipherome.genomics.gwas.assoc import pool_terms, project_off_covariates, site_terms, study_series_terms
from cipherome.genomics.local.stats import CovariateSums, VariantSums, concat_variant_sums, packed_upper
from cipherome.genomics.local.lut import missing_row_sums, weighted_code_sums
from cipherome.genomics.io.packed import pack_dosage
from cipherome.genomics.gwas.tails import chi2_1df_logsf, norm_logsf

__all__ = ["LogisticParams", "NullModel", "fit_null", "score_tests", "wald_fits", "firth_fits", "logistic_association",
           "DISCLOSURES", "score_site_sums"]

log = logging.getLogger("cipherome.logistic")

#: ledger labels of this stage: kind, what, to whom (sizes in docs/pca_logistic.md)
DISCLOSURES = {
    "logistic.null_converged": ("disclosed", "one bit: the null model's last secret Newton step is below tol_null",
                                "all sites"),
    "logistic.null_beta": ("disclosed", "the null model's k coefficients (covariate effects on the log-odds)",
                           "all sites"),
    "logistic.null_info": ("disclosed", "4 X'WX / N at the public null beta (covariate-only, k x k)", "all sites"),
    "logistic.obs_ct": ("disclosed", "OBS_CT per tested variant", "all sites"),
    "logistic.missing_bound": ("disclosed", "per group of tested variants with similar missing counts, each site's "
                               "largest eigenvalue of its missing calls' share of the score test's Gram matrix, "
                               "rounded up to 2^(i/4) (sets the Neumann length)", "all sites"),
    "logistic.const": ("disclosed", "genotype constant on the called samples (ERRCODE) per variant", "all sites"),
    "logistic.score": ("disclosed", "signed score statistic U/sqrt(V) / (2 sqrt N) per variant (Z_STAT, P)", "all sites"),
    "logistic.wald_step": ("disclosed", "per Newton step, the (k+1) coefficients' change for each top hit", "all sites"),
    "logistic.wald_var": ("disclosed", "sampling variance of ln OR for each top hit (LOG(OR)_SE)", "all sites"),
    "logistic.firth_step": ("disclosed", "per Firth step, the (k+1) coefficients' change for each Firth slot (top hits "
                            "whose Wald fit failed; padding slots carry public dummies)", "all sites"),
    "logistic.firth_var": ("disclosed", "sampling variance of the Firth ln OR for each Firth slot (LOG(OR)_SE)",
                           "all sites"),
    "logistic.covariate_gram": ("disclosed", "X'X / N of the design (only if the caller has not opened it, "
                                "as the GWAS does with gwas.covariate_moments)", "all sites"),
}

#: samples' sums are entered with this many fractional bits where they are only opened
_OPEN_FRAC = 40
#: fractional bits of the sites' owned design matrices in the null model
_X_FRAC = 16


@dataclass
class LogisticParams:
    """top: Wald fits for this many smallest score p-values; tol: a Wald fit has converged
    when max |step| < tol (Newton converges quadratically, so the coefficients are then
    exact up to the fixed-point noise, about 1e-6); null_iterations: the null model's fixed,
    public number of secret Newton steps, null_ns_steps: Newton-Schulz steps per Newton step
    for its inverse Hessian, tol_null: its last step must be below this (else it has not
    converged: separation or collinear covariates); max_iter_wald; wald_levels: each Wald
    iteration sums 2^wald_levels terms of the preconditioned Neumann series (``neumann_doubling``,
    2 rounds per level), the final one 2^(wald_levels + var_levels) for the variance; block:
    variants per score-test block; missing_bound: the largest missing fraction a variant may have
    (``--geno``), which sets the Neumann terms; firth_slots: Firth fits run for this many top hits
    whose Wald fit fails (a public batch size: the dealer sees no count of failures);
    firth_iterations, firth_ns_steps: the Firth fits' fixed, public numbers of steps and of Newton-Schulz
    steps per inverse (each run as a level of ``spdinv.neumann_inverse``: 2^firth_ns_steps terms)."""

    top: int = 100
    tol_null: float = 1e-4
    tol: float = 1e-4
    null_iterations: int = 10
    null_ns_steps: int = 2
    max_iter_wald: int = 16
    wald_levels: int = 5
    var_levels: int = 3
    block: int = 4096
    missing_bound: float = 0.1
    firth_slots: int = 8
    firth_iterations: int = 12
    firth_ns_steps: int = 5

    @classmethod
    def from_gwas(cls, p) -> "LogisticParams":
        """From ``GwasParams`` (``logistic_top``, ``block``, ``geno`` or ``missing_bound``, ``extra["no_firth"]``)."""
        mb = p.geno if getattr(p, "geno", None) is not None else getattr(p, "missing_bound", 0.1)
        no_firth = bool((getattr(p, "extra", None) or {}).get("no_firth", False))  # --glm no-firth
        return cls(top=int(p.logistic_top), block=int(p.block), missing_bound=float(mb),
                   **({"firth_slots": 0} if no_firth else {}))


@dataclass
class NullModel:
    """The covariate-only logistic fit at one site.

    beta (k,) public coefficients; info (k, k) public 4 X'WX / N at beta; mu, w (n_s,)
    this site's fitted probabilities and weights mu (1 - mu); converged, iterations.
    """

    beta: np.ndarray
    info: np.ndarray
    mu: np.ndarray
    w: np.ndarray
    converged: bool
    iterations: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _null_matrix(x: np.ndarray) -> np.ndarray:
    """This site's owned matrix round(2^X_FRAC [X, 4 x (x) x (packed upper)]), (n_s, k + k (k + 1) / 2) int64."""
    iu, ju = packed_upper(x.shape[1])
    return np.rint(np.column_stack([x, 4.0 * x[:, iu] * x[:, ju]]) * 2.0**_X_FRAC).astype(np.int64)


def _unpack_upper(v: Shared, k: int) -> Shared:
    """(k (k + 1) / 2,) packed upper triangle -> symmetric (k, k), locally."""
    return Shared(v.ctx, unpack_upper(np.asarray(v.data, dtype=np.uint64), k), v.frac)


def fit_null(ctx, x: np.ndarray, y: np.ndarray, n_total: int, params: LogisticParams | None = None,
             site_counts: list[int] | None = None, xtx: np.ndarray | None = None) -> NullModel:
    """Newton-Raphson (IRLS) fit of logit P(y = 1) = x beta on the pooled samples, every iterate secret.

    x (n_s, k): this site's design rows ([1, standardised covariates]); y (n_s,) 0/1;
    site_counts: every site's n_s in party order (public study metadata; if None they are
    exchanged as ``logistic.site_counts``); xtx: the public X'X / N (else opened as
    ``logistic.covariate_gram``). With P = round(log2 N), from beta = 0, for a fixed public
    number of iterations (``null_iterations``, so nothing about the data shows in the count; the
    first, from beta = 0 where mu = 1/2 and H^-1 = 4 (X'X)^-1 are public, is each site's plaintext
    part 4 (X'X)^-1 X_s'(y_s - 1/2), input for free), then in each further iteration:

    1. eta = X_s beta for every site's samples: each site's matrix M_s = [X_s, 4 x (x) x] is
       masked once (``protocols.owned``) and every product with it costs O(n_s + k^2);
    2. mu = sigmoid(eta), w = mu - mu^2 (all samples at once, 10 + 2 rounds);
    3. H = 4 X'WX / 2^P = sum_s M_s' w (packed) and S = (X'y - X'mu) / 2^P, X_s'y_s local (free);
    4. G ~ H^-1 by Newton-Schulz steps G <- G (2I - H G), warm-started from the previous G
       (first from 2^P (N A)^-1 with A = X'X / N, the exact H^-1 at beta = 0: since 4 W <= I,
       H <= N A / 2^P and the spectral radius of I - G H is below 1); beta += G 4 S. G need not
       be exact: the fixed point is S = 0, the MLE, and G only sets the speed (quadratic once
       G ~ H^-1). The t steps and the product with 4 S are ``spdinv.neumann_inverse`` of H from G
       with right-hand side 4 S (one product G [H | 4 S], then t levels of the Neumann series of
       I - G H on [G | G 4 S]): 2 + 2 t rounds where the steps and the product took 4 t + 2.

    Opened: one bit, whether the last step is below ``tol_null`` (``logistic.null_converged``),
    then the final beta (``logistic.null_beta``: the covariates' coefficients in the null
    model, which PLINK prints without hide-covar) and, from the sites' own sums at that public
    beta, the covariate-only information 4 X'WX / N (``logistic.null_info``). No iterate,
    score or phenotype-covariate cross moment is opened.
    Rounds per iteration: about 2 (eta) + 12 (mu, w) + 1 (sums) + 2 truncations + 2 (G [H | 4 S])
    + 2 per Newton-Schulz step; traffic O(N + k^2) per iteration and party. The convergence bit:
    2k comparisons [+-step_i - tol < 0] in one batch and an equality test of their count (15 rounds).
    """
    pp = params or LogisticParams()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, k = x.shape
    f = ctx.frac
    if site_counts is None:
        site_counts = [int(c[0]) for c in ctx.allgather(np.array([n], dtype=np.int64), "logistic.site_counts", kind=PUBLIC)]
    if xtx is None:
        xtx = ctx.open(ctx.inputs_sum((x.T @ x) / n_total, shape=(k, k), frac=_OPEN_FRAC), "logistic.covariate_gram")
    xtx = (np.asarray(xtx, dtype=np.float64) + np.asarray(xtx).T) / 2.0
    p2 = int(round(math.log2(max(n_total, 1))))
    scale = 2.0**-p2
    kk = k * (k + 1) // 2
    cols = k + kk
    shapes = {p: (int(c), cols) for p, c in zip(ctx.parties, site_counts)}
    mats = mask_owned(ctx, _null_matrix(x), shapes, "logistic.null_mask")
    xty = ctx.inputs_sum(x.T @ y * scale, shape=(k,), frac=f)
    g = Shared.public(ctx, np.linalg.inv(xtx) / (n_total * scale), f)  # H^-1 at beta = 0 (4 W = I)
    # the first Newton step from beta = 0 (mu = 1/2, H^-1 = g exactly) is linear in the data: every
    # site inputs its part 4 (X'X)^-1 X_s'(y_s - 1/2) of it, no round
    beta = ctx.inputs_sum(4.0 * np.linalg.inv(xtx) @ (x.T @ (y - 0.5)) / n_total, shape=(k,), frac=f)
    step = beta
    bounds = np.cumsum([0] + list(site_counts))
    for _ in range(1, pp.null_iterations):  # the first step is the inputs above
        b = concat([beta, Shared.zeros(ctx, (kk,), f)]).reshape(cols, 1)
        etas = owned_products([(mats[p], b) for p in ctx.parties], False, "logistic.null_product")
        eta = truncate(concat([e.reshape(-1) for e in etas]), _X_FRAC, frac=f)
        mu = sigmoid(eta)
        w = mu - arith.square(mu)
        ys = [concat([mu[bounds[i]:bounds[i + 1]].reshape(-1, 1), w[bounds[i]:bounds[i + 1]].reshape(-1, 1)], axis=1)
              for i in range(ctx.n)]
        sums = owned_products([(mats[p], v) for p, v in zip(ctx.parties, ys)], True, "logistic.null_product")
        tot = sums[0]
        for s_ in sums[1:]:
            tot = tot + s_
        tot = truncate(tot, _X_FRAC + p2, frac=f)  # (cols, 2): [X'mu, .], [., 4 X'WX packed] / 2^P
        score = (xty - tot[:k, 0]) * 4  # Newton: (X'WX)^-1 X'(y - mu) = H^-1 4 S
        h = _unpack_upper(tot[k:, 1], k)
        g, step = neumann_inverse(h, g, pp.null_ns_steps, rhs=score.reshape(k, 1))  # G' and the step G' 4S
        step = step[:, 0]
        beta = beta + step
    # max_i |step_i| < tol iff all 2k comparisons [step_i - tol < 0], [-step_i - tol < 0] hold: one
    # batch of comparisons and one equality test on their count (15 rounds; max(abs(.)) took 47)
    tol = Shared.public(ctx, pp.tol_null, f)
    inside = ltz(concat([step - tol, -step - tol]))
    small = eqz(inside.sum() - 2 * k, bits=8)
    converged = bool(ctx.open(small, "logistic.null_converged"))
    beta = ctx.open(beta, "logistic.null_beta")
    if not converged or not np.all(np.isfinite(beta)) or np.abs(beta).max() > 50:
        raise ValueError("logistic null model does not converge (the covariates separate cases from "
                         "controls, or are collinear); check the phenotype coding and covariates")
    mu = _sigmoid(x @ beta)
    w = mu * (1.0 - mu)
    local = (4.0 * x.T @ (x * w[:, None])) / n_total
    info = ctx.open(ctx.inputs_sum(local, shape=(k, k), frac=_OPEN_FRAC), "logistic.null_info")
    info = (info + info.T) / 2.0
    return NullModel(beta=beta, info=info, mu=mu, w=w, converged=True, iterations=pp.null_iterations)


def score_site_sums(g: np.ndarray, x: np.ndarray, null: NullModel, y: np.ndarray) -> tuple[CovariateSums, VariantSums]:
    """This site's weighted sums for the score test of a block, as ``local.stats`` sums.

    With r = y - mu and w = mu (1 - mu) of the null model, in the roles of the linear
    model's sums: xtx = 4 X'WX, xty = X'r, and per variant over its called samples S_j
    xtg = 4 X_S'W g, sum_gg = 4 g'W g, sum_gy = g'r; over its missing calls
    miss_xx = 4 sum w x x', miss_xy = sum x r, miss_yy = sum r^2. Then ``assoc``'s
    projection gives g'Mg = 4 V / N and g'My = U / N of the score test on S_j:
    U = g'r - g'WX (X_S'WX_S)^-1 X_S'r, V = g'Wg - g'WX (X_S'WX_S)^-1 X'Wg.
    g (V, n_s) int8 (-1 missing): byte-table sums over packed codes; or float dosages
    (NaN missing): the same sums as dense products.
    x (n_s, k).
    """
    x = np.asarray(x, dtype=np.float64)
    n, k = x.shape
    r = np.asarray(y, dtype=np.float64) - null.mu
    w4 = 4.0 * null.w
    weights = np.column_stack([w4[:, None] * x, r, w4])
    iu, ju = packed_upper(k)
    rows = np.column_stack([w4[:, None] * x[:, iu] * x[:, ju], x * r[:, None], r * r])
    if np.asarray(g).dtype.kind == "f":
        called = ~np.isnan(g)
        gf = np.where(called, g, 0.0).astype(np.float64)
        s = np.column_stack([gf @ weights[:, :k + 1], (gf * gf) @ w4])
        missing = (~called).astype(np.float64)
        miss, miss_n = missing @ rows, (~called).sum(axis=1).astype(np.int64)
    else:
        packed = pack_dosage(np.asarray(g, dtype=np.int8))
        dosage = np.array([2.0, 0.0, 1.0, 0.0])  # by .bed code: hom ALT, missing, het, hom REF
        fcode = np.column_stack([np.repeat(dosage[:, None], k + 1, axis=1), dosage**2])
        s = weighted_code_sums(packed, weights, fcode)
        miss, miss_n = missing_row_sums(packed, np.ones(n, dtype=bool), rows)
    nk = iu.size
    cov = CovariateSums(n, x.T @ (x * w4[:, None]), x.T @ r, float(r @ r))
    vs = VariantSums(n_obs=n - miss_n, sum_g=np.zeros(len(g)), sum_gg=s[:, k + 1], sum_gy=s[:, k], xtg=s[:, :k],
                     miss_n=miss_n, miss_xx=miss[:, :nk], miss_xy=miss[:, nk:nk + k], miss_yy=miss[:, nk + k])
    return cov, vs


def score_tests(ctx, null: NullModel, x: np.ndarray, y: np.ndarray, read_block: Callable[[np.ndarray], np.ndarray],
                n_tested: int, n_total: int, params: LogisticParams | None = None) -> dict:
    """Score test of every tested variant against the null model, refitted (one step) on its called samples.

    Sites compute their :func:`score_site_sums` block by block (``block`` variants per
    read); all tested variants then go through one protocol run (rounds independent of
    the number of variants). Sites' :func:`score_site_sums` are projected with the public null information
    A = 4 X'WX / N (``assoc.site_terms``/``pool_terms``/``project_off_covariates``:
    Neumann series for each variant's missing calls, one fixed product per term); then
    OBS_CT (``logistic.obs_ct``), the constant-genotype bit (V < 0.1 / N, ``logistic.const``)
    and r = (U / N) / sqrt(4 V / N) = z / (2 sqrt N) (``logistic.score``) are opened.
    T comes from the sites' disclosed spectral bounds (``logistic.missing_bound``,
    ``assoc.study_series_terms``). Rounds: about 2 T + 45 (comparison 7, invsqrt 32), once.
    Returns z (signed U / sqrt V), chi2, p, obs_ct, const, each (n_tested,).
    """
    pp = params or LogisticParams()
    ainv = np.linalg.inv(null.info)
    parts, cov = [], None
    for start in range(0, n_tested, pp.block):  # local sums, read block by block (no traffic)
        sel = np.arange(start, min(start + pp.block, n_tested))
        cov, vs = score_site_sums(read_block(sel), x, null, y)
        parts.append(vs)
        log.info("logistic score test (local sums): %d/%d variants", sel[-1] + 1, n_tested)
    vs = concat_variant_sums(parts)
    # one protocol run for every tested variant: the stage's rounds do not grow with the study
    obs_ct = ctx.open(ctx.inputs_sum(vs.n_obs, shape=(n_tested,), frac=0), "logistic.obs_ct").astype(np.int64)
    terms, shift = study_series_terms(ctx, vs.miss_xx, ainv, n_total, n_total - obs_ct, "logistic.missing_bound")
    pm = project_off_covariates(pool_terms(ctx, site_terms(cov, vs, ainv, n_total), shift), terms)
    eps = Shared.public(ctx, np.full(n_tested, max(0.1 / max(n_total, 1), 2e-6)), pm.gmg.frac)
    cbit = ltz(pm.gmg - eps)
    const = ctx.open(cbit, "logistic.const").astype(bool)
    inv = invsqrt(pm.gmg + cbit, hi=4)  # 4 V / N <= 4 max(g^2) w <= 4
    live = Shared.public(ctx, (~const).astype(np.int64), 0)
    r = arith.mul(arith.mul(pm.gmy, inv), live)
    z = np.where(const, np.nan, ctx.open(r, "logistic.score") * 2.0 * math.sqrt(n_total))
    chi2 = z**2
    with np.errstate(invalid="ignore"):
        logp = chi2_1df_logsf(chi2)
    return {"z": z, "chi2": chi2, "p": np.exp(logp), "neglog10_p": -logp / np.log(10.0),
            "obs_ct": obs_ct, "const": const}


def _wald_site_sums(g: np.ndarray, x: np.ndarray, y: np.ndarray, beta: np.ndarray, n_total: int):
    """Weighted information and score of [x, g] over each variant's called samples, / N.

    g (T, n_s) int8 (-1 missing) or float dosages (NaN missing); beta (T, k + 1). Returns info (T, q, q) = 4 [x,g]'W[x,g] / N and
    score (T, q) = 4 [x,g]'(y - mu) / N, q = k + 1 (weights scaled by 4 so that 4 w <= 1).
    """
    T, n = g.shape
    k = x.shape[1]
    q = k + 1
    called = (g >= 0).astype(np.float64)
    gf = np.where(g >= 0, g, 0).astype(np.float64)
    iu, ju = packed_upper(k)
    eta = beta[:, :k] @ x.T + beta[:, k:] * gf
    mu = _sigmoid(eta)
    w4 = 4.0 * mu * (1.0 - mu) * called
    info = np.empty((T, q, q))
    half = w4 @ (x[:, iu] * x[:, ju])
    info[:, iu, ju] = half
    info[:, ju, iu] = half
    wg = w4 * gf
    xg = wg @ x
    info[:, :k, k] = xg
    info[:, k, :k] = xg
    info[:, k, k] = (wg * gf).sum(axis=1)
    res = 4.0 * (y[None, :] - mu) * called
    score = np.concatenate([res @ x, (res * gf).sum(axis=1)[:, None]], axis=1)
    return info / n_total, score / n_total


def _schur_preconditioner(ctx, cu: Shared, du: Shared, ainv: np.ndarray) -> Shared:
    """M^-1 (T, q, q) for M_j = [[A, c_j], [c_j', d_j]], A = X'X / N public, c_j = X_S'g / N, d_j = g'g / N.

    Block inverse with the Schur complement v = d - c'A^-1 c: with a = A^-1 c,
    M^-1 = [[A^-1 + a a'/v, -a/v], [-a'/v, 1/v]]. Steps: a (public product, 1 truncation
    round), v (1 product round), 1/v (``reciprocal``, about 30 rounds), a/v and a a'/v
    (2 product rounds). Traffic O(T k^2) ring elements.
    """
    f = ctx.frac
    T, k = cu.shape
    a = truncate(Shared(ctx, ring_matmul(cu.data, encode(ainv, f)), 2 * f), f)
    v = du - arith.dot(cu, a)
    r = reciprocal(v, hi=3)  # v <= mean(g^2) <= 4; v >= 2^-f for a genotype that is not constant
    ar = arith.mul(a, r.reshape(T, 1))
    outer = arith.mul(a.reshape(T, k, 1).broadcast_to((T, k, k)), ar.reshape(T, 1, k).broadcast_to((T, k, k)))
    top = outer + np.broadcast_to(ainv, (T, k, k))
    m = np.zeros((T, k + 1, k + 1), dtype=np.uint64)
    m[:, :k, :k] = top.data
    m[:, :k, k] = (-ar).data
    m[:, k, :k] = (-ar).data
    m[:, k, k] = r.data
    return Shared(ctx, m, f)


def _firth_site_sums(g: np.ndarray, x: np.ndarray, y: np.ndarray, beta: np.ndarray, scale: np.ndarray,
                     live: np.ndarray, center: np.ndarray):
    """This site's sums for Firth's penalised fit of F slots at public coefficients, in scaled columns.

    Per slot j, over its called samples, with x~ = [x, g_j - center_j] * scale (public column scales;
    the public centre 2 for a variant whose ALT allele is the major one keeps the column rare-coded, far
    from the intercept: the fit's genotype coefficient is unchanged, the intercept absorbs the shift),
    eta = [x, g_j] beta_j, mu = sigmoid(eta), w = mu (1 - mu), and the packed pairs
    (c <= d, off-diagonal pairs counted twice) of Z = x~_c x~_d:
    info (F, q, q) = X~'WX~; score (F, q) = X~'(y - mu); tens (F, P + q, P), P = q (q + 1) / 2:
    rows 0..P-1 Q[ab, cd] = sum w^2 x~_a x~_b x~_c x~_d (so that sum_cd Q[ab, cd] G_cd is
    (X~' diag(h w) X~)_ab for h_i = w_i x~_i' G x~_i), rows P.. T[r, cd] = sum w (1/2 - mu) x~_r x~_c x~_d
    (so that sum_cd T[r, cd] G_cd = sum_i x~_ir h_i (1/2 - mu_i), Firth's score correction).
    Slots with live False (padding) get the public-free dummy X~'X~ / 4, score 0, tens 0.
    g (F, n_s) int8 (-1 missing) or float dosages (NaN missing); beta (F, q).
    """
    F, k = g.shape[0], x.shape[1]
    q = k + 1
    iu, ju = np.triu_indices(q)
    npair = iu.size
    mult = np.where(iu == ju, 1.0, 2.0)
    info, score = np.zeros((F, q, q)), np.zeros((F, q))
    tens = np.zeros((F, npair + q, npair))
    for j in range(F):
        gj = np.asarray(g[j], dtype=np.float64)
        called = np.isfinite(gj) & (gj >= 0)
        xs = np.column_stack([x[called], gj[called] - center[j]])
        xt = xs * scale
        if not live[j]:
            info[j] = xt.T @ xt / 4.0
            continue
        mu = _sigmoid(xs @ beta[j])
        w = mu * (1.0 - mu)
        info[j] = xt.T @ (xt * w[:, None])
        score[j] = xt.T @ (y[called] - mu)
        z = xt[:, iu] * xt[:, ju]
        tens[j, :npair] = ((z * (w * w)[:, None]).T @ z) * mult
        tens[j, npair:] = ((xt * (w * (0.5 - mu))[:, None]).T @ z) * mult
    return info, score, tens


def _firth_inverse(info: Shared, x0: np.ndarray, steps: int, hi: int) -> Shared:
    """I^-1 (F, q, q) of a secret information matrix by its block inverse with the genotype's Schur complement.

    The covariate block A (k x k) is well conditioned (its public bound X'X / 4N gives the
    start x0, with the eigenvalues of x0 A in (0, 2)), so the Neumann series of E = I - x0 A
    inverts it: A^-1 [I | c] = sum_t E^t x0 [I | c] (``spdinv.neumann_inverse``: ``steps`` levels,
    as many Newton-Schulz steps from x0 give; x0 [A | c] is a public product, 1 truncation). The ill-conditioning of a rare variant sits in the scalar s = d - c' A^-1 c,
    inverted by ``reciprocal`` (s < 2^hi). With a = A^-1 c: I^-1 = [[A^-1 + a a'/s, -a/s], [-a'/s, 1/s]].
    Rounds: 1 + 2 steps + 6 + about 30 (reciprocal).
    """
    ctx = info.ctx
    F, q, _ = info.shape
    k = q - 1
    gc, a = neumann_inverse(info[:, :k, :k], x0, steps, rhs=info[:, :k, k:])  # A^-1, A^-1 c (F, k, 1)
    r = reciprocal(info[:, k, k] - arith.dot(info[:, :k, k], a[:, :, 0]), hi=hi)
    ar = arith.mul(a[:, :, 0], r.reshape(F, 1))
    outer = arith.mul(a.broadcast_to((F, k, k)), ar.reshape(F, 1, k).broadcast_to((F, k, k)))
    out = np.zeros((F, q, q), dtype=np.uint64)
    out[:, :k, :k] = (gc + outer).data
    out[:, :k, k] = out[:, k, :k] = (-ar).data
    out[:, k, k] = r.data
    return Shared(ctx, out, info.frac)


def firth_fits(ctx, x: np.ndarray, y: np.ndarray, g: np.ndarray, beta0: np.ndarray, n_total: int, ainv: np.ndarray,
               theta: float, live: np.ndarray, params: LogisticParams | None = None,
               center: np.ndarray | None = None) -> dict:
    """Firth-penalised logistic fits of F slots (twin: ``reference.logistic.glm_firth``), every information secret.

    Firth's fit maximises l*(b) = l(b) + log det I(b) / 2; its score is
    U*_r = sum_i x_ir (y_i - mu_i + h_i (1/2 - mu_i)) with the hat diagonal
    h_i = w_i x_i' I^-1 x_i, and the step is I*^-1 U*, I* = X' diag(w (1 + h)) X (Newton-like;
    the fixed point U* = 0 does not depend on the step matrix: plink2 a3.5 steps with I^-1 and
    step halving, which needs many more steps, later plink2 versions with I*). Columns are scaled by
    the public D = diag(1/sqrt(N) for covariates, s_g = min(1, sqrt(4096 / N)) for g), so a rare
    variant's carrier sums are O(1) in the fixed-point range and no product leaves it.
    The tensors summed over individuals (``_firth_site_sums``) make the hat terms linear in
    I^-1: sum_i x_ir h_i (1/2 - mu_i) = T : I^-1 and X' diag(h w) X = Q : I^-1.

    Steps, for a fixed public ``firth_iterations`` from beta0 (the null coefficients, 0):
    1. sites add info, score and tensors at the public beta (free);
    2. G = I^-1 (``_firth_inverse``: a Neumann series on the covariate block from the public
       theta (X'X / 4N)^-1, reciprocal of the genotype's Schur complement);
    3. one product [Q; T] vec(G) (2 rounds): I* = I + Q : G, U* = U + T : G;
    4. the step I*^-1 U* = sum_t E^t X0 U* with X0 = 2/3 G and E = I - X0 I* (I <= I* <= 2 I since
       0 <= h <= 1, so the eigenvalues of X0 I* lie in [2/3, 4/3] and those of E in [-1/3, 1/3]):
       one product X0 [I* | U*] (2 rounds), then ``firth_ns_steps`` levels (``spdinv.neumann_inverse``);
    5. the step is opened (``logistic.firth_step``, F q values), scaled down to max |step| = 2
       when larger (plink2 caps at 5 and halves on a decrease of l*; a MAC-1 variant oscillates
       at 5 without halving), and beta updated in plaintext.
    After the last step, G at the final beta and its genotype entry opened (``logistic.firth_var``):
    SE = s_g sqrt(G_gg), as plink2 a3.5 reports it ([I^-1]_gg at the penalised fit), P = 2 Phi(-|b / SE|).
    A fit has converged when its last max |step| < ``tol``. Padding slots (live False) enter public dummies.
    Rounds per step: about 4 firth_ns_steps + 37 (measured on the rare-variant test: 726 for the 12
    steps and the final inverse, 989 with Newton-Schulz steps). Traffic per step and slot: about
    P^2 + P + 37 q^2 ring elements to each other party, P = q (q + 1) / 2 (measured: 61 MB per party
    for 16 slots at q = 14, 78 MB with Newton-Schulz steps).
    """
    pp = params or LogisticParams()
    f = ctx.frac
    F, k = g.shape[0], x.shape[1]
    q = k + 1
    sg = 1.0 / math.sqrt(max(1.0, n_total / 4096.0))
    scale = np.r_[np.full(k, 1.0 / math.sqrt(n_total)), sg]
    x0 = 4.0 * min(1.9, theta) * np.asarray(ainv, dtype=np.float64)  # X~'WX~ (covariates) <= X'X / 4N
    hi = max(4, int(math.ceil(math.log2(4.0 * n_total * sg * sg))) + 1)  # s <= sum w (s_g g)^2 <= N s_g^2
    iu, ju = np.triu_indices(q)
    npair = iu.size
    center = np.zeros(F) if center is None else np.asarray(center, dtype=np.float64)
    beta = np.array(beta0, dtype=np.float64)
    beta[:, 0] += beta[:, k] * center  # the same model with the genotype column g - center
    last = np.full(F, np.inf)
    for it in range(pp.firth_iterations + 1):
        info_l, score_l, tens_l = _firth_site_sums(g, x, y, beta, scale, live, center)
        info = ctx.inputs_sum(info_l, shape=(F, q, q), frac=f)
        ginv = _firth_inverse(info, x0, pp.firth_ns_steps, hi)
        if it == pp.firth_iterations:
            break
        score = ctx.inputs_sum(score_l[:, :, None], shape=(F, q, 1), frac=f)
        tens = ctx.inputs_sum(tens_l, shape=(F, npair + q, npair), frac=f)
        r = arith.matmul(tens, Shared(ctx, np.ascontiguousarray(ginv.data[:, iu, ju])[:, :, None], f))
        e = np.zeros((F, q, q), dtype=np.uint64)
        e[:, iu, ju] = r.data[:, :npair, 0]
        e[:, ju, iu] = r.data[:, :npair, 0]
        istar = info + Shared(ctx, e, r.frac)
        # I*^-1 U* from X0 = 2/3 G: E = I - X0 I* has its spectrum in [-1/3, 1/3]
        gstep = neumann_inverse(istar, arith.mul_public(ginv, 2.0 / 3.0), pp.firth_ns_steps,
                                rhs=score + r[:, npair:, :], inverse=False)
        st = ctx.open(gstep[:, :, 0], "logistic.firth_step") * scale
        big = np.abs(st).max(axis=1)
        st *= np.minimum(1.0, 2.0 / np.maximum(big, 1e-300))[:, None]
        beta[live] += st[live]
        last = np.abs(st).max(axis=1)
    var = ctx.open(ginv[:, k, k], "logistic.firth_var") * sg * sg
    ok = live & (last < pp.tol) & (var > 0) & np.all(np.isfinite(beta), axis=1)
    se = np.sqrt(np.where(ok, var, np.nan))
    return {"beta": np.where(ok, beta[:, k], np.nan), "se": se, "converged": ok}


def wald_fits(ctx, null: NullModel, x: np.ndarray, y: np.ndarray, g: np.ndarray, n_total: int,
              params: LogisticParams | None = None, xtx: np.ndarray | None = None,
              alt_major: np.ndarray | None = None) -> dict:
    """Logistic Wald fits (twin: ``reference.logistic.glm_logistic``) of T variants at once.

    g (T, n_s) int8 dosages of the variants at this site's samples (-1 missing), or float
    dosages (NaN missing); each
    variant is fitted on its called samples S_j with the design [x, g_j] (q = k + 1).
    xtx: the public X'X / N of the design over all samples (the GWAS opens it with the
    covariate moments; if None it is opened here as ``logistic.covariate_gram``); alt_major (T,) bool:
    the ALT allele is the major one (public: PLINK's A1 is REF), which centres the Firth fits' genotype column.

    Steps. Preconditioner, once: sites add c_j = X_S'g / N and d_j = g'g / N over S_j;
    P_j = theta M_j^-1 (:func:`_schur_preconditioner`, about 35 rounds) with
    theta = min(1.9, 1 / (4 mean w)). Since 4 w <= 1 and S_j is a subset of all samples,
    every information matrix below satisfies I_j <= M_j, so the eigenvalues of P_j I_j
    lie in (0, theta] and B = I - P_j I_j has spectral radius below 1 whatever beta_j is.
    Newton iterations from (null beta, 0): sites add I_j = 4 [x,g]'W[x,g] / N and
    s_j = 4 [x,g]'(y - mu) / N at the public beta_j (free); one fixed-operand product
    P [I, s] (2 rounds) gives B = I - P I and c = P s; then the Neumann series
    sum_(t < 2^L) B^t c by squaring (``spdinv.neumann_doubling``, L = ``wald_levels``,
    2 rounds per level) tends to (P I)^-1 P s = I^-1 s with residual B^(2^L) I^-1 s.
    The step is opened (``logistic.wald_step``, T q values) and beta_j updated in
    plaintext, for a fixed ``max_iter_wald`` iterations (a fit has converged when its last
    max |step| < tol). The final iteration also carries c = P sigma e_g through
    L + ``var_levels`` levels; the genotype entry of that column, sigma [I^-1]_gg, is
    opened (``logistic.wald_var``, T values): SE = sqrt(4 [I^-1]_gg / N), Z = beta_g / SE,
    P = 2 Phi(-|Z|). For the common variants of a GWAS rho(B) is about 0.3-0.5, so 32
    terms leave the step exact to the fixed point; a near-monomorphic variant can have
    rho(B) near 0.99 (32 terms then take 28% of the step: the outer iterations converge linearly).
    Rounds: about 40 + max_iter_wald (2 L + 3) + 2 var_levels (13 per iteration at L = 5,
    where 12 Richardson steps took 30). Traffic per level: 2 T q (q + 1) ring elements to each
    other party (B_i and Y_i opened, B_i [B_i | Y_i] truncated).
    Variants whose coefficients leave |beta| < 20 or do not converge (separation; PLINK
    falls back to Firth there) get NaN and converged = False.
    """
    pp = params or LogisticParams()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(g)
    g = g.astype(np.float64) if g.dtype.kind == "f" else g.astype(np.int8)  # dosages (NaN missing) or calls
    T, k = g.shape[0], x.shape[1]
    q = k + 1
    f = ctx.frac
    beta = np.zeros((T, q))
    beta[:, :k] = null.beta
    out = {name: np.full(T, np.nan) for name in ("beta", "se", "z", "p", "neglog10_p")}
    out["converged"] = np.zeros(T, dtype=bool)
    out["iterations"] = np.zeros(T, dtype=np.int64)
    if T == 0:
        return out
    if xtx is None:
        xtx = ctx.open(ctx.inputs_sum((x.T @ x) / n_total, shape=(k, k), frac=_OPEN_FRAC), "logistic.covariate_gram")
    ainv = np.linalg.inv((np.asarray(xtx, dtype=np.float64) + np.asarray(xtx).T) / 2.0)
    called = (g >= 0).astype(np.float64)
    gf = np.where(g >= 0, g, 0).astype(np.float64)
    loc = np.concatenate([(gf @ x) / n_total, (gf * gf).sum(axis=1, keepdims=True) / n_total], axis=1)
    cd = ctx.inputs_sum(loc, shape=(T, q), frac=f)
    theta = float(min(1.9, 1.0 / max(null.info[0, 0], 1e-3)))  # null.info[0, 0] = 4 mean(w)
    pre = _schur_preconditioner(ctx, cd[:, :k], cd[:, k], ainv)
    fx = f - 4  # P has entries up to 1/v: keep 4 more bits of head-room in its products
    pre = truncate(Shared(ctx, pre.data * encode(theta, 8), f + 8), 8 + 4, frac=fx)  # theta needs few bits
    fixed_p = fix(pre, "logistic.wald_precond_mask")
    sigma = 1.0 / max(1.0, n_total / 256.0)  # keeps sigma I^-1 e_g (up to about N / (4 w)) in range
    eg = np.zeros((T, q, 1))
    eg[:, k, 0] = sigma
    # unweighted sums, for variants whose fit failed (a harmless, well-conditioned system)
    gram_l = np.zeros((T, q, q))
    iu, ju = packed_upper(k)
    gram_l[:, iu, ju] = called @ (x[:, iu] * x[:, ju]) / n_total
    gram_l[:, ju, iu] = gram_l[:, iu, ju]
    gram_l[:, :k, k] = gram_l[:, k, :k] = (gf @ x) / n_total
    gram_l[:, k, k] = (gf * gf).sum(axis=1) / n_total
    active = np.ones(T, dtype=bool)
    done = np.zeros(T, dtype=bool)
    eye = np.broadcast_to(np.eye(q), (T, q, q))
    for it in range(1, pp.max_iter_wald + 1):
        last = it == pp.max_iter_wald
        info_l, score_l = _wald_site_sums(g, x, y, beta, n_total)
        info_l[~active] = gram_l[~active]
        score_l[~active] = 0.0
        info = ctx.inputs_sum(info_l, shape=(T, q, q), frac=f)
        score = ctx.inputs_sum(score_l[:, :, None], shape=(T, q, 1), frac=f)
        # P [I | s (| sigma e_g)] in one product; the variance column only at the final beta
        rhs = concat([info, score] + ([Shared.public(ctx, eg, f)] if last else []), axis=2)
        pr = fixed_p.left_mul(rhs, "logistic.wald_product")
        sol = neumann_doubling(eye - pr[:, :, :q], pr[:, :, q:], pp.wald_levels + (pp.var_levels if last else 0))
        st = ctx.open(sol[:, :, 0], "logistic.wald_step")
        upd = active & ~done
        beta[upd] += st[upd]
        out["iterations"][upd] += 1
        bad = upd & (~np.all(np.isfinite(beta), axis=1) | (np.abs(beta) > 20).any(axis=1))
        active &= ~bad
        done |= active & (np.abs(st).max(axis=1) < pp.tol)
    # always max_iter_wald iterations: the dealer sees no data-dependent count
    var = ctx.open(sol[:, k, 1], "logistic.wald_var") / sigma * 4.0 / n_total
    ok = done & active & (var > 0)
    bg = beta[:, k].copy()
    se = np.sqrt(np.where(ok, var, np.nan))
    zs = bg / se
    logp = np.log(2.0) + norm_logsf(np.abs(zs))
    out["converged"] = ok
    # Firth's fallback (plink2's default firth-fallback) for the fits that failed, in a public number of slots
    out["firth"] = np.zeros(T, dtype=bool)
    # no Firth work when every Wald fit converged (public: from opened values); the dealer sees that one bit
    nslot = min(pp.firth_slots, T) if (~ok).any() else 0
    if nslot:
        failed = np.flatnonzero(~ok)
        if failed.size > nslot:
            log.warning("%d Wald fits failed; Firth fits for the first %d (firth_slots), the others stay "
                        "LOGISTIC_CONVERGE_FAIL", failed.size, nslot)
        slots = np.zeros(nslot, dtype=np.int64)
        live = np.zeros(nslot, dtype=bool)
        slots[: min(failed.size, nslot)] = failed[:nslot]
        live[: min(failed.size, nslot)] = True
        b0 = np.zeros((nslot, q))
        b0[:, :k] = null.beta
        center = None if alt_major is None else np.where(np.asarray(alt_major, bool)[slots], 2.0, 0.0)
        fr = firth_fits(ctx, x, y, g[slots], b0, n_total, ainv, theta, live, pp, center)
        out["firth"][slots[live]] = True
        fok = slots[live & fr["converged"]]
        bg[fok] = fr["beta"][live & fr["converged"]]
        se[fok] = fr["se"][live & fr["converged"]]
        ok = ok.copy()
        ok[fok] = True
        zs = bg / se
        logp = np.log(2.0) + norm_logsf(np.abs(zs))
    out["beta"] = np.where(ok, bg, np.nan)
    out["se"] = np.where(ok, se, np.nan)
    out["z"] = np.where(ok, zs, np.nan)
    out["p"] = np.where(ok, np.exp(logp), np.nan)
    out["neglog10_p"] = np.where(ok, -logp / np.log(10.0), np.nan)
    out["firth_converged"] = out["firth"] & ok
    return out


def logistic_association(ctx, x: np.ndarray, y: np.ndarray, read_block: Callable[[np.ndarray], np.ndarray],
                         n_tested: int, n_total: int, params=None, a1_is_alt: np.ndarray | None = None,
                         xtx: np.ndarray | None = None, site_counts: list[int] | None = None) -> dict:
    """The logistic association stage of the GWAS (``--glm`` for case/control traits).

    x (n_s, k): this site's design rows [1, standardised covariates (and PCs)] for its
    complete samples; y (n_s,) 0/1; read_block(sel) -> (len(sel), n_s) int8 dosages of
    tested variants ``sel`` (positions 0..n_tested-1) at those samples, study-oriented;
    n_total: the study's complete samples; params: ``LogisticParams`` or ``GwasParams``;
    a1_is_alt (n_tested,) bool: the tested allele (PLINK's A1) is ALT (else signs flip);
    xtx: the public X'X / N of the design, if the caller has opened it (see :func:`wald_fits`);
    site_counts: every site's number of rows of x, if public already (see :func:`fit_null`).
    Returns {"columns": {OR, LOG(OR)_SE, Z_STAT, P}, "errcode", "obs_ct", "test", "wald",
    "null_beta", "score_p"}: rows of the top ``params.top`` score p-values carry the Wald fit
    (test "ADD"); the others carry the score test (test "SCORE": Z_STAT = U / sqrt(V), P;
    OR and SE NA). A top hit whose Wald fit fails gets Firth's fit (plink2's default firth-fallback;
    "firth" (n_tested,) bool marks those rows, PLINK's FIRTH? column; absent with firth_slots = 0, ``--glm no-firth``),
    within ``firth_slots``;
    if that fails too, it keeps its score result with ERRCODE FIRTH_CONVERGE_FAIL (beyond the slots:
    LOGISTIC_CONVERGE_FAIL).
    """
    pp = params if isinstance(params, LogisticParams) else (LogisticParams.from_gwas(params) if params is not None
                                                              else LogisticParams())
    null = fit_null(ctx, x, y, n_total, pp, site_counts=site_counts, xtx=xtx)
    sc = score_tests(ctx, null, x, y, read_block, n_tested, n_total, pp)
    ok = np.isfinite(sc["z"])
    cand = np.flatnonzero(ok)
    top = cand[np.lexsort((cand, -np.abs(sc["z"][cand])))][: pp.top]
    top = np.sort(top)
    wd = wald_fits(ctx, null, x, y, read_block(top), n_total, pp, xtx=xtx,
                   alt_major=None if a1_is_alt is None else ~np.asarray(a1_is_alt, bool)[top])
    sign = np.ones(n_tested) if a1_is_alt is None else np.where(np.asarray(a1_is_alt, bool), 1.0, -1.0)
    lnor = np.full(n_tested, np.nan)
    se = np.full(n_tested, np.nan)
    zst = sc["z"] * sign
    p = sc["p"].copy()
    wald = np.zeros(n_tested, dtype=bool)
    conv = np.isfinite(wd["beta"]) & np.isfinite(wd["se"])  # Wald, or Firth where the Wald fit failed
    firth = np.zeros(n_tested, dtype=bool)
    firth[top[wd["firth"]]] = True
    wald[top[conv]] = True
    lnor[top[conv]] = wd["beta"][conv] * sign[top[conv]]
    se[top[conv]] = wd["se"][conv]
    zst[top[conv]] = wd["z"][conv] * sign[top[conv]]
    p[top[conv]] = wd["p"][conv]
    err = np.where(sc["const"], "CONST_OMITTED_ALLELE", ".").astype(object)
    err[top[~conv & ~wd["firth"]]] = "LOGISTIC_CONVERGE_FAIL"
    err[top[~conv & wd["firth"]]] = "FIRTH_CONVERGE_FAIL"
    test = np.where(wald, "ADD", "SCORE").astype(object)
    return {
        "columns": {"OR": np.exp(lnor), "LOG(OR)_SE": se, "Z_STAT": zst, "P": p},
        "errcode": err,
        "obs_ct": sc["obs_ct"],
        "test": test,
        "wald": wald,
        **({"firth": firth} if pp.firth_slots else {}),  # --glm no-firth: no FIRTH? column (as plink2)
        "null_beta": null.beta,
        "score_p": sc["p"],
        "score_z": sc["z"] * sign,
    }
