"""Products with a shared matrix that is masked once and reused (a fixed operand).

When the same secret matrix X multiplies many other secrets (per-variant
corrections in a Neumann series, a genotype matrix in power iterations),
E = X - R is opened once for a dealer mask R that the dealer remembers; every
later product X @ Y then costs only the opening of Y - B and the dealer's share
of R B: O(size of Y + size of result) instead of O(size of X) each time.
"""
from __future__ import annotations

import itertools

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.kernels import pack_upper, ring_matmul, ring_matmul_sym, unpack_upper
from cipherome.mpc.shares import Shared
from cipherome.mpc.split import open_relayed

from .arith import rescale
from .trunc import prefetch_pairs, truncate
from .beaver import MATMUL, MATMUL_SYM, combine

__all__ = ["FixedOperand", "fix", "series_counts"]

_keys = itertools.count()


def _product_shape(x_shape, y_shape, left: bool) -> tuple[int, ...]:
    """Shape of X @ Y (left) or Y @ X (not left), batched over a leading axis."""
    if left:
        return tuple(x_shape[:-1]) + (y_shape[-1],)
    return tuple(y_shape[:-1]) + (x_shape[-1],)


@recipe("fixed_mask", rotate=True)
def _fixed_mask(gen, key, shape, symmetric=False):
    """A uniform mask R for a fixed operand; the dealer keeps R under ``key``. Cost: 0.

    ``symmetric``: R is uniform among symmetric matrices (every share is, so their sum is), drawn and
    kept as its upper triangles (..., k(k+1)/2).
    """
    if symmetric:
        k = shape[-1]
        r = gen.random([*shape[:-2], k * (k + 1) // 2])
    else:
        r = gen.random(shape)
    if gen.dealer_side:
        gen.state[key] = r
    return (r,)


def _full_mask(r: np.ndarray, x_shape) -> np.ndarray:
    """The stored mask R as (..., a, b): unpacked if it was kept as upper triangles."""
    return unpack_upper(r, int(x_shape[-1])) if r.ndim == len(x_shape) - 1 else r


@recipe("fixed_product", rotate=True)
def _fixed_product(gen, key, x_shape, y_shape, left, rows=None):
    """Uniform B (shape of Y) and C = R @ B (``left``) or B @ R for the stored mask R. Cost: |C|.

    ``rows``: a batched X is used through its first ``rows`` matrices only (a prefix).
    """
    b = gen.random(y_shape)
    r = _full_mask(gen.state[key], x_shape) if gen.dealer_side else None
    if rows is not None and r is not None:
        r = r[:rows]
    value = (lambda: ring_matmul(r, b)) if left else (lambda: ring_matmul(b, r))
    c = gen.derived(_product_shape(x_shape, y_shape, left), value)
    return b, c


def _t(x: np.ndarray) -> np.ndarray:
    """Batched transpose (..., p, q) -> (..., q, p), contiguous (the ring kernels want C order)."""
    return np.ascontiguousarray(np.swapaxes(x, -1, -2))


def series_counts(half: np.ndarray) -> list[int]:
    """[n_0, ..., n_H]: how many of the (non-increasing) per-row counts ``half`` are >= a, a = 0..H."""
    half = np.asarray(half, dtype=np.int64)
    top = int(half[0]) if half.size else 0
    return [int(np.count_nonzero(half >= a)) for a in range(top + 1)]


@recipe("fixed_series", rotate=True)
def _fixed_series(gen, key, x_shape, counts):
    """Masks and products for ``FixedOperand.series_gram``: for a = 0..H uniform b_a (n_a, p, k);
    C_a = b_a R for the first n_(a+1) rows (a < H); and per row the summed mask products
    D = sum_a b_a b_a' + sum_(a<H) b_a b_(a+1)' (V, p, p). Cost: |C_a| summed plus V p^2.
    """
    p, k = int(x_shape[-2]), int(x_shape[-1])
    counts = [int(c) for c in counts]
    r = gen.state[key] if gen.dealer_side else None
    bs = [gen.random((n, p, k)) for n in counts]
    out = list(bs)
    for a in range(len(counts) - 1):
        n1 = counts[a + 1]
        out.append(gen.derived((n1, p, k), lambda a=a, n1=n1: ring_matmul_sym(bs[a][:n1], r[:n1])))  # R packed

    def gram():
        d = np.zeros((counts[0], p, p), dtype=np.uint64)
        for a, n in enumerate(counts):
            d[:n] += ring_matmul(bs[a], _t(bs[a]))
            if a + 1 < len(counts):
                n1 = counts[a + 1]
                d[:n1] += ring_matmul(bs[a][:n1], _t(bs[a + 1]))
        return d

    out.append(gen.derived((counts[0], p, p), gram))
    return tuple(out)


class FixedOperand:
    """A secret matrix X (2-D, or batched 3-D) whose masked value E = X - R is public.

    Build it with :func:`fix` (one round, two under ``Context.lean()``; |X| elements opened, uniformly random; for a
    symmetric X, k(k+1)/2 per k x k matrix, and E and R are then kept as upper triangles: the series products
    use ``beaver.MATMUL_SYM``, a general product unpacks them on demand).
    ``x @ y`` style products: ``left_mul(y)`` = X @ Y and ``right_mul(y)`` = Y @ X. For a
    batched X (V, a, b), a batched Y with fewer matrices (V' < V) multiplies the first V'.
    """

    def __init__(self, x: Shared, label: str, symmetric: bool = False, packed_k: int | None = None):
        ctx = x.ctx
        shape = tuple(x.shape)
        if packed_k is not None:  # x holds upper triangles (..., k(k+1)/2) of symmetric k x k matrices
            if shape[-1] != packed_k * (packed_k + 1) // 2:
                raise ValueError(f"fix: {shape[-1]} packed elements are not the upper triangle of a "
                                 f"{packed_k} x {packed_k} matrix")
            symmetric, shape = True, (*shape[:-1], packed_k, packed_k)
        self.ctx, self.frac, self.shape = ctx, x.frac, shape
        self.key = f"fixed/{next(_keys)}"
        self.symmetric = symmetric
        extra = {"symmetric": True} if symmetric else {}
        self.r = ctx.provider.fetch("fixed_mask", key=self.key, shape=list(shape), **extra)[0]
        if symmetric:  # X - R is symmetric: E and R are kept (and E opened) as upper triangles only
            upper = x.data if packed_k is not None else pack_upper(x.data)
            self.e = self._open(upper - self.r, label)
        else:
            self.e = self._open(x.data - self.r, label)

    def _full(self) -> tuple[np.ndarray, np.ndarray]:
        """(E, R) as (..., a, b) matrices (unpacked if kept as upper triangles)."""
        if not self.symmetric:
            return self.e, self.r
        k = self.shape[-1]
        return unpack_upper(self.e, k), unpack_upper(self.r, k)

    def _open(self, masked: np.ndarray, label: str) -> np.ndarray:
        """A masked value (E, or F_a of a series) opened to every party: relayed in two rounds under
        ``Context.lean()`` (``mpc.split.open_relayed``), one round otherwise."""
        if self.ctx.lean_mode:
            return open_relayed(self.ctx, masked, label)
        (e,) = self.ctx.open_masked([masked], label)
        return e

    def _product(self, y: Shared, left: bool, label: str) -> Shared:
        """X Y = E B + R F + E F + C with F = Y - B opened (left); mirrored for Y X.

        Steps: dealer gives uniform B and C = R B; open F = Y - B (1 round);
        ``beaver.combine`` with the stored E and R (the lead adds E F); truncate.
        Traffic per party: (n-1) 8 |Y| bytes; the dealer sends the lead 8 |XY|.
        """
        ctx = self.ctx
        (e, r), x_shape, extra = self._full(), list(self.shape), {}
        if len(self.shape) == 3 and y.ndim == 3 and y.shape[0] < self.shape[0]:  # a prefix of the batch
            rows = int(y.shape[0])
            e, r, x_shape, extra = e[:rows], r[:rows], [rows, *self.shape[1:]], {"rows": rows}
        t = ctx.provider.fetch("fixed_product", key=self.key, x_shape=x_shape,
                               y_shape=list(y.shape), left=left, **extra)
        (f,) = ctx.open_masked([y.data - t[0]], label)
        if left:
            z = combine(MATMUL, e, r, f, t[0], t[1], ctx.is_lead)
        else:
            z = combine(MATMUL, f, t[0], e, r, t[1], ctx.is_lead)
        return rescale(Shared(ctx, z, self.frac + y.frac), self.frac, y.frac)

    def series_gram(self, x: Shared, half: np.ndarray, label: str = "fixed.series") -> Shared:
        """Q_j = sum_(s=0..2 h_j) X_j B_j^s X_j' for the fixed symmetric batch B (V, k, k), X (V, p, k).

        ``half`` (V,): h_j, non-increasing (sort the rows first); at frac x.frac (B at the same scale).
        The pairing halves the sequential products of a Neumann series: with W_0 = X_j and
        W_(a+1) = W_a B_j (truncated), B_j symmetric gives X B^(a+b) X' = W_a W_b', so
            Q_j = sum_(a=0..h) W_a W_a' + sum_(a<h) W_a W_(a+1)'
        holds all 2h + 1 terms of the series from h products. Steps, a = 0..H (H = max h):
          1. open F_a = W_a - b_a for the n_a rows with h_j >= a (dealer mask b_a, uniform):
             1 round, (n-1) 8 p k bytes per row and party;
          2. a < H: W_(a+1) = W_a B = F_a E + F_a R + b_a E + b_a R (the lead adds F_a E, dealer
             C_a = b_a R) on the n_(a+1) rows with h_j > a, truncated (1 round, p k per row);
          3. every Gram product from the openings already made: W_a W_b' = F_a F_b' + F_a b_b' +
             b_a F_b' + b_a b_b', the dealer giving per row only the sum D of the b_a b_b' (p x p);
          4. Q truncated back to x.frac (1 round, p (p+1)/2 per row: Q is symmetric).
        Rounds: 2 H + 2. Traffic per row and party: (n-1) 8 (p k (2 h_j + 1) + p (p+1)/2) bytes,
        against (n-1) 8 (2 p k (2 h_j) + 2 p k + p^2) for 2 h_j Horner steps and a final product.
        Under ``Context.lean()`` the F_a are relayed and the truncations split (``mpc.split``):
        4 H + 4 rounds, and about (n-1)/n 16 instead of (n-1) 8 bytes per opened element.
        """
        ctx = self.ctx
        if not self.symmetric:
            raise ValueError("series_gram needs a symmetric fixed operand (fix(..., symmetric=True) or packed_k)")
        V, p, k = x.shape
        half = np.asarray(half, dtype=np.int64)
        if np.any(np.diff(half) > 0):
            raise ValueError("series_gram: half must be non-increasing")
        counts = series_counts(half) if V else [0]
        mat = ctx.provider.fetch("fixed_series", key=self.key, x_shape=[V, p, k], counts=counts)
        H = len(counts) - 1
        pairs = prefetch_pairs(ctx, [((counts[a + 1], p, k), self.frac) for a in range(H)]
                               + [((V, p * (p + 1) // 2), x.frac)])  # every truncation below, requested now
        bs, cs, d = [mat[a] for a in range(H + 1)], [mat[H + 1 + a] for a in range(H)], mat[2 * H + 1]
        lead = ctx.is_lead
        # F_a B = F_a (R + E) at the lead (R + E formed once for every level), F_a R elsewhere
        rb = self.r + self.e if lead and H else self.r
        w = x.data
        fs = []
        for a in range(H + 1):
            fs.append(self._open(w - bs[a], label))
            if a < H:
                n1 = counts[a + 1]
                z = combine(MATMUL_SYM, fs[a][:n1], bs[a][:n1], self.e[:n1], rb[:n1], cs[a], False)
                w = truncate(Shared(ctx, z, x.frac + self.frac), self.frac, pair=pairs[a]).data
        q = d.copy()
        for a, n in enumerate(counts):
            q[:n] += combine(MATMUL, fs[a], bs[a], _t(fs[a]), _t(bs[a]), np.zeros((n, p, p), np.uint64), lead)
            if a < H:
                n1 = counts[a + 1]
                q[:n1] += combine(MATMUL, fs[a][:n1], bs[a][:n1], _t(fs[a + 1]), _t(bs[a + 1]),
                                  np.zeros((n1, p, p), np.uint64), lead)
        upper = truncate(Shared(ctx, pack_upper(q), 2 * x.frac), x.frac, pair=pairs[H])
        return Shared(ctx, unpack_upper(upper.data, p), x.frac)

    def left_mul(self, y: Shared, label: str = "fixed.product") -> Shared:
        """X @ Y."""
        return self._product(y, True, label)

    def right_mul(self, y: Shared, label: str = "fixed.product") -> Shared:
        """Y @ X."""
        return self._product(y, False, label)


def fix(x: Shared, label: str = "fixed.mask", *, symmetric: bool = False, packed_k: int | None = None) -> FixedOperand:
    """Mask ``x`` once so that later products with it are cheap (see module docstring).

    ``symmetric=True`` promises that x (the sum of the shares; a batch of square matrices)
    is symmetric: the mask is symmetric too and only the k(k+1)/2 upper entries of each
    matrix are opened. ``packed_k=k``: x is already those upper triangles, (..., k(k+1)/2) in
    ``np.triu_indices`` order (half the values for the parties to input, add and mask); the
    operand is the symmetric (..., k, k) they stand for.
    """
    return FixedOperand(x, label, symmetric, packed_k)
