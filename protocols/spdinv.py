"""Inverses and solves with small shared matrices by products only.

Newton-Schulz: X_{t+1} = X_t (2I - A X_t) converges quadratically to A^-1 from
X_0 = I / s whenever s >= lambda_max(A), because then the error E_t = I - A X_t
has spectral radius (1 - lambda_min / s)^(2^t).

Neumann series by squaring (``neumann_doubling``): for rho(B) < 1,
(I - B)^-1 C = sum_t B^t C, and its first 2^L terms are the product
(I + B^(2^(L-1))) ... (I + B^2)(I + B) C, so L levels of one product each
(2 rounds) give 2^L terms, where L steps X <- B X + C give L terms.
``neumann_inverse`` runs t Newton-Schulz steps from X as t such levels on E = I - X A
(the same X_t in exact arithmetic, 2 + 2t rounds instead of 4t), optionally with X_t times
a right-hand side. Newton-Schulz steps correct their own rounding and the series does not:
an error in B^(2^i) doubles with each later level, so the series suits a few levels from a
good start (a warm start, a bounded spectrum), and ``spd_inverse`` keeps the steps.
"""
from __future__ import annotations

import math

import numpy as np

from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.ring import encode
from cipherome.mpc.shares import Shared, concat

from . import arith
from .trunc import truncate

__all__ = ["spd_inverse", "newton_schulz", "newton_schulz_steps", "neumann_doubling", "neumann_inverse"]


def newton_schulz_steps(cond_bound: float, tol: float = 1e-9) -> int:
    """Iterations t with (1 - 1/cond_bound)^(2^t) <= tol (cond_bound = s / lambda_min)."""
    if cond_bound <= 1:
        return 1
    rho = 1.0 - 1.0 / cond_bound
    return max(1, math.ceil(math.log2(math.log(tol) / math.log(rho))))


def newton_schulz(a: Shared, x: Shared, steps: int) -> Shared:
    """``steps`` iterations X <- X (2I - A X) from X (batched over leading axes); 4 rounds each.

    Converges to A^-1 when the spectral radius of I - A X_0 is below 1 (a warm
    start from a nearby inverse needs only a few steps).
    """
    eye2 = 2.0 * np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    for _ in range(steps):
        x = arith.matmul(x, (-arith.matmul(a, x)) + eye2)
    return x


def spd_inverse(a: Shared, lam_max_bound: float, cond_bound: float = 1e4, tol: float = 1e-9) -> Shared:
    """A^-1 for a shared SPD matrix A (k x k, or batched (B, k, k)).

    lam_max_bound: public s >= lambda_max(A) (e.g. k times the largest possible
    entry); cond_bound: public bound on s / lambda_min(A). The number of steps is
    ``newton_schulz_steps(cond_bound, tol)``; each step is two matrix products
    (4 rounds with truncation). Fixed-point error: the iteration is self-correcting,
    so the result is accurate to about cond(A) ulp.
    """
    x0 = Shared.public(a.ctx, np.broadcast_to(np.eye(a.shape[-1]), a.shape) / lam_max_bound, a.frac)
    return newton_schulz(a, x0, newton_schulz_steps(cond_bound, tol))


def neumann_doubling(b: Shared, c: Shared, levels: int) -> Shared:
    """sum_(t < 2^levels) B^t C for B (.., q, q) and C (.., q, m), batched over leading axes.

    With B_0 = B and Y_0 = C, level i computes the one product B_i [B_i | Y_i]
    (both operands opened in one round, then one truncation): B_(i+1) = B_i^2 and
    Y_(i+1) = Y_i + B_i Y_i = (I + B^(2^i)) Y_i; the last level needs only B_i Y_i.
    Then Y_L = prod_i (I + B^(2^i)) C = sum_(t < 2^L) B^t C, which tends to
    (I - B)^-1 C with residual B^(2^L) (I - B)^-1 C when rho(B) < 1.
    Rounds: 2 per level. Traffic per level and party: (n-1) 8 (q^2 + q m) bytes per
    matrix (``arith.matmul_self`` opens B_i once), plus the truncation of q (q + m).
    Fixed-point error: each level adds about one truncation ulp times the size of B_i and
    Y_i, and an error in B_i doubles in B_(i+1) (module docstring).
    """
    if levels < 1:
        raise ValueError("neumann_doubling needs at least one level")
    q = b.shape[-1]
    y = c
    for _ in range(levels - 1):
        prod = arith.matmul_self(b, y)
        b, y = prod[..., :q], y + prod[..., q:]
    return y + arith.matmul(b, y)


def neumann_inverse(a: Shared, x, steps: int, rhs: Shared | None = None, inverse: bool = True):
    """X_t of ``steps`` Newton-Schulz steps X <- X (2I - A X) from X_0 = x, as a Neumann series.

    With E = I - X_0 A, t steps give X_t = (I + E^(2^(t-1))) ... (I + E) X_0 = sum_(s < 2^t) E^s X_0:
    one product X_0 [A | rhs] (x shared: 2 rounds; x a public array: local, 1 truncation), then t
    levels of ``neumann_doubling`` on [X_0 | X_0 rhs]; 2 + 2t rounds where the steps take 4t.
    Returns X_t; with ``rhs`` (.., q, m) the pair (X_t, X_t rhs), or only X_t rhs if ``inverse`` is
    False (the levels then carry m columns instead of q + m). Converges to A^-1 when rho(E) < 1.
    """
    ctx = a.ctx
    q, f = a.shape[-1], a.frac
    right = a if rhs is None else concat([a, rhs], axis=a.ndim - 1)
    if isinstance(x, Shared):
        xr = arith.matmul(x, right)
    else:
        xs = np.broadcast_to(np.asarray(x, dtype=np.float64), a.shape)
        xr = truncate(Shared(ctx, ring_matmul(encode(xs, f), right.data), 2 * f), f)  # every party's share times x
        x = Shared.public(ctx, xs, f)
    e = np.broadcast_to(np.eye(q), a.shape) - xr[..., :q]
    if rhs is None:
        return neumann_doubling(e, x, steps)
    if not inverse:
        return neumann_doubling(e, xr[..., q:], steps)
    out = neumann_doubling(e, concat([x, xr[..., q:]], axis=a.ndim - 1), steps)
    return out[..., :q], out[..., q:]
