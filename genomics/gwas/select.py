"""Which variants and samples a GWAS looks at: plink2's --extract/--exclude/--chr/--from-bp/--to-bp and a site's keep/remove lists.

Variant selection is public (part of the job's parameters) and applied by every site to
its own variant table before the common variants are agreed, so a variant enters the
study only if every site selects it; on the pooled data this is plink2's selection
when the sites name variants alike. Sample lists are a site's own (its config's
``keep = FILE`` / ``remove = FILE``) and never leave it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cipherome.genomics.errors import InputError, read_text
from cipherome.genomics.io.blocks import SampleTable, VariantTable
from cipherome.genomics.io.variants import normalize_chroms

__all__ = ["parse_chr_list", "read_id_list", "select_variants", "read_sample_list", "sample_selection"]


def parse_chr_list(text: str) -> list[str]:
    """plink2 ``--chr`` list: comma-separated names and numeric ranges (``1-4,X``), normalised."""
    out: list[str] = []
    for part in (p.strip() for p in text.replace(" ", ",").split(",")):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()) or int(a) > int(b):
                raise InputError(f"--chr: {part!r} is not a range of chromosome numbers (e.g. 1-22)",
                                 kind='--chr has an invalid chromosome range')
            out += [str(i) for i in range(int(a), int(b) + 1)]
        else:
            out.append(part)
    if not out:
        raise InputError("--chr: no chromosome given",
                         kind='--chr names no chromosome')
    return [str(c) for c in normalize_chroms(np.array(out, dtype=object))]


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """Variant IDs, the first word of each non-empty line (plink2 --extract/--exclude files)."""
    path = Path(path)
    text = read_text(path, "cannot read the variant ID list", "cannot read a variant ID list")
    return [ln.split()[0] for ln in text.splitlines() if ln.strip()]


def select_variants(v: VariantTable, extract: list[str] | None = None, exclude: list[str] | None = None,
                    chroms: list[str] | None = None, from_bp: int | None = None, to_bp: int | None = None) -> np.ndarray:
    """(m,) bool: the rows plink2 keeps with the same flags (IDs match exactly; bp bounds inclusive)."""
    keep = np.ones(len(v), dtype=bool)
    ids = np.asarray(v.id, dtype=object)
    if extract is not None:
        keep &= np.isin(ids, np.array(list(extract), dtype=object))
    if exclude is not None:
        keep &= ~np.isin(ids, np.array(list(exclude), dtype=object))
    if chroms is not None:
        keep &= np.isin(normalize_chroms(v.chrom), np.array(chroms, dtype=object))
    if from_bp is not None:
        keep &= v.pos >= int(from_bp)
    if to_bp is not None:
        keep &= v.pos <= int(to_bp)
    return keep


def read_sample_list(path: str | os.PathLike[str]) -> tuple[set, set]:
    """A plink2 sample list (``FID IID`` or ``IID`` per line, optional ``#`` header): ({(fid, iid)}, {iid})."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read the sample list ({e.strerror})",
                         kind='cannot read its sample list (keep/remove)') from None
    pairs, iids = set(), set()
    for ln in lines:
        f = ln.split()
        if not f or f[0].startswith("#"):
            continue
        if len(f) >= 2:
            pairs.add((f[0], f[1]))
        else:
            iids.add(f[0])
    return pairs, iids


def sample_selection(samples: SampleTable, keep: str | os.PathLike[str] | None = None,
                     remove: str | os.PathLike[str] | None = None) -> np.ndarray:
    """(n,) bool: the site's samples kept by its ``keep``/``remove`` lists (FID+IID, or IID alone)."""
    fids = samples.fid if samples.fid is not None else samples.iid

    def listed(path) -> np.ndarray:
        pairs, iids = read_sample_list(path)
        return np.array([(f, i) in pairs or i in iids for f, i in zip(fids.tolist(), samples.iid.tolist())], bool)

    out = np.ones(len(samples), dtype=bool)
    if keep is not None:
        out &= listed(keep)
    if remove is not None:
        out &= ~listed(remove)
    return out
