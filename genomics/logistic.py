"""Secure logistic regression for case/control traits: covariate-only null model, a score test for every variant, Wald fits for the top hits.

The null model is fitted by Newton steps on pooled (opened, covariate-only) information
matrices and scores, so each site knows its own individuals' fitted probabilities and
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
from scipy import stats

from cipherome.mpc.shares import Shared, concat
from cipherome.protocols import arith
from cipherome.protocols.compare import ltz
from cipherome.protocols.roots import invsqrt
from cipherome.protocols.spdinv import spd_inverse

from .assoc import neumann_terms, pool_terms, project_off_covariates, site_terms
from .localstats import CovariateSums, VariantSums, packed_upper
from .lut import missing_row_sums, weighted_code_sums
from .packed import pack_dosage

__all__ = ["LogisticParams", "NullModel", "fit_null", "score_tests", "wald_fits", "logistic_association",
           "DISCLOSURES", "score_site_sums"]

log = logging.getLogger("cipherome.logistic")

#: ledger labels of this stage: kind, what, to whom (sizes in docs/pca_logistic.md)
DISCLOSURES = {
    "logistic.null_fit": ("disclosed", "per Newton step of the covariate-only null model: its k x k information "
                          "matrix and k-vector score over all samples (covariate-only aggregates)", "all sites"),
    "logistic.obs_ct": ("disclosed", "OBS_CT per tested variant", "all sites"),
    "logistic.const": ("disclosed", "genotype constant on the called samples (ERRCODE) per variant", "all sites"),
    "logistic.score": ("disclosed", "signed score statistic U/sqrt(V) / (2 sqrt N) per variant (Z_STAT, P)", "all sites"),
    "logistic.wald_step": ("disclosed", "per Newton step, the (k+1) coefficients' change for each top hit", "all sites"),
    "logistic.wald_var": ("disclosed", "sampling variance of ln OR for each top hit (LOG(OR)_SE)", "all sites"),
}

#: samples' sums are entered with this many fractional bits where they are only opened
_OPEN_FRAC = 40


@dataclass
class LogisticParams:
    """top: Wald fits for this many smallest score p-values; tol: a Wald fit has converged
    when max |step| < tol (Newton converges quadratically, so the coefficients are then
    exact up to the fixed-point noise, about 1e-6); tol_null: the same for the null model
    (plaintext solve of opened sums); max_iter_null / max_iter_wald; ns_steps:
    Newton-Schulz steps per Wald iteration; block: variants per score-test block; missing_bound: the largest missing
    fraction a variant may have (``--geno``), which sets the Neumann terms."""

    top: int = 100
    tol_null: float = 1e-9
    tol: float = 1e-4
    max_iter_null: int = 30
    max_iter_wald: int = 20
    ns_steps: int = 5
    block: int = 4096
    missing_bound: float = 0.1

    @classmethod
    def from_gwas(cls, p) -> "LogisticParams":
        """From ``GwasParams`` (``logistic_top``, ``block``, ``geno`` or ``missing_bound``)."""
        mb = p.geno if getattr(p, "geno", None) is not None else getattr(p, "missing_bound", 0.1)
        return cls(top=int(p.logistic_top), block=int(p.block), missing_bound=float(mb))


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


def fit_null(ctx, x: np.ndarray, y: np.ndarray, n_total: int, params: LogisticParams | None = None) -> NullModel:
    """Newton-Raphson (IRLS) fit of logit P(y = 1) = x beta on the pooled samples.

    x (n_s, k): this site's design rows ([1, standardised covariates]); y (n_s,) 0/1.
    Each step, from the public beta (start 0): sites add 4 X'WX / N and 4 X'(y - mu) / N
    (free), which are opened together (``logistic.null_fit``: k^2 + k values, 1 round);
    beta += info^-1 score in plaintext. Stops when max |step| < tol_null.
    Cost: one round and (n-1) 8 (k^2 + k) bytes per party and step; nothing per sample.
    """
    pp = params or LogisticParams()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, k = x.shape
    beta = np.zeros(k)
    converged, it = False, 0
    for it in range(1, pp.max_iter_null + 1):
        mu = _sigmoid(x @ beta)
        w = mu * (1.0 - mu)
        local = np.concatenate([(4.0 * x.T @ (x * w[:, None])).ravel(), 4.0 * x.T @ (y - mu)]) / n_total
        opened = ctx.open(ctx.inputs_sum(local, shape=local.shape, frac=_OPEN_FRAC), "logistic.null_fit")
        info, score = opened[: k * k].reshape(k, k), opened[k * k :]
        info = (info + info.T) / 2.0
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            raise ValueError("logistic null model: the covariates are collinear on the samples") from None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 50:
            raise ValueError("logistic null model does not converge (the covariates separate cases from "
                             "controls); check the phenotype coding and covariates")
        if np.abs(step).max() < pp.tol_null:
            converged = True
            break
    mu = _sigmoid(x @ beta)
    w = mu * (1.0 - mu)
    return NullModel(beta=beta, info=info, mu=mu, w=w, converged=converged, iterations=it)


def score_site_sums(g: np.ndarray, x: np.ndarray, null: NullModel, y: np.ndarray) -> tuple[CovariateSums, VariantSums]:
    """This site's weighted sums for the score test of a block, as ``localstats`` sums.

    With r = y - mu and w = mu (1 - mu) of the null model, in the roles of the linear
    model's sums: xtx = 4 X'WX, xty = X'r, and per variant over its called samples S_j
    xtg = 4 X_S'W g, sum_gg = 4 g'W g, sum_gy = g'r; over its missing calls
    miss_xx = 4 sum w x x', miss_xy = sum x r, miss_yy = sum r^2. Then ``assoc``'s
    projection gives g'Mg = 4 V / N and g'My = U / N of the score test on S_j:
    U = g'r - g'WX (X_S'WX_S)^-1 X_S'r, V = g'Wg - g'WX (X_S'WX_S)^-1 X'Wg.
    g (V, n_s) int8 (-1 missing); x (n_s, k). Byte-table sums over packed codes.
    """
    x = np.asarray(x, dtype=np.float64)
    n, k = x.shape
    r = np.asarray(y, dtype=np.float64) - null.mu
    w4 = 4.0 * null.w
    packed = pack_dosage(np.asarray(g, dtype=np.int8))
    dosage = np.array([2.0, 0.0, 1.0, 0.0])  # by .bed code: hom ALT, missing, het, hom REF
    weights = np.column_stack([w4[:, None] * x, r, w4])
    fcode = np.column_stack([np.repeat(dosage[:, None], k + 1, axis=1), dosage**2])
    s = weighted_code_sums(packed, weights, fcode)
    iu, ju = packed_upper(k)
    rows = np.column_stack([w4[:, None] * x[:, iu] * x[:, ju], x * r[:, None], r * r])
    miss, miss_n = missing_row_sums(packed, np.ones(n, dtype=bool), rows)
    nk = iu.size
    cov = CovariateSums(n, x.T @ (x * w4[:, None]), x.T @ r, float(r @ r))
    vs = VariantSums(n_obs=n - miss_n, sum_g=np.zeros(len(g)), sum_gg=s[:, k + 1], sum_gy=s[:, k], xtg=s[:, :k],
                     miss_n=miss_n, miss_xx=miss[:, :nk], miss_xy=miss[:, nk:nk + k], miss_yy=miss[:, nk + k])
    return cov, vs


def score_tests(ctx, null: NullModel, x: np.ndarray, y: np.ndarray, read_block: Callable[[np.ndarray], np.ndarray],
                n_tested: int, n_total: int, params: LogisticParams | None = None) -> dict:
    """Score test of every tested variant against the null model, refitted (one step) on its called samples.

    Per block: sites' :func:`score_site_sums` are projected with the public null information
    A = 4 X'WX / N (``assoc.site_terms``/``pool_terms``/``project_off_covariates``:
    Neumann series for each variant's missing calls, one fixed product per term); then
    OBS_CT (``logistic.obs_ct``), the constant-genotype bit (V < 0.1 / N, ``logistic.const``)
    and r = (U / N) / sqrt(4 V / N) = z / (2 sqrt N) (``logistic.score``) are opened.
    Rounds per block: about 2 T + 45 (T Neumann terms: comparison 7, invsqrt 32).
    Returns z (signed U / sqrt V), chi2, p, obs_ct, const, each (n_tested,).
    """
    pp = params or LogisticParams()
    ainv = np.linalg.inv(null.info)
    terms = neumann_terms(pp.missing_bound)
    z = np.full(n_tested, np.nan)
    obs_ct = np.zeros(n_tested, dtype=np.int64)
    const = np.zeros(n_tested, dtype=bool)
    for start in range(0, n_tested, pp.block):
        sel = np.arange(start, min(start + pp.block, n_tested))
        V = sel.size
        cov, vs = score_site_sums(read_block(sel), x, null, y)
        n_obs = ctx.inputs_sum(vs.n_obs, shape=(V,), frac=0)
        pm = project_off_covariates(pool_terms(ctx, site_terms(cov, vs, ainv, n_total)), terms)
        obs_ct[sel] = ctx.open(n_obs, "logistic.obs_ct").astype(np.int64)
        eps = Shared.public(ctx, np.full(V, max(0.1 / max(n_total, 1), 2e-6)), pm.gmg.frac)
        cbit = ltz(pm.gmg - eps)
        const[sel] = ctx.open(cbit, "logistic.const").astype(bool)
        inv = invsqrt(pm.gmg + cbit, hi=4)  # 4 V / N <= 4 max(g^2) w <= 4
        live = Shared.public(ctx, (~const[sel]).astype(np.int64), 0)
        r = arith.mul(arith.mul(pm.gmy, inv), live)
        z[sel] = np.where(const[sel], np.nan, ctx.open(r, "logistic.score") * 2.0 * math.sqrt(n_total))
        log.info("logistic score test: %d/%d variants", start + V, n_tested)
    chi2 = z**2
    with np.errstate(invalid="ignore"):
        logp = stats.chi2.logsf(chi2, 1)
    return {"z": z, "chi2": chi2, "p": np.exp(logp), "neglog10_p": -logp / np.log(10.0),
            "obs_ct": obs_ct, "const": const}


def _wald_site_sums(g: np.ndarray, x: np.ndarray, y: np.ndarray, beta: np.ndarray, n_total: int):
    """(Unweighted Gram, weighted information, score) of [x, g] over each variant's called samples, / N.

    g (T, n_s) int8; beta (T, k + 1). Returns (T, q, q), (T, q, q), (T, q) with q = k + 1;
    weights and score are scaled by 4 (so that 4 w <= 1 and info <= Gram).
    """
    T, n = g.shape
    k = x.shape[1]
    q = k + 1
    called = (g >= 0).astype(np.float64)
    gf = np.where(g >= 0, g, 0).astype(np.float64)
    iu, ju = packed_upper(k)
    xx = x[:, iu] * x[:, ju]

    def gram(wt: np.ndarray) -> np.ndarray:
        out = np.empty((T, q, q))
        half = wt @ xx
        out[:, iu, ju] = half
        out[:, ju, iu] = half
        wg = wt * gf
        xg = wg @ x
        out[:, :k, k] = xg
        out[:, k, :k] = xg
        out[:, k, k] = (wg * gf).sum(axis=1)
        return out

    eta = beta[:, :k] @ x.T + beta[:, k:] * gf
    mu = _sigmoid(eta)
    w4 = 4.0 * mu * (1.0 - mu) * called
    res = 4.0 * (y[None, :] - mu) * called
    score = np.concatenate([res @ x, (res * gf).sum(axis=1)[:, None]], axis=1)
    return gram(called) / n_total, gram(w4) / n_total, score / n_total


def _newton_schulz(a: Shared, x: Shared, steps: int) -> Shared:
    """X <- X (2I - A X), batched; from X_0 with spectral radius of I - A X_0 below 1 (4 rounds a step)."""
    q = a.shape[-1]
    two = np.broadcast_to(2.0 * np.eye(q), a.shape)
    for _ in range(steps):
        ax = arith.matmul(a, x)
        x = arith.matmul(x, (-ax) + two)
    return x


def wald_fits(ctx, null: NullModel, x: np.ndarray, y: np.ndarray, g: np.ndarray, n_total: int,
              params: LogisticParams | None = None) -> dict:
    """Logistic Wald fits (twin: ``reference_logistic.glm_logistic``) of T variants at once.

    g (T, n_s) int8 dosages of the variants at this site's samples (-1 missing); each
    variant is fitted on its called samples S_j with the design [x, g_j] (q = k + 1).
    Steps: sites add the unweighted Gram G_j = [x, g]'[x, g] / N over S_j; G_j^-1 by
    Newton-Schulz from I / (k + 5) (``spd_inverse``, about 72 rounds, once). Newton
    iterations from (null beta, 0): sites add I_j = 4 [x,g]'W[x,g] / N and s_j = 4 [x,g]'(y - mu)
    / N at the public beta_j (free); since 4 w <= 1, I_j <= G_j, so Newton-Schulz started
    from theta G_j^-1 (theta = min(1.9, 1 / (4 mean w))) converges whatever beta_j is
    (``ns_steps`` steps, 4 rounds each); the step I_j^-1 s_j is opened
    (``logistic.wald_step``, T q values, 1 round) and beta_j updated in plaintext.
    At convergence 3 more Newton-Schulz steps and the opening of [I_j^-1]_gg
    (``logistic.wald_var``): SE = sqrt(4 [I_j^-1]_gg / N), Z = beta_g / SE.
    Rounds: about 72 + iterations (4 ns_steps + 3) + 13. Traffic: O(T q^2) per round.
    Variants whose coefficients leave |beta| < 30 or do not converge (separation; PLINK
    falls back to Firth there) get NaN and converged = False.
    """
    pp = params or LogisticParams()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(g, dtype=np.int8)
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
    gram_l, _, _ = _wald_site_sums(g, x, y, beta, n_total)
    gram = ctx.inputs_sum(gram_l, shape=(T, q, q), frac=f)
    ginv = spd_inverse(gram, lam_max_bound=float(k + 5), cond_bound=2e4)
    theta = float(min(1.9, 1.0 / max(null.info[0, 0], 1e-3)))  # info[0,0] = 4 mean(w)
    x0 = arith.mul_public(ginv, theta)
    active = np.ones(T, dtype=bool)
    done = np.zeros(T, dtype=bool)
    xinv = None
    for it in range(1, pp.max_iter_wald + 1):
        _, info_l, score_l = _wald_site_sums(g, x, y, beta, n_total)
        # frozen (failed) variants contribute a harmless system: info = Gram, score = 0
        info_l[~active] = gram_l[~active]
        score_l[~active] = 0.0
        info = ctx.inputs_sum(info_l, shape=(T, q, q), frac=f)
        score = ctx.inputs_sum(score_l, shape=(T, q), frac=f)
        xinv = _newton_schulz(info, x0, pp.ns_steps)
        step = arith.matmul(xinv, score.reshape(T, q, 1)).reshape(T, q)
        st = ctx.open(step, "logistic.wald_step")
        upd = active & ~done
        beta[upd] += st[upd]
        out["iterations"][upd] += 1
        bad = upd & (~np.all(np.isfinite(beta), axis=1) | (np.abs(beta) > 30).any(axis=1))
        active &= ~bad
        done |= active & (np.abs(st).max(axis=1) < pp.tol)
        if np.all(done | ~active):
            break
    # information at the final beta, refined, and its genotype diagonal
    _, info_l, _ = _wald_site_sums(g, x, y, beta, n_total)
    info_l[~active] = gram_l[~active]
    info = ctx.inputs_sum(info_l, shape=(T, q, q), frac=f)
    xinv = _newton_schulz(info, xinv, 3)
    var = ctx.open(xinv[:, k, k], "logistic.wald_var") * 4.0 / n_total
    ok = done & active & (var > 0)
    b = beta[:, k]
    se = np.sqrt(np.where(ok, var, np.nan))
    zs = b / se
    logp = np.log(2.0) + stats.norm.logsf(np.abs(zs))
    out["beta"] = np.where(ok, b, np.nan)
    out["se"] = np.where(ok, se, np.nan)
    out["z"] = np.where(ok, zs, np.nan)
    out["p"] = np.where(ok, np.exp(logp), np.nan)
    out["neglog10_p"] = np.where(ok, -logp / np.log(10.0), np.nan)
    out["converged"] = ok
    return out


def logistic_association(ctx, x: np.ndarray, y: np.ndarray, read_block: Callable[[np.ndarray], np.ndarray],
                         n_tested: int, n_total: int, params=None, a1_is_alt: np.ndarray | None = None) -> dict:
    """The logistic association stage of the GWAS (``--glm`` for case/control traits).

    x (n_s, k): this site's design rows [1, standardised covariates (and PCs)] for its
    complete samples; y (n_s,) 0/1; read_block(sel) -> (len(sel), n_s) int8 dosages of
    tested variants ``sel`` (positions 0..n_tested-1) at those samples, study-oriented;
    n_total: the study's complete samples; params: ``LogisticParams`` or ``GwasParams``;
    a1_is_alt (n_tested,) bool: the tested allele (PLINK's A1) is ALT (else signs flip).
    Returns {"columns": {OR, LOG(OR)_SE, Z_STAT, P}, "errcode", "obs_ct", "test", "wald",
    "null_beta", "score_p"}: rows of the top ``params.top`` score p-values carry the Wald fit
    (test "ADD"); the others carry the score test (test "SCORE": Z_STAT = U / sqrt(V), P;
    OR and SE NA). A top hit whose Wald fit fails keeps its score result with ERRCODE
    LOGISTIC_CONVERGE_FAIL.
    """
    pp = params if isinstance(params, LogisticParams) else (LogisticParams.from_gwas(params) if params is not None
                                                              else LogisticParams())
    null = fit_null(ctx, x, y, n_total, pp)
    sc = score_tests(ctx, null, x, y, read_block, n_tested, n_total, pp)
    ok = np.isfinite(sc["z"])
    cand = np.flatnonzero(ok)
    top = cand[np.lexsort((cand, -np.abs(sc["z"][cand])))][: pp.top]
    top = np.sort(top)
    wd = wald_fits(ctx, null, x, y, read_block(top), n_total, pp)
    sign = np.ones(n_tested) if a1_is_alt is None else np.where(np.asarray(a1_is_alt, bool), 1.0, -1.0)
    lnor = np.full(n_tested, np.nan)
    se = np.full(n_tested, np.nan)
    zst = sc["z"] * sign
    p = sc["p"].copy()
    wald = np.zeros(n_tested, dtype=bool)
    conv = wd["converged"]
    wald[top[conv]] = True
    lnor[top[conv]] = wd["beta"][conv] * sign[top[conv]]
    se[top[conv]] = wd["se"][conv]
    zst[top[conv]] = wd["z"][conv] * sign[top[conv]]
    p[top[conv]] = wd["p"][conv]
    err = np.where(sc["const"], "CONST_OMITTED_ALLELE", ".").astype(object)
    err[top[~conv]] = "LOGISTIC_CONVERGE_FAIL"
    test = np.where(wald, "ADD", "SCORE").astype(object)
    return {
        "columns": {"OR": np.exp(lnor), "LOG(OR)_SE": se, "Z_STAT": zst, "P": p},
        "errcode": err,
        "obs_ct": sc["obs_ct"],
        "test": test,
        "wald": wald,
        "null_beta": null.beta,
        "score_p": sc["p"],
        "score_z": sc["z"] * sign,
    }
