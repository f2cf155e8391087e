"""A site's local statistics: per-variant sums over its own individuals, computed in plaintext at PLINK speed.

Genotype counts and the sums a regression needs (``g'g``, ``g'y``, ``X'g`` per variant;
``X'X``, ``X'y``, ``y'y`` globally; and, for PLINK 2 --glm's per-variant drop of
samples with a missing call, the sums of ``x x'``, ``x y`` and ``y^2`` over each
variant's missing samples) are what a site contributes to a joint analysis.

Genotypes come as an int8 dosage matrix ``G`` of shape ``(m, n)`` (0/1/2, -1 missing)
or as a :class:`~cipherome.genomics.io.blocks.GenotypeBlock`, whose packed two-bit codes
are then used directly (a .bed block is never decoded). :func:`variant_sums` also takes
imputed dosages, a float ``(m, n)`` matrix in [0, 2] with NaN missing (plink2 --glm
regresses on dosages where the file has them); its sums are then dense products. Samples outside ``sample_mask``
(e.g. missing phenotype or covariates, as PLINK drops them) count nowhere.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cipherome.genomics.io.blocks import GenotypeBlock
from cipherome.genomics.local.lut import count_codes, missing_row_sums, pad_rows, weighted_code_sums
from cipherome.genomics.io.packed import PackedCalls, pack_dosage, packed_width
from cipherome.mpc.kernels import unpack_upper

__all__ = [
    "HOM_REF", "HET", "HOM_ALT", "MISSING",
    "genotype_counts", "group_genotype_counts", "dosage_sums", "case_control_counts",
    "CovariateSums", "VariantSums", "SiteDesign", "covariate_sums", "variant_sums",
    "packed_upper", "unpack_upper", "concat_variant_sums",
]

#: Column indices of the count arrays.
HOM_REF, HET, HOM_ALT, MISSING = 0, 1, 2, 3


def _packed_and_n(G: np.ndarray | GenotypeBlock | PackedCalls) -> tuple[np.ndarray, int]:
    if isinstance(G, (GenotypeBlock, PackedCalls)):
        return G.packed, G.n_samples
    g = np.asarray(G)
    if g.ndim != 2:
        raise ValueError(f"G must be 2-D (variants, samples), got shape {g.shape}")
    return pack_dosage(g), g.shape[1]


def _mask(sample_mask: np.ndarray | None, n: int) -> np.ndarray:
    if sample_mask is None:
        return np.ones(n, dtype=bool)
    mk = np.asarray(sample_mask, dtype=bool)
    if mk.shape != (n,):
        raise ValueError(f"sample_mask has shape {mk.shape}, expected ({n},)")
    return mk


def genotype_counts(G: np.ndarray | GenotypeBlock, sample_mask: np.ndarray | None = None) -> np.ndarray:
    """Per-variant genotype counts over the samples in ``sample_mask``.

    G: ``(m, n)`` int8 dosage or a GenotypeBlock; sample_mask: ``(n,)`` bool or None.
    Returns ``(m, 4)`` int64 columns HOM_REF, HET, HOM_ALT, MISSING.
    """
    packed, n = _packed_and_n(G)
    return count_codes(packed, _mask(sample_mask, n)[None, :])[:, 0, :]


def group_genotype_counts(G: np.ndarray | GenotypeBlock, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Genotype counts per variant within each sample group.

    groups: ``(n,)`` int, group index in ``[0, n_groups)`` or -1 (sample counted nowhere).
    Returns ``(m, n_groups, 4)`` int64 (HOM_REF, HET, HOM_ALT, MISSING).
    """
    packed, n = _packed_and_n(G)
    gr = np.asarray(groups)
    if gr.shape != (n,):
        raise ValueError(f"groups has shape {gr.shape}, expected ({n},)")
    return count_codes(packed, gr[None, :] == np.arange(n_groups)[:, None])


def dosage_sums(D: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per variant and sample group: the number of samples with a dosage and the sum of their dosages.

    D: ``(m, n)`` float ALT dosages, NaN missing; groups: ``(n,)`` int in ``[0, n_groups)``
    or -1 (counted nowhere). Returns ``(m, n_groups, 2)`` float64 (count, sum); the
    counts are whole numbers.
    """
    d = np.asarray(D)
    gr = np.asarray(groups)
    if d.ndim != 2 or gr.shape != (d.shape[1],):
        raise ValueError(f"dosage shape {d.shape} and groups shape {gr.shape} do not match")
    onehot = (gr[:, None] == np.arange(n_groups)[None, :]).astype(d.dtype)
    called = ~np.isnan(d)
    obs = called.astype(d.dtype) @ onehot
    tot = np.where(called, d, 0).astype(np.float64) @ onehot.astype(np.float64)
    return np.stack([obs.astype(np.float64), tot], axis=2)


def case_control_counts(G: np.ndarray | GenotypeBlock, is_case: np.ndarray,
                        sample_mask: np.ndarray | None = None) -> np.ndarray:
    """Genotype counts split by status: ``(m, 2, 4)`` int64, ``[:, 0]`` controls, ``[:, 1]`` cases.

    is_case: ``(n,)`` bool; samples outside ``sample_mask`` count in neither group.
    """
    packed, n = _packed_and_n(G)
    case = np.asarray(is_case, dtype=bool)
    mk = _mask(sample_mask, n)
    if case.shape != (n,):
        raise ValueError(f"is_case has shape {case.shape}, expected ({n},)")
    return count_codes(packed, np.stack([mk & ~case, mk & case]))


def packed_upper(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle (diagonal included) of a k x k matrix, row-major.

    ``A[packed_upper(k)]`` is the packed form used by :class:`VariantSums` (length k(k+1)/2).
    """
    return np.triu_indices(k)


class CovariateSums(NamedTuple):
    """Sums over the included samples that do not depend on a variant.

    n: int; xtx: ``(k, k)`` float64 X'X; xty: ``(k,)`` float64 X'y; yty: float y'y.
    """

    n: int
    xtx: np.ndarray
    xty: np.ndarray
    yty: float


class VariantSums(NamedTuple):
    """Per-variant sums for a regression with PLINK 2's per-variant drop of missing calls.

    For variant j, S_j are the included samples with a call and M_j those without one:

    - ``n_obs`` ``(m,)`` int64: |S_j|;
    - ``sum_g``, ``sum_gg``, ``sum_gy`` ``(m,)`` float64: sums over S_j of g, g^2, g*y;
    - ``xtg`` ``(m, k)`` float64: X_S' g;
    - ``miss_n`` ``(m,)`` int64: |M_j|;
    - ``miss_xx`` ``(m, k(k+1)/2)`` float64: sum over M_j of x x', packed upper triangle
      (:func:`packed_upper` order);
    - ``miss_xy`` ``(m, k)`` float64: sum over M_j of x * y;
    - ``miss_yy`` ``(m,)`` float64: sum over M_j of y^2.

    With the global :class:`CovariateSums`, X_S'X_S = X'X - unpack(miss_xx), and so on.
    """

    n_obs: np.ndarray
    sum_g: np.ndarray
    sum_gg: np.ndarray
    sum_gy: np.ndarray
    xtg: np.ndarray
    miss_n: np.ndarray
    miss_xx: np.ndarray
    miss_xy: np.ndarray
    miss_yy: np.ndarray


def concat_variant_sums(parts: list[VariantSums]) -> VariantSums:
    """Concatenate per-block :class:`VariantSums` along the variant axis."""
    return VariantSums(*(np.concatenate([getattr(p, f) for p in parts]) for f in VariantSums._fields))


class SiteDesign:
    """A site's covariates and phenotype, prepared once for :func:`variant_sums` over many blocks.

    X: ``(n, k)`` float64 covariates, intercept column included by the caller; y:
    ``(n,)`` float64; sample_mask: ``(n,)`` bool (None: all). Included samples must
    have finite X and y (excluded ones may hold NaN). Attributes: ``mask``, ``X``,
    ``y`` (zeros outside the mask), ``k``, ``n``, ``sums`` (:class:`CovariateSums`).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, sample_mask: np.ndarray | None = None):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"X must be (n, k) and y (n,), got {X.shape} and {y.shape}")
        n, k = X.shape
        mk = _mask(sample_mask, n)
        if not (np.isfinite(X[mk]).all() and np.isfinite(y[mk]).all()):
            raise ValueError("X and y must be finite for every sample in sample_mask")
        self.n, self.k, self.mask = n, k, mk
        self.X = np.where(mk[:, None], X, 0.0)
        self.y = np.where(mk, y, 0.0)
        # Columns for the table sums: the X columns that are not all ones (an intercept's
        # X'g is sum_g, known from the counts), then y; the dosage weights them.
        self._ones = np.array([bool(np.all(self.X[mk, c] == 1.0)) for c in range(k)], dtype=bool)
        self._weights = np.concatenate([self.X[:, ~self._ones], self.y[:, None]], axis=1)
        iu, ju = packed_upper(k)
        # Per-sample row added for each missing call: x x' (packed), x y, y^2.
        self._miss_rows = np.concatenate(
            [self.X[:, iu] * self.X[:, ju], self.X * self.y[:, None], (self.y * self.y)[:, None]], axis=1)
        Xm, ym = self.X[mk], self.y[mk]
        self.sums = CovariateSums(int(mk.sum()), Xm.T @ Xm, Xm.T @ ym, float(ym @ ym))
        # kernel layouts (zero-padded rows and columns), made once instead of per block
        w = packed_width(n)
        self._weights_padded = pad_rows(self._weights, w)
        self._miss_rows_padded = pad_rows(self._miss_rows, w)


def covariate_sums(X: np.ndarray, y: np.ndarray, sample_mask: np.ndarray | None = None) -> CovariateSums:
    """X'X ``(k, k)``, X'y ``(k,)``, y'y and n over the samples in ``sample_mask``."""
    return SiteDesign(X, y, sample_mask).sums


def variant_sums(G: np.ndarray | GenotypeBlock, design: SiteDesign,
                 counts: np.ndarray | None = None) -> VariantSums:
    """Per-variant regression sums of a block (see :class:`VariantSums`).

    G: ``(m, n)`` int8 dosage or a GenotypeBlock; design: the site's
    :class:`SiteDesign`; counts: optional ``(m, 4)`` :func:`genotype_counts` of the
    same block and mask (computed if not given). X_S'g and g'y come from byte lookup
    tables over the packed codes; the missing-sample corrections iterate over the
    missing calls only.
    """
    if isinstance(G, np.ndarray) and G.dtype.kind == "f":
        return _dosage_variant_sums(G, design)
    packed, n = _packed_and_n(G)
    if n != design.n:
        raise ValueError(f"genotypes have {n} samples, the design {design.n}")
    if counts is None:
        counts = count_codes(packed, design.mask[None, :])[:, 0, :]
    het = counts[:, HET].astype(np.float64)
    alt = counts[:, HOM_ALT].astype(np.float64)
    k = design.k
    s = weighted_code_sums(packed, design._weights_padded)[:, :design._weights.shape[1]]
    sum_g = het + 2.0 * alt
    xtg = np.empty((packed.shape[0], k))
    xtg[:, ~design._ones] = s[:, :-1]
    xtg[:, design._ones] = sum_g[:, None]
    miss, miss_n = missing_row_sums(packed, design.mask, design._miss_rows_padded)
    nk = k * (k + 1) // 2
    return VariantSums(
        n_obs=design.sums.n - counts[:, MISSING],
        sum_g=sum_g,
        sum_gg=het + 4.0 * alt,
        sum_gy=s[:, -1],
        xtg=xtg,
        miss_n=miss_n,
        miss_xx=miss[:, :nk],
        miss_xy=miss[:, nk:nk + k],
        miss_yy=miss[:, nk + k],
    )


def _dosage_variant_sums(D: np.ndarray, design: SiteDesign) -> VariantSums:
    """:func:`variant_sums` of float dosages ``(m, n)`` (NaN missing): the same sums as dense products.

    S_j are the included samples with a dosage for variant j, M_j the included ones without.
    """
    if D.ndim != 2 or D.shape[1] != design.n:
        raise ValueError(f"dosages have shape {D.shape}, the design {design.n} samples")
    called = ~np.isnan(D) & design.mask[None, :]
    g = np.where(called, D, 0.0).astype(np.float64)
    missing = (design.mask[None, :] & ~called).astype(np.float64)
    miss = missing @ design._miss_rows
    k = design.k
    nk = k * (k + 1) // 2
    return VariantSums(
        n_obs=called.sum(axis=1).astype(np.int64),
        sum_g=g.sum(axis=1),
        sum_gg=np.einsum("ij,ij->i", g, g),
        sum_gy=g @ design.y,
        xtg=g @ design.X,
        miss_n=missing.sum(axis=1).astype(np.int64),
        miss_xx=miss[:, :nk],
        miss_xy=miss[:, nk:nk + k],
        miss_yy=miss[:, nk + k],
    )
