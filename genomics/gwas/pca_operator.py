"""A site's standardised PCA matrix and its two products per Krylov pass (pooled PCA, plaintext, local).

Z' (M x n_s): z_ji = s_j (g_ji - 2 p_j) for a call, 0 for a missing call, with s_j = 1 / sqrt(2 p_j (1 - p_j))
for a kept variant and 0 otherwise (plink2 --pca's standardisation, pooled frequencies p). Per pass the
pooled PCA needs Z' Y (M x b) and Z U (n_s x b) (``pca_pooled``).

Hard calls with AVX-512 VNNI (``kernel`` "vnni", ``genomics.local.vnni``): with G (calls, 0 where missing; uint8) and the
missing-call pairs, Z' = diag(s) G - diag(2 p s) C for the call indicator C = 1 - Miss, so
    Z' Y = s o (G Y) - (2 p s) o (1' Y - Miss Y)          (o: per-row scaling)
    Z U  = G' (s o U) - 1 (2 p s)' U + Miss' ((2 p s) o U)
G Y and G' (s o U) are exact integer products of the calls with the columns quantised to 16 bits
(``DIGITS`` = 2 int8 digits per column, ``quantise``), on G and a transposed copy G' (one byte per call
each, against four for a float32 Z'); the Miss terms are sums over the missing calls only, one float32
vector per missing call (``genomics.local.sparse_rows``). The rounding is the quantisation: at most
2^-16 of each column's largest entry per entry (relative error of a product 1.9e-5 to 2.5e-5 measured;
three digits, 24 bits, give float32's 1e-7 to 3e-7 at 1.5x the work), and the Miss terms' float32
sums, two orders of magnitude below it. The Krylov iteration stops at a relative residual of 2e-3 (``PCAParams.rtol``), 80 times
the products' error; docs/pca_logistic.md has the agreement with plink2 for both.

Hard calls on a host without VNNI (``kernel`` "tables"): the same two formulas with G Y and G' (s o U)
as float32 table sums over G and G' packed four calls per byte in base 3 (``genomics.local.call_tables``:
a quarter byte per call each; no quantisation, float32 rounding about 1e-7 relative). On an AMD EPYC
(Zen 1, AVX2) VM, one thread, 81,000 x 3,334 x 12: 0.10 s (left) and 0.11 s (right) per product against
0.39 s and 0.83 s by SGEMM on the float32 Z'.

Dosages (``kernel`` "float"): Z' as float32, products by BLAS (one core, OpenBLAS's SGEMM).
"""
from __future__ import annotations

import os

import numpy as np
from numba import prange

from cipherome.mpc.jit import njit

from cipherome.genomics.local import call_tables, sparse_rows, vnni
from cipherome.genomics.local.threads import twin_kernel

from .pca_calls import OperatorCalls

__all__ = ["StandardisedCalls", "standardised_rows", "quantise", "bytes_per_call"]

_CHUNK = 8192  # variants per block of the one-time float32 standardisation
#: int8 digits per quantised column (module doc)
DIGITS = 2


#: the product kernels: exact int8 products by AVX-512 VNNI; float32 table sums over base-3 codes of the
#: calls (``genomics.local.call_tables``: hard calls without VNNI); float32 SGEMM (dosages)
KERNELS = ("vnni", "tables", "float")


#: set to "tables" or "float" to force that kernel for hard calls (tests, benchmarks; "vnni" is the default
#: where the CPU has it)
KERNEL_ENV = "CIPHEROME_PCA_KERNEL"


def kernel_for(hard_calls: bool, int8_products: bool | None = None) -> str:
    """The product kernel: "vnni" where the CPU has it, else "tables", for hard calls; "float" for dosages
    or ``int8_products=False``; ``KERNEL_ENV`` may force "tables" or "float" for hard calls."""
    if not hard_calls or int8_products is False:
        return "float"
    forced = os.environ.get(KERNEL_ENV, "")
    if forced in ("tables", "float"):
        return forced
    return "vnni" if vnni.available() else "tables"


def bytes_per_call(kernel: str) -> float:
    """Bytes per (variant, sample) the operator keeps beside the site's int8 calls: G' (the calls are
    turned into G in place) with VNNI, the two code matrices of ``call_tables`` (a quarter byte each), or
    the float32 Z'."""
    return {"vnni": 1.0, "tables": 0.5, "float": 4.0}[kernel]


def digit_max(digits: int) -> int:
    """The largest integer that ``digits`` balanced int8 digits hold: 127 (256^d - 1) / 255."""
    return 127 * (256 ** digits - 1) // 255


def quantise(y: np.ndarray, w: np.ndarray | None = None, digits: int = DIGITS) -> tuple[np.ndarray, np.ndarray]:
    """(digits (K, d b) int8, scale (b,)): w o y ~ scale * sum_t 256^t D_t, columns [D_0 | D_1 | ..], d = ``digits``.

    ``w`` (K,): row weights (default 1). Each column is scaled so that its largest |entry| is
    ``digit_max(d)`` (8d bits), rounded to integers and split into balanced base-256 digits in
    [-128, 127]: relative rounding at most 2^-(8d - 1) of the column's largest entry. Zero
    columns get scale 0. 1 <= d <= 4 (the digit products' sums then stay exact in int64).
    """
    if not 1 <= int(digits) <= 4:
        raise ValueError(f"quantise: {digits} digits per column; 1 to 4 are supported")
    y = np.ascontiguousarray(y, dtype=np.float64)
    w = np.ones(y.shape[0]) if w is None else np.ascontiguousarray(w, dtype=np.float64)
    top = np.zeros(y.shape[1])
    _col_max(y, w, top)
    scale = np.where(top > 0, top / digit_max(digits), 0.0)
    out = np.empty((y.shape[0], digits * y.shape[1]), dtype=np.int8)
    _digits(y, w, np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0), out)
    return out, scale


@njit(cache=True, nogil=True)
def _col_max(y, w, top):  # pragma: no cover - compiled
    for r in range(y.shape[0]):
        for c in range(y.shape[1]):
            v = abs(w[r] * y[r, c])
            if v > top[c]:
                top[c] = v


@njit(cache=True, nogil=True)
def _digits(y, w, inv, out):  # pragma: no cover - compiled
    k, b = y.shape
    d = out.shape[1] // b
    for r in range(k):
        for c in range(b):
            v = np.int64(np.rint(w[r] * y[r, c] * inv[c]))
            for t in range(d - 1):
                lo = (v + 128) % 256 - 128
                out[r, t * b + c] = lo
                v = (v - lo) // 256
            out[r, (d - 1) * b + c] = v


@njit(cache=True, nogil=True, inline="always")
def _digit_sum(acc, r, c, b, d):  # pragma: no cover - compiled
    """sum_t 256^t acc[r, t b + c]: the product of the quantised column c from its digit products (the
    usual digit counts spelt out: a loop over t here cost 14 ms more per left product at M = 96,000)."""
    if d == 2:
        return acc[r, c] + 256 * acc[r, b + c]
    if d == 3:
        return acc[r, c] + 256 * acc[r, b + c] + 65536 * acc[r, 2 * b + c]
    v = acc[r, (d - 1) * b + c]
    for t in range(d - 2, -1, -1):
        v = 256 * v + acc[r, t * b + c]
    return v


def _left_kernel(acc, scale, s, mu, colsum, miss_sum, out):  # pragma: no cover - compiled
    """out[j] = s_j (G Y)_j - mu_j (1'Y - (Miss Y)_j), G Y from the digit products ``acc``, Miss Y = ``miss_sum``."""
    b = scale.size
    d = acc.shape[1] // b
    for j in prange(acc.shape[0]):
        for c in range(b):
            out[j, c] = s[j] * (_digit_sum(acc, j, c, b, d) * scale[c]) - mu[j] * (colsum[c] - miss_sum[j, c])


def _right_kernel(acc, scale, musum, miss_sum, out):  # pragma: no cover - compiled
    """out[i] = (G'(s o U))_i - sum_j mu_j u_j + (Miss'(mu o U))_i, G'(s o U) from the digit products ``acc``."""
    b = scale.size
    d = acc.shape[1] // b
    for i in prange(acc.shape[0]):
        for c in range(b):
            out[i, c] = _digit_sum(acc, i, c, b, d) * scale[c] - musum[c] + miss_sum[i, c]


def _padded32(x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """(w o x) as float32 with its columns padded to ``sparse_rows.padded_width`` (zeros)."""
    out = np.zeros((x.shape[0], sparse_rows.padded_width(x.shape[1])), dtype=np.float32)
    out[:, :x.shape[1]] = x if w is None else w[:, None] * x
    return out


_left_combine = twin_kernel(_left_kernel)
_right_combine = twin_kernel(_right_kernel)


@njit(cache=True, nogil=True)
def _standardise_calls(g, lut, out):  # pragma: no cover - compiled
    m, n = g.shape
    for j in range(m):
        for i in range(n):
            out[j, i] = lut[j, g[j, i] + 1]


def standardised_rows(g: np.ndarray, p: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """(M, n_s) float32 Z': z = (g - 2p) / sqrt(2p(1-p)) for a call, 0 for a missing call or a dropped variant.

    ``g`` (M, n_s) int8 hard calls (-1 missing) or float dosages (NaN missing); ``p`` (M,) the pooled
    ALT frequencies; ``keep`` (M,) the variants with weight (the others are rows of zeros).
    """
    m = g.shape[0]
    a = _weights(p, keep)
    out = np.empty(g.shape, dtype=np.float32)
    for lo in range(0, m, _CHUNK):
        hi = min(m, lo + _CHUNK)
        aa, pp = a[lo:hi, None], p[lo:hi, None]
        if g.dtype.kind == "f":
            blk = g[lo:hi]
            out[lo:hi] = np.where(np.isnan(blk), 0.0, (blk - 2.0 * pp) * aa)
        else:
            lut = np.hstack([np.zeros_like(aa), (np.arange(3.0)[None, :] - 2.0 * pp) * aa]).astype(np.float32)
            _standardise_calls(np.ascontiguousarray(g[lo:hi], dtype=np.int8), lut, out[lo:hi])
    return out


def _weights(p: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """s_j = 1 / sqrt(2 p_j (1 - p_j)) for kept variants, 0 for the others."""
    s = np.zeros(p.shape[0])
    pk = p[keep]
    s[keep] = 1.0 / np.sqrt(2.0 * pk * (1.0 - pk))
    return s


class StandardisedCalls:
    """Z' of one site (module docstring), built once; ``left(y)`` = Z' Y, ``right(u)`` = Z U.

    ``g`` (M, n_s): int8 hard calls (-1 missing; with VNNI or tables they are consumed: turned into G in
    place, so the caller must not use them afterwards), float dosages (NaN missing), or the calls already
    in an operator layout (``pca_calls.OperatorCalls``, which then fixes the kernel).
    ``int8_products``: None (default) picks the kernel by ``kernel_for``; False forces float32; True asks
    for the hard-call kernels (VNNI where the CPU has it, else tables). ``digits``: int8 digits per
    quantised column (``quantise``; VNNI only). ``kernel``: the kernel in use (``KERNELS``).
    """

    def __init__(self, g, p: np.ndarray, keep: np.ndarray, int8_products: bool | None = None, digits: int = DIGITS):
        p = np.asarray(p, dtype=np.float64)
        self.shape, self.digits = g.shape, int(digits)
        built = isinstance(g, OperatorCalls)
        if built:
            self.kernel = "tables" if g.codes_layout else "vnni"
            if self.kernel == "vnni" and not vnni.available():
                raise ValueError("StandardisedCalls: calls in the int8 layout need the int8 products (a VNNI host)")
        else:
            self.kernel = kernel_for(g.dtype == np.int8, int8_products)
        self.int8 = self.kernel == "vnni"
        if self.kernel == "float":
            self.zt = standardised_rows(g, p, np.asarray(keep, dtype=bool))
            return
        self.s = _weights(p, np.asarray(keep, dtype=bool))
        self.mu = 2.0 * p * self.s  # 2 p s: the per-row shift of the calls
        calls = g if built else OperatorCalls.build(g, codes=self.kernel == "tables")
        self.g, self.gt, self.miss_ptr, self.miss_idx = calls.g, calls.gt, calls.miss_ptr, calls.miss_idx

    def left(self, y: np.ndarray) -> np.ndarray:
        """Z' Y (M x b) for Y (n_s x b), float64."""
        return self.left_rows(self.left_input(y), slice(0, self.shape[0]))

    def right(self, u: np.ndarray) -> np.ndarray:
        """Z U (n_s x b) for U (M x b), float64."""
        return self.right_rows(u, slice(0, self.shape[0]))

    def left_input(self, y: np.ndarray):
        """Y (n_s x b) prepared once for ``left_rows``: float32 (SGEMM); or the digits and scales of its
        quantised columns (VNNI) or Y itself (tables), with its column sums and a float32 copy for the
        missing calls."""
        if self.kernel == "float":
            return np.asarray(y, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.float64)
        digits, scale = quantise(y, digits=self.digits) if self.int8 else (y, np.ones(y.shape[1]))
        return digits, scale, y.sum(axis=0), _padded32(y)

    def left_rows(self, prep, rows: slice) -> np.ndarray:
        """Rows ``rows`` (a range of variants) of Z' Y, float64, from ``left_input(Y)``."""
        if self.kernel == "float":
            return (self.zt[rows] @ prep).astype(np.float64)
        digits, scale, colsum, y32 = prep
        lo, hi, _ = rows.indices(self.shape[0])
        if self.int8:
            acc = vnni.matmul_u8s8(self.g[lo:hi], digits)
        else:  # G Y as float32, one 'digit' at scale 1
            acc = call_tables.product(self.g, digits, slice(lo, hi))[:, :scale.size]
        miss = sparse_rows.gather_rows(y32, self.miss_ptr[lo:hi + 1], self.miss_idx)
        out = np.empty((hi - lo, scale.size))
        _left_combine(acc, scale, self.s[lo:hi], self.mu[lo:hi], colsum, miss, out)
        return out

    def right_rows(self, u: np.ndarray, rows: slice) -> np.ndarray:
        """Z[:, rows] U (n_s x b) for the rows ``rows`` of U (u: (len(rows), b)), float64: the products of
        the ranges of a partition of the variants add up to ``right(U)`` (each range quantised on its own)."""
        lo, hi, _ = rows.indices(self.shape[0])
        if self.kernel == "float":
            return (np.asarray(u, dtype=np.float32).T @ self.zt[lo:hi]).T.astype(np.float64)
        u = np.ascontiguousarray(u, dtype=np.float64)
        if self.int8:
            digits, scale = quantise(u, self.s[lo:hi], self.digits)
            acc = vnni.matmul_u8s8(self.gt[:, lo:hi], digits)
        else:
            scale = np.ones(u.shape[1])
            acc = call_tables.product(self.gt, self.s[lo:hi, None] * u, start=lo)[:, :u.shape[1]]
        miss = np.zeros((self.shape[1], sparse_rows.padded_width(u.shape[1])), dtype=np.float32)
        sparse_rows.scatter_rows(_padded32(u, self.mu[lo:hi]), self.miss_ptr[lo:hi + 1], self.miss_idx, miss)
        out = np.empty((self.shape[1], u.shape[1]))
        _right_combine(acc, scale, self.mu[lo:hi] @ u, miss, out)
        return out
