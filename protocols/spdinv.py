"""Inverses and solves with small shared matrices by products only.

Newton-Schulz: X_{t+1} = X_t (2I - A X_t) converges quadratically to A^-1 from
X_0 = I / s whenever s >= lambda_max(A), because then the error E_t = I - A X_t
has spectral radius (1 - lambda_min / s)^(2^t).

Neumann series by squaring (``neumann_doubling``): for rho(B) < 1,
(I - B)^-1 C = sum_t B^t C, and its first 2^L terms are the product
(I + B^(2^(L-1))) ... (I + B^2)(I + B) C, so L levels of one product each
(2 rounds) give 2^L terms, where L steps X <- B X + C give L terms.
"""
from __future__ import annotations

import math

import numpy as np

from cipherome.mpc.shares import Shared

from . import arith

__all__ = ["spd_inverse", "newton_schulz", "newton_schulz_steps", "neumann_doubling"]


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
    matrix (``arith.matmul_self`` opens B_i once), plus the truncation of q (q + m). Fixed-point error: each level adds
    about one truncation ulp times the size of B_i and Y_i (entries of B^(2^i) stay
    below max |B| when B is close to normal).
    """
    if levels < 1:
        raise ValueError("neumann_doubling needs at least one level")
    q = b.shape[-1]
    y = c
    for _ in range(levels - 1):
        prod = arith.matmul_self(b, y)
        b, y = prod[..., :q], y + prod[..., q:]
    return y + arith.matmul(b, y)
