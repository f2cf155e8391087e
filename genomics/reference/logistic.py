"""Plaintext twins of logistic-regression association: the per-variant Wald fit of ``plink2 --glm`` (case/control) and a covariate-only null model with per-variant score tests.

The Wald fit is textbook Newton-Raphson (IRLS) on [1, covariates, g_j] over the samples
with a call; the score test needs only per-variant sums of g r, g w g, g w z over those
samples plus (for the re-projection) per-variant corrections of Z'WZ and Z'r, which
:func:`score_test_from_sums` turns into chi2 -- the recipe the secure version follows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import stats

from cipherome.genomics.reference.linear import complete_samples, design_matrix

__all__ = [
    "LogisticResult",
    "ScoreResult",
    "NullModel",
    "fit_null_logistic",
    "glm_logistic",
    "glm_firth",
    "logistic_score_test",
    "score_test_from_sums",
    "score_sums",
    "wald_pvalues",
]


@dataclass
class LogisticResult:
    """Per-variant Wald results, each ``(m,)``; NaN where the fit failed.

    beta (ln OR per ALT allele), odds_ratio, se (of ln OR), z_stat, p, neglog10_p :
    float64; n_obs : int64; converged : bool; iterations : int64.
    """

    beta: np.ndarray
    odds_ratio: np.ndarray
    se: np.ndarray
    z_stat: np.ndarray
    p: np.ndarray
    neglog10_p: np.ndarray
    n_obs: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray


@dataclass
class ScoreResult:
    """Per-variant score tests, each ``(m,)``: chi2, p, neglog10_p, score U, variance V (float64), n_obs (int64)."""

    chi2: np.ndarray
    p: np.ndarray
    neglog10_p: np.ndarray
    score: np.ndarray
    variance: np.ndarray
    n_obs: np.ndarray


@dataclass
class NullModel:
    """A covariate-only logistic fit on ``n`` samples: coef ``(q,)``, mu ``(n,)``, w = mu (1 - mu) ``(n,)``."""

    coef: np.ndarray
    mu: np.ndarray
    w: np.ndarray
    converged: bool
    iterations: int


def wald_pvalues(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided normal p-values and -log10 p (log tail: exact far below 1e-300)."""
    z = np.abs(np.asarray(z, dtype=np.float64))
    logp = np.log(2.0) + stats.norm.logsf(z)
    return np.exp(logp), -logp / np.log(10.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_null_logistic(
    y: np.ndarray, z: np.ndarray, weights: np.ndarray | None = None, max_iter: int = 50, tol: float = 1e-10
) -> NullModel:
    """Newton-Raphson fit of logit P(y=1) = Z b on one sample set.

    ``y`` ``(n,)`` 0/1 float64, ``z`` ``(n, q)`` design (first column 1), optional
    ``weights`` ``(n,)`` 0/1 selecting samples.  Starts at b = (logit(mean y), 0...);
    stops when max |delta b| < ``tol``.
    """
    w0 = np.ones(y.size) if weights is None else np.asarray(weights, dtype=np.float64)
    ybar = float((w0 * y).sum() / w0.sum())
    b = np.zeros(z.shape[1])
    b[0] = np.log(ybar / (1 - ybar))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        mu = _sigmoid(z @ b)
        w = w0 * mu * (1 - mu)
        info = z.T @ (z * w[:, None])
        step = np.linalg.solve(info, z.T @ (w0 * (y - mu)))
        b += step
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    mu = _sigmoid(z @ b)
    return NullModel(coef=b, mu=mu, w=mu * (1 - mu), converged=converged, iterations=it)


def _prepare(genotypes, y, covariates):
    g = np.asarray(genotypes)
    y = np.asarray(y, dtype=np.float64)
    keep = complete_samples(y, covariates)
    yk = y[keep]
    if not np.all(np.isin(yk, (0.0, 1.0))):
        raise ValueError("case/control phenotype must hold 0 (control), 1 (case) or NaN")
    z = design_matrix(None if covariates is None else np.asarray(covariates, float)[keep], yk.size)
    return g[:, keep], yk, z


def glm_logistic(
    genotypes: np.ndarray,
    case: np.ndarray,
    covariates: np.ndarray | None = None,
    max_iter: int = 30,
    tol: float = 1e-9,
    chunk: int = 1024,
) -> LogisticResult:
    """Per-variant logistic Wald test, the twin of ``plink2 --glm`` ADD rows with FIRTH?=N.

    ``genotypes`` ``(m, n)`` int8 ALT counts (-1 missing); ``case`` ``(n,)`` float64
    0/1/NaN; ``covariates`` ``(n, c)`` float64 or None.  Samples missing the phenotype
    or a covariate are dropped; variant j is fitted on the samples S_j with a call.
    Model logit P(y=1) = Z b + b_g g_j, Z = [1, standardized covariates].  Newton-
    Raphson, vectorised over variants: with mu = sigmoid(X b), W = diag(mu (1-mu)) on
    S_j,  b <- b + (X'WX)^-1 X'(y - mu), from the null fit's coefficients and b_g = 0,
    until max |step| < ``tol``.  SE(b_g) = sqrt([(X'WX)^-1]_gg) at the optimum,
    Z = b_g / SE, P = 2 Phi(-|Z|).  Non-convergence (e.g. separation: PLINK 2 would
    fall back to Firth regression) gives NaN and ``converged=False``.  ``beta`` is per
    ALT allele; plink2 reports A1 = nonmajor allele (see ``plink2_a1_is_alt``).
    """
    g, y, z = _prepare(genotypes, case, covariates)
    m, n = g.shape
    q = z.shape[1]
    null = fit_null_logistic(y, z)
    iu = np.triu_indices(q)
    zz = z[:, iu[0]] * z[:, iu[1]]  # (n, q(q+1)/2): Z'WZ is symmetric, build half of it

    def zwz(w: np.ndarray) -> np.ndarray:
        half = w @ zz
        out = np.empty((w.shape[0], q, q))
        out[:, iu[0], iu[1]] = half
        out[:, iu[1], iu[0]] = half
        return out

    def fitted(b: np.ndarray, gr: np.ndarray, mr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu (k, n) and the information X'WX (k, q+1, q+1) at coefficients b (k, q+1), for
        genotype rows gr and call masks mr (k, n)."""
        mu = _sigmoid(b[:, :q] @ z.T + b[:, q : q + 1] * gr)
        w = mu * (1 - mu) * mr
        info = np.empty((w.shape[0], q + 1, q + 1))
        info[:, :q, :q] = zwz(w)
        wg = w * gr
        zwg = wg @ z
        info[:, :q, q] = zwg
        info[:, q, :q] = zwg
        info[:, q, q] = (wg * gr).sum(axis=1)
        return mu, info

    res = {k: np.full(m, np.nan) for k in ("beta", "odds_ratio", "se", "z_stat", "p", "neglog10_p")}
    n_obs = np.zeros(m, dtype=np.int64)
    conv = np.zeros(m, dtype=bool)
    iters = np.zeros(m, dtype=np.int64)
    for a in range(0, m, chunk):
        gb = g[a : a + chunk]
        J = gb.shape[0]
        mask = (gb >= 0).astype(np.float64)  # (J, n)
        gf = np.where(gb >= 0, gb, 0).astype(np.float64)
        n_obs[a : a + J] = mask.sum(axis=1).astype(np.int64)
        B = np.zeros((J, q + 1))
        B[:, :q] = null.coef
        active = np.ones(J, dtype=bool)
        done = np.zeros(J, dtype=bool)
        it_count = np.zeros(J, dtype=np.int64)
        gvar = (gf**2 * mask).sum(1) - (gf * mask).sum(1) ** 2 / np.maximum(mask.sum(1), 1)
        active &= gvar > 1e-9
        info = None
        for _ in range(max_iter):
            idx = np.flatnonzero(active & ~done)
            if idx.size == 0:
                break
            mu, info = fitted(B[idx], gf[idx], mask[idx])
            resid = (y[None, :] - mu) * mask[idx]
            k = idx.size
            score = np.concatenate([resid @ z, (resid * gf[idx]).sum(axis=1)[:, None]], axis=1)
            try:
                step = np.linalg.solve(info, score[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = np.full_like(score, np.nan)
                for r in range(k):
                    try:
                        step[r] = np.linalg.solve(info[r], score[r])
                    except np.linalg.LinAlgError:
                        pass
            bad = ~np.isfinite(step).all(axis=1) | (np.abs(B[idx] + step) > 30).any(axis=1)
            active[idx[bad]] = False
            good = idx[~bad]
            B[good] += step[~bad]
            it_count[good] += 1
            done[good[np.max(np.abs(step[~bad]), axis=1) < tol]] = True
        fin = np.flatnonzero(done & active)
        if fin.size == 0:
            iters[a : a + J] = it_count
            continue
        # information at the optimum
        _, info = fitted(B[fin], gf[fin], mask[fin])
        var = np.linalg.inv(info)[:, q, q]
        beta = B[fin, q]
        se = np.sqrt(var)
        zs = beta / se
        p, nl = wald_pvalues(zs)
        sel = fin + a
        res["beta"][sel] = beta
        res["odds_ratio"][sel] = np.exp(beta)
        res["se"][sel] = se
        res["z_stat"][sel] = zs
        res["p"][sel] = p
        res["neglog10_p"][sel] = nl
        conv[sel] = True
        iters[a : a + J] = it_count
    return LogisticResult(n_obs=n_obs, converged=conv, iterations=iters, **res)


def glm_firth(
    genotypes: np.ndarray,
    case: np.ndarray,
    covariates: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-9,
) -> LogisticResult:
    """Per-variant Firth-penalised logistic fit, the twin of ``plink2 --glm firth`` (and of the rows
    with FIRTH?=Y under plink2's default ``firth-fallback``), as plink2 v2.00a3.5 computes it.

    plink2 a3.5's ``FirthRegression`` (a port of logistf with pl=FALSE): on the samples S_j
    with a call, design X = [Z, g_j], from b = 0; at each b, mu = sigmoid(X b),
    w = mu (1 - mu), I = X'WX, h_i = w_i x_i' I^-1 x_i (the hat diagonal) and the modified
    score U* = X'(y - mu + h (1/2 - mu)), the gradient of the penalised log-likelihood
    l*(b) = l(b) + log det I(b) / 2; the step delta = I^-1 U*, scaled down to
    max |delta| = 5 when larger, halved (up to 5 times) while l* decreases. Iterated to
    max |delta| < ``tol`` (these steps converge linearly: up to about 150 steps for a MAC-2 variant) (plink2 stops at 1e-4 in single precision: its ln OR agree with
    the exact maximum to about 1e-4). SE(b_g) = sqrt([I^-1]_gg) at the final b (the
    unpenalised information, as plink2 a3.5 reports it; later plink2 versions use
    X' diag(w (1 + h)) X), Z = b_g / SE, P = 2 Phi(-|Z|) (a Wald test on the penalised fit).
    ``converged`` is False where the fit did not converge or the information is singular.
    """
    g, y, z = _prepare(genotypes, case, covariates)
    m = g.shape[0]
    res = {k: np.full(m, np.nan) for k in ("beta", "odds_ratio", "se", "z_stat", "p", "neglog10_p")}
    n_obs = (g >= 0).sum(axis=1).astype(np.int64)
    conv = np.zeros(m, dtype=bool)
    iters = np.zeros(m, dtype=np.int64)

    def penalised(x, yy, b):
        """l*(b), mu, w and I^-1 at b (l* = -inf where I is singular or a probability is 0 or 1)."""
        mu = _sigmoid(x @ b)
        w = mu * (1.0 - mu)
        sign, logdet = np.linalg.slogdet(x.T @ (x * w[:, None]))
        with np.errstate(divide="ignore"):
            ll = float(np.sum(np.where(yy > 0, np.log(mu), np.log1p(-mu)))) + 0.5 * logdet
        if sign <= 0 or not np.isfinite(ll):
            return -np.inf, mu, w, None
        return ll, mu, w, np.linalg.inv(x.T @ (x * w[:, None]))

    for j in range(m):
        sel = g[j] >= 0
        x = np.column_stack([z[sel], g[j, sel].astype(np.float64)])
        yy = y[sel]
        b = np.zeros(x.shape[1])
        ll, mu, w, inv = penalised(x, yy, b)
        for _ in range(max_iter):
            if inv is None:
                break
            h = w * np.einsum("ia,ab,ib->i", x, inv, x)
            delta = inv @ (x.T @ (yy - mu + h * (0.5 - mu)))
            dmax = float(np.abs(delta).max())
            if dmax > 5.0:
                delta *= 5.0 / dmax
            for _half in range(6):
                new = penalised(x, yy, b + delta)
                if new[0] >= ll or _half == 5:
                    break
                delta = delta / 2.0
            b = b + delta
            ll, mu, w, inv = new
            iters[j] += 1
            if dmax < tol:
                conv[j] = inv is not None
                break
        if conv[j] and inv[-1, -1] > 1e-20:
            res["beta"][j] = b[-1]
            res["se"][j] = np.sqrt(inv[-1, -1])
        else:
            conv[j] = False
    res["odds_ratio"] = np.exp(res["beta"])
    res["z_stat"] = res["beta"] / res["se"]
    res["p"], res["neglog10_p"] = wald_pvalues(res["z_stat"])
    res["p"][~conv] = np.nan
    res["neglog10_p"][~conv] = np.nan
    return LogisticResult(n_obs=n_obs, converged=conv, iterations=iters, **res)


def score_test_from_sums(
    gr: np.ndarray,
    gwg: np.ndarray,
    gwz: np.ndarray,
    zwz: np.ndarray,
    zr: np.ndarray | None = None,
    n_obs: np.ndarray | None = None,
) -> ScoreResult:
    """Score test of b_g = 0 from aggregated sums (what the secure version computes).

    Per variant j, sums over its samples S_j (each site adds its own part):
      gr  ``(m,)``      sum g r,          r = y - mu0 (null-model residual)
      gwg ``(m,)``      sum w g^2,        w = mu0 (1 - mu0)
      gwz ``(m, q)``    sum w g z
      zwz ``(m, q, q)`` or ``(q, q)``  sum w z z'  (per variant: all samples minus
                        the variant's missing ones; shared: one matrix for all)
      zr  ``(m, q)`` or None   sum z r over S_j (None: taken as 0, i.e. the null
                        model's own score equations hold on S_j)

        U = gr - gwz' zwz^-1 zr,   V = gwg - gwz' zwz^-1 gwz,   chi2 = U^2 / V.

    U re-projects the null residual on S_j: it is the score after one Newton step of
    the null model refitted on S_j, the second-order-close twin of a full refit.
    """
    gr = np.asarray(gr, dtype=np.float64)
    gwz = np.asarray(gwz, dtype=np.float64)
    zwz = np.asarray(zwz, dtype=np.float64)
    if zwz.ndim == 2:
        sol = np.linalg.solve(zwz, gwz.T).T  # (m, q)
        sol_r = None if zr is None else np.linalg.solve(zwz, np.asarray(zr, float).T).T
    else:
        sol = np.linalg.solve(zwz, gwz[:, :, None])[:, :, 0]
        sol_r = None if zr is None else np.linalg.solve(zwz, np.asarray(zr, float)[:, :, None])[:, :, 0]
    u = gr if sol_r is None else gr - np.einsum("jk,jk->j", gwz, sol_r)
    v = np.asarray(gwg, dtype=np.float64) - np.einsum("jk,jk->j", gwz, sol)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.where(v > 1e-12 * np.maximum(np.asarray(gwg), 1e-300), u**2 / v, np.nan)
    logp = stats.chi2.logsf(chi2, 1)
    n = np.full(gr.shape, -1, dtype=np.int64) if n_obs is None else np.asarray(n_obs, dtype=np.int64)
    return ScoreResult(chi2=chi2, p=np.exp(logp), neglog10_p=-logp / np.log(10.0), score=u, variance=v, n_obs=n)


def score_sums(g: np.ndarray, z: np.ndarray, y: np.ndarray, null: NullModel) -> dict[str, np.ndarray]:
    """The per-variant sums :func:`score_test_from_sums` needs, for one sample set.

    ``g`` ``(m, n)`` int8 (-1 missing), ``z`` ``(n, q)``, ``y`` ``(n,)``, ``null`` a
    :class:`NullModel` fitted on these ``n`` samples.  Returns ``gr, gwg, gwz, zwz,
    zr, n_obs``; ``zwz`` ``(m, q, q)`` and ``zr`` ``(m, q)`` are full-sample sums minus
    sums over each variant's missing calls (sparse, so cheap).  Sums are additive over
    sites: compute per site with the shared null coefficients and add.
    """
    n, q = z.shape
    miss = np.asarray(g) < 0
    gf = np.where(miss, 0, g).astype(np.float64)
    r = y - null.mu
    w = null.w
    ms = sp.csr_matrix(miss.astype(np.float64))
    zz_w = ((z[:, :, None] * z[:, None, :]).reshape(n, q * q)) * w[:, None]
    zwz = (zz_w.sum(axis=0)[None, :] - np.asarray(ms @ zz_w)).reshape(-1, q, q)
    zr = (z * r[:, None]).sum(axis=0)[None, :] - np.asarray(ms @ (z * r[:, None]))
    return {
        "gr": gf @ r,
        "gwg": (gf**2) @ w,
        "gwz": (gf * w[None, :]) @ z,
        "zwz": zwz,
        "zr": zr,
        "n_obs": (~miss).sum(axis=1).astype(np.int64),
    }


def logistic_score_test(genotypes: np.ndarray, case: np.ndarray, covariates: np.ndarray | None = None,
                        null: str = "refit", chunk: int = 2048) -> ScoreResult:
    """Per-variant score (Rao) test of b_g = 0 under a covariate-only logistic null model.

    ``null`` chooses how the null model meets each variant's missing calls:
      ``"refit"``   the null model is refitted on S_j (the samples with a call) for
                    every variant -- the exact score test (r >= 0.999 of -log10 p vs
                    plink2's Wald P on simulated data with 1% missing);
      ``"project"`` one null fit on all samples, the score re-projected on S_j through
                    per-variant corrections of Z'WZ and Z'r (:func:`score_sums`,
                    :func:`score_test_from_sums`); one Newton step from "refit";
      ``"global"``  one null fit, no re-projection (zr taken as 0, Z'WZ over all
                    samples): what a naive secure version would do; measurably worse.
    chi2 = U^2 / V with U = g'(y - mu0), V = g'Wg - g'WZ (Z'WZ)^-1 Z'Wg on S_j.
    """
    g, y, z = _prepare(genotypes, case, covariates)
    m, n = g.shape
    q = z.shape[1]
    if null in ("project", "global"):
        fit = fit_null_logistic(y, z)
        s = score_sums(g, z, y, fit)
        if null == "global":
            zwz_all = z.T @ (z * fit.w[:, None])
            return score_test_from_sums(s["gr"], s["gwg"], s["gwz"], zwz_all, None, s["n_obs"])
        return score_test_from_sums(s["gr"], s["gwg"], s["gwz"], s["zwz"], s["zr"], s["n_obs"])
    if null != "refit":
        raise ValueError(f"null must be 'refit', 'project' or 'global', not {null!r}")
    # refit: batched Newton on the q null coefficients per variant, then the score
    start = fit_null_logistic(y, z).coef
    zz = (z[:, :, None] * z[:, None, :]).reshape(n, q * q)
    out_u = np.full(m, np.nan)
    out_v = np.full(m, np.nan)
    n_obs = (g >= 0).sum(axis=1).astype(np.int64)
    for a in range(0, m, chunk):
        gb = g[a : a + chunk]
        J = gb.shape[0]
        mask = (gb >= 0).astype(np.float64)
        gf = np.where(gb >= 0, gb, 0).astype(np.float64)
        B = np.tile(start, (J, 1))
        for _ in range(50):
            mu = _sigmoid(B @ z.T)
            w = mu * (1 - mu) * mask
            info = (w @ zz).reshape(J, q, q)
            score = ((y[None, :] - mu) * mask) @ z
            step = np.linalg.solve(info, score[:, :, None])[:, :, 0]
            B += step
            if np.max(np.abs(step)) < 1e-10:
                break
        mu = _sigmoid(B @ z.T)
        w = mu * (1 - mu) * mask
        r = (y[None, :] - mu) * mask
        zwz = (w @ zz).reshape(J, q, q)
        gwz = (w * gf) @ z
        gwg = (w * gf * gf).sum(axis=1)
        gr = (r * gf).sum(axis=1)
        sol = np.linalg.solve(zwz, gwz[:, :, None])[:, :, 0]
        out_u[a : a + J] = gr
        out_v[a : a + J] = gwg - np.einsum("jk,jk->j", gwz, sol)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.where(out_v > 1e-9, out_u**2 / out_v, np.nan)
    logp = stats.chi2.logsf(chi2, 1)
    return ScoreResult(chi2=chi2, p=np.exp(logp), neglog10_p=-logp / np.log(10.0), score=out_u, variance=out_v, n_obs=n_obs)
