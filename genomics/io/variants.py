"""Variant keys and harmonisation: normalised ``chrom:pos:ref:alt`` keys, allele swaps, strand-ambiguous SNPs.

Keys name variants; they do not leave a site in the clear: the GWAS finds the
study's common variants by a secure intersection of keyed hashes
(``genomics.gwas.variants``), filtering by keyed hashed tables (``genomics.filtering.keys``).

Normalisation covers naming only: the ``chr`` prefix is dropped from chromosome codes,
``M``/``MT``/``chrM`` become ``MT``, PLINK's numeric codes 23/24/25/26 become ``X``/``Y``/``XY``/``MT``,
alleles are upper-cased. Indels are not left-aligned or trimmed: run
``bcftools norm -f ref.fa`` before if the sites' callers differ.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "normalize_chrom", "normalize_chroms", "variant_keys", "parse_key", "chrom_order",
    "strand_ambiguous", "match_variants", "intersect_keys", "sort_keys", "flip_dosage",
]

_CODES = {"23": "X", "24": "Y", "25": "XY", "26": "MT", "M": "MT", "MT": "MT"}
_COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}


def normalize_chrom(chrom: str) -> str:
    """``chr1``/``CHR1``/``1`` -> ``1``; ``chrX``/``23`` -> ``X``; ``chrM``/``M``/``26`` -> ``MT``.

    As in PLINK 2's output, only chromosome codes are rewritten; other contig names
    (``chrUn_gl000220``, ``HLA-A``) are kept as they are.
    """
    orig = str(chrom).strip()
    c = orig[3:] if orig[:3].lower() == "chr" else orig
    u = c.upper()
    if u in _CODES:
        return _CODES[u]
    if u in ("X", "Y", "XY"):
        return u
    if c.isdigit():
        return str(int(c))
    return orig


def normalize_chroms(chroms: Sequence[str] | np.ndarray) -> np.ndarray:
    """Vectorised :func:`normalize_chrom` (``(m,)`` -> ``(m,)`` object array), once per distinct name."""
    names = chroms.tolist() if isinstance(chroms, np.ndarray) else list(chroms)
    table = {c: normalize_chrom(c) for c in set(names)}
    out = np.empty(len(names), dtype=object)
    out[:] = [table[c] for c in names]
    return out


def variant_keys(chrom: Sequence[str] | np.ndarray, pos: Sequence[int] | np.ndarray,
                 ref: Sequence[str] | np.ndarray, alt: Sequence[str] | np.ndarray) -> np.ndarray:
    """Normalised keys ``chrom:pos:REF:ALT``, ``(m,)`` object array of str."""
    ch = normalize_chroms(chrom)
    return np.array([f"{c}:{int(p)}:{str(r).upper()}:{str(a).upper()}"
                     for c, p, r, a in zip(ch, pos, ref, alt, strict=True)], dtype=object)


def parse_key(key: str) -> tuple[str, int, str, str]:
    """``"1:100:A:G"`` -> ``("1", 100, "A", "G")``."""
    chrom, pos, ref, alt = key.rsplit(":", 3)
    return chrom, int(pos), ref, alt


def chrom_order(chrom: str) -> tuple[int, str]:
    """Sort key: 1..22 numerically, then X, Y, XY, MT, then other names alphabetically."""
    if chrom.isdigit():
        return (int(chrom), "")
    special = {"X": 23, "Y": 24, "XY": 25, "MT": 26}
    return (special.get(chrom, 1000), chrom)


def sort_keys(keys: Sequence[str] | np.ndarray) -> np.ndarray:
    """Keys in genome order (chromosome, position, REF, ALT)."""
    def order(k: str):
        c, p, r, a = parse_key(k)
        return (chrom_order(c), p, r, a)

    return np.array(sorted(keys, key=order), dtype=object)


def strand_ambiguous(ref: Sequence[str] | np.ndarray, alt: Sequence[str] | np.ndarray) -> np.ndarray:
    """``(m,)`` bool: SNPs whose alleles are complementary (A/T, C/G), so a strand flip cannot be seen."""
    return np.array([len(r) == 1 and len(a) == 1 and _COMPLEMENT.get(str(r).upper()) == str(a).upper()
                     for r, a in zip(ref, alt, strict=True)], dtype=bool)


def match_variants(site_keys: Sequence[str] | np.ndarray,
                   target_keys: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Locate each target key among a site's keys, allowing swapped REF/ALT.

    Returns ``index`` ``(t,)`` int64 (row in ``site_keys``, -1 if absent) and ``flip``
    ``(t,)`` bool (True where the site has the key as ``chrom:pos:ALT:REF``: its
    dosage must become ``2 - g``, see :func:`flip_dosage`). An exact match wins over a
    swapped one. Both lists must already be normalised (:func:`variant_keys`).
    """
    pos: dict[str, int] = {}
    for i, k in enumerate(site_keys):
        pos.setdefault(k, i)
    t = len(target_keys)
    index = np.full(t, -1, dtype=np.int64)
    flip = np.zeros(t, dtype=bool)
    for j, k in enumerate(target_keys):
        i = pos.get(k)
        if i is not None:
            index[j] = i
            continue
        c, p, r, a = parse_key(k)
        i = pos.get(f"{c}:{p}:{a}:{r}")
        if i is not None:
            index[j] = i
            flip[j] = True
    return index, flip


def intersect_keys(*key_lists: Sequence[str] | np.ndarray, allow_swap: bool = True) -> np.ndarray:
    """Keys present at every site, in genome order, written as in the first list.

    With ``allow_swap`` a key also counts as present where a site has REF and ALT
    exchanged (each site then flips with :func:`match_variants`). Strand-ambiguous
    SNPs are kept; drop them with :func:`strand_ambiguous` if the sites may differ in
    strand. The result is disclosed to every site of the study (module docstring).
    """
    if not key_lists:
        return np.array([], dtype=object)

    def canon(k: str) -> str:
        if not allow_swap:
            return k
        c, p, r, a = parse_key(k)
        return f"{c}:{p}:{min(r, a)}:{max(r, a)}"

    first = {canon(k): k for k in key_lists[0]}
    common = set(first)
    for keys in key_lists[1:]:
        common &= {canon(k) for k in keys}
    return sort_keys([first[c] for c in common])


def flip_dosage(G: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Dosage with REF/ALT exchanged in the rows where ``flip`` is True: g -> 2 - g, -1 stays -1.

    G: ``(m, n)`` int8; flip: ``(m,)`` bool. Returns a new ``(m, n)`` int8 array.
    (For packed codes use :func:`cipherome.genomics.io.packed.swap_alleles`.)
    """
    g = np.asarray(G, dtype=np.int8)
    f = np.asarray(flip, dtype=bool)
    out = g.copy()
    rows = out[f]
    out[f] = np.where(rows < 0, rows, 2 - rows)
    return out
