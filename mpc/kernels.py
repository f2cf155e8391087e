"""Numba kernels for ring arithmetic that numpy cannot do fast: products modulo 2^64, and fixed-point encoding in one pass.

numpy's integer ``@`` has no BLAS path (about 1.2 s for 1000x1000x1000 here);
these loops compile to vectorised machine code (about 0.3 s on one core). They
release the GIL so that parties running as threads of one process use all cores.
"""
from __future__ import annotations

import numpy as np
from cipherome.mpc.jit import njit

__all__ = ["ring_matmul", "ring_matmul_tn", "ring_matmul_sym", "beaver_combine", "trunc_combine", "fixed_point",
           "pack_upper", "unpack_upper", "low_bytes", "add_low_bytes"]


@njit(cache=True, nogil=True)
def _fixed_point(x, scale, limit, out):  # pragma: no cover - compiled
    """out[i] = rint(x[i] * scale) as int64; False (out partly written) if some |x[i] * scale| >= limit or NaN."""
    for i in range(x.size):
        v = np.rint(x[i] * scale)
        if not abs(v) < limit:
            return False
        out[i] = np.int64(v)
    return True


def fixed_point(x: np.ndarray, scale: float, limit: float) -> np.ndarray | None:
    """round(x * scale) (half to even, as ``np.rint``) as int64 of x's shape in one pass over float64 ``x``;
    None if a value is not finite or not below ``limit`` in magnitude (``ring.encode``: 6 numpy passes and
    their temporaries took 0.3-0.5 s for 13.7 M values, this pass 0.016 s)."""
    flat = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    out = np.empty(flat.size, dtype=np.int64)
    if not _fixed_point(flat, float(scale), float(limit), out):
        return None
    return out.reshape(np.shape(x))


@njit(cache=True, nogil=True)
def _matmul2d(a, b, out, a_transposed):  # pragma: no cover - compiled
    """out += a @ b (or a.T @ b when ``a_transposed``) modulo 2^64.

    a is read row by row in memory order either way: its element a[i, p] adds
    a[i, p] * b[p, :] to out[i, :] (a @ b) or a[i, p] * b[i, :] to out[p, :] (a.T @ b),
    so a.T is never copied and the inner loop runs over contiguous rows of b and out.
    """
    n, k = a.shape
    m = b.shape[1]
    for i in range(n):
        for p in range(k):
            aip = a[i, p]
            if aip == 0:
                continue
            o, r = (p, i) if a_transposed else (i, p)
            for j in range(m):
                out[o, j] += aip * b[r, j]


@njit(cache=True, nogil=True)
def _matmul3d(a, b, out):  # pragma: no cover - compiled
    for t in range(a.shape[0]):
        _matmul2d(a[t], b[t], out[t], False)


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product modulo 2^64 of uint64 arrays.

    a: (p, q) and b: (q, r) -> (p, r); or batched a: (t, p, q), b: (t, q, r) -> (t, p, r).
    Vectors are promoted as numpy's ``@`` does (a (q,) operand counts as a row/column).
    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    squeeze_a = a.ndim == 1
    squeeze_b = b.ndim == 1
    if squeeze_a:
        a = a[None, :]
    if squeeze_b:
        b = b[:, None]
    if a.ndim != b.ndim or a.ndim not in (2, 3) or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"ring_matmul: incompatible shapes {a.shape} and {b.shape}")
    if a.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"ring_matmul: batch sizes differ {a.shape} and {b.shape}")
    out = np.zeros(a.shape[:-1] + b.shape[-1:], dtype=np.uint64)
    if out.size and a.shape[-1]:
        a = np.ascontiguousarray(a)
        b = np.ascontiguousarray(b)
        _matmul2d(a, b, out, False) if a.ndim == 2 else _matmul3d(a, b, out)
    if squeeze_a:
        out = out[..., 0, :]
    if squeeze_b:
        out = out[..., 0]
    return out


@njit(cache=True, nogil=True)
def _matmul_sym(a, s, out):  # pragma: no cover - compiled
    """out[t] = a[t] @ S_t modulo 2^64, S_t the symmetric matrix of the upper triangle s[t] (unpacked in cache)."""
    k = a.shape[2]
    full = np.empty((k, k), dtype=np.uint64)
    for t in range(a.shape[0]):
        _triangles(full.reshape(1, k, k), s[t:t + 1], False)
        _matmul2d(a[t], full, out[t], False)


def ring_matmul_sym(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """a @ S modulo 2^64 for a batch of symmetric S given as upper triangles (``pack_upper``'s order).

    a: (t, p, k), s: (t, k(k+1)/2) -> (t, p, k). Each S is unpacked into a k x k scratch that stays in
    cache, so the (t, k, k) matrices never exist (at t = 80,000 and k = 23 that saves 338 MB per operand).
    """
    a = np.ascontiguousarray(a, dtype=np.uint64)
    s = np.ascontiguousarray(s, dtype=np.uint64)
    if a.ndim != 3 or s.ndim != 2 or s.shape[0] != a.shape[0] or s.shape[1] != a.shape[2] * (a.shape[2] + 1) // 2:
        raise ValueError(f"ring_matmul_sym: incompatible shapes {a.shape} and packed {s.shape}")
    out = np.zeros(a.shape, dtype=np.uint64)
    if out.size:
        _matmul_sym(a, s, out)
    return out


def ring_matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a.T @ b modulo 2^64 for uint64 a (r, c) and b (r, L), without copying a.T."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    b = np.ascontiguousarray(b, dtype=np.uint64)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"ring_matmul_tn: incompatible shapes {a.shape} and {b.shape}")
    out = np.zeros((a.shape[1], b.shape[1]), dtype=np.uint64)
    if out.size and a.shape[0]:
        _matmul2d(a, b, out, True)
    return out


@njit(cache=True, nogil=True)
def _beaver_combine(c, a, b, e, f, lead, out):  # pragma: no cover - compiled
    for i in range(out.size):
        z = c[i] + e[i] * b[i] + a[i] * f[i]
        if lead:
            z += e[i] * f[i]
        out[i] = z


def beaver_combine(c, a, b, e, f, lead: bool) -> np.ndarray:
    """z = c + e*b + a*f (+ e*f on the lead), elementwise mod 2^64, in one pass."""
    shape = np.shape(c)
    args = [np.ascontiguousarray(v, dtype=np.uint64).ravel() for v in (c, a, b, e, f)]
    out = np.empty(args[0].size, dtype=np.uint64)
    _beaver_combine(*args, bool(lead), out)
    return out.reshape(shape)


@njit(cache=True, nogil=True)
def _trunc_combine(c, r_msb, r_low, bits, lead, out):  # pragma: no cover - compiled
    one = np.uint64(1)
    low63 = np.uint64((1 << 63) - 1)
    s63 = np.uint64(63)
    sw = np.uint64(63 - bits)
    sb = np.uint64(bits)
    offset = np.uint64(1) << np.uint64(62 - bits)
    for i in range(out.size):
        cm = c[i] >> s63
        w = (one - np.uint64(2) * cm) * r_msb[i]
        if lead:
            w += cm
        z = (w << sw) - r_low[i]
        if lead:
            z += ((c[i] & low63) >> sb) - offset
        out[i] = z


def trunc_combine(c, r_msb, r_low, bits: int, lead: bool) -> np.ndarray:
    """The local step of ``protocols.truncate`` (see its docstring), in one pass."""
    shape = np.shape(c)
    args = [np.ascontiguousarray(v, dtype=np.uint64).ravel() for v in (c, r_msb, r_low)]
    out = np.empty(args[0].size, dtype=np.uint64)
    _trunc_combine(*args, int(bits), bool(lead), out)
    return out.reshape(shape)


@njit(cache=True, nogil=True)
def _triangles(full, packed, pack):  # pragma: no cover - compiled
    """pack: packed[j] = upper triangle of full[j] (row-major); else full[j] = the symmetric matrix of packed[j]."""
    k = full.shape[1]
    for j in range(full.shape[0]):
        p = 0
        for a in range(k):
            for b in range(a, k):
                if pack:
                    packed[j, p] = full[j, a, b]
                else:
                    full[j, a, b] = packed[j, p]
                    full[j, b, a] = packed[j, p]
                p += 1


def pack_upper(x: np.ndarray) -> np.ndarray:
    """The upper triangles (diagonal included, row-major: ``np.triu_indices`` order) of ``x`` (..., k, k), as
    (..., k(k+1)/2), in one compiled pass (numpy's fancy-index gather is several times slower at 10^5 matrices)."""
    x = np.asarray(x)
    k = x.shape[-1]
    out = np.empty(x.shape[:-2] + (k * (k + 1) // 2,), dtype=x.dtype)
    _triangles(np.ascontiguousarray(x).reshape(-1, k, k), out.reshape(-1, out.shape[-1]), True)
    return out


def unpack_upper(packed: np.ndarray, k: int) -> np.ndarray:
    """Symmetric (..., k, k) matrices from their upper triangles (..., k(k+1)/2) (``pack_upper``'s order)."""
    packed = np.ascontiguousarray(packed)
    if packed.shape[-1] != k * (k + 1) // 2:
        raise ValueError(f"packed upper triangles of {k} x {k} matrices have {k * (k + 1) // 2} elements, "
                         f"not {packed.shape[-1]}")
    out = np.empty(packed.shape[:-1] + (k, k), dtype=packed.dtype)
    _triangles(out.reshape(-1, k, k), packed.reshape(-1, packed.shape[-1]), False)
    return out


@njit(cache=True, nogil=True)
def _low_bytes(flat, nb, out):  # pragma: no cover - compiled
    for i in range(flat.size):
        v = flat[i]
        for k in range(nb):
            out[i * nb + k] = np.uint8(v & np.uint64(255))
            v >>= np.uint64(8)


def low_bytes(flat: np.ndarray, nb: int) -> np.ndarray:
    """The low ``nb`` bytes of every uint64 of ``flat`` (little-endian), as a flat uint8 array of nb * size bytes
    (an opening of values below 2^(8 nb); numpy's strided copy of the (size, 8) byte view took 11 ms for
    1.9 M values, this 2-4 ms)."""
    flat = np.ascontiguousarray(flat, dtype=np.uint64).reshape(-1)
    if nb in (1, 2, 4):
        return flat.astype(f"<u{nb}").view(np.uint8)
    out = np.empty(flat.size * nb, dtype=np.uint8)
    _low_bytes(flat, nb, out)
    return out


@njit(cache=True, nogil=True)
def _add_low_bytes(total, raw, nb, xor):  # pragma: no cover - compiled
    for i in range(total.size):
        v = np.uint64(0)
        for k in range(nb):
            v |= np.uint64(raw[i * nb + k]) << np.uint64(8 * k)
        if xor:
            total[i] ^= v
        else:
            total[i] += v


def add_low_bytes(total: np.ndarray, raw: np.ndarray, nb: int, xor: bool = False) -> None:
    """total (uint64, flat, in place) += (or ^=) the values whose low ``nb`` bytes are ``raw`` (``low_bytes``'s
    layout; the high bytes zero), in one pass (widening to a new uint64 array first took 10-17 ms for
    1.9 M values)."""
    if raw.size != total.size * nb:
        raise ValueError(f"add_low_bytes: {raw.size} bytes for {total.size} values of {nb} bytes")
    if nb in (1, 2, 4):
        low = np.asarray(raw).reshape(-1).view(f"<u{nb}")
        if xor:
            np.bitwise_xor(total, low, out=total, casting="unsafe")
        else:
            np.add(total, low, out=total, casting="unsafe")
        return
    _add_low_bytes(total, np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1), int(nb), bool(xor))
