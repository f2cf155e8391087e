"""Deterministic variant thinning for the PCA: a subset chosen from public data only.

Every site and every rerun must pick the same variants, so the subset depends on
the public QC pass set and positions alone: evenly spaced ranks (``--thin-count``
made deterministic) or PLINK 2's ``--bp-space`` rule.
"""
from __future__ import annotations

import numpy as np

__all__ = ["thin_by_count", "thin_by_distance"]


def thin_by_count(n_target: int, keep: np.ndarray) -> np.ndarray:
    """Indices ``(<= n_target,)`` int64 of evenly spaced variants among those with ``keep``.

    ``keep`` ``(m,)`` bool (e.g. the QC pass set, variants sorted by chromosome and
    position).  Picks rank floor((i + 1/2) m' / n_target) of the m' kept variants for
    i = 0..n_target-1: a deterministic function of public data only, so every site
    and every rerun uses the same subset (random ``--thin-count`` would not).
    """
    idx = np.flatnonzero(np.asarray(keep, dtype=bool))
    if n_target >= idx.size:
        return idx.astype(np.int64)
    ranks = ((np.arange(n_target) + 0.5) * idx.size / n_target).astype(np.int64)
    return idx[ranks].astype(np.int64)


def thin_by_distance(
    chrom: np.ndarray, pos: np.ndarray, min_bp: int, keep: np.ndarray | None = None
) -> np.ndarray:
    """Indices (int64) of variants kept by ``plink2 --bp-space min_bp``, among ``keep``.

    Left to right within each chromosome, a variant is kept when it lies at least
    ``min_bp`` bp after the last kept one (variants sorted by position per chromosome).
    """
    chrom = np.asarray(chrom)
    pos = np.asarray(pos, dtype=np.int64)
    cand = np.arange(pos.size) if keep is None else np.flatnonzero(np.asarray(keep, bool))
    out = []
    last_chrom = None
    last_pos = 0
    for j in cand:
        c = chrom[j]
        if c != last_chrom or pos[j] - last_pos >= min_bp:
            out.append(j)
            last_chrom, last_pos = c, pos[j]
    return np.asarray(out, dtype=np.int64)
