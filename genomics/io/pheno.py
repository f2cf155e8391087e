"""Phenotype and covariate tables in PLINK's conventions, matched to the samples of a genotype file.

Files are whitespace-separated with a header ``#FID IID ...``, ``FID IID ...`` or
``#IID ...`` (no header: ``FID IID`` then columns named PHENO1, PHENO2, ...); ``NA``,
``nan``, ``.`` and ``-9`` are missing. A phenotype column whose values are all 1/2
(0 also missing) is a binary trait, stored as 0.0 control / 1.0 case; with
``control_zero=True`` (PLINK's ``--1``) the coding is 0 control / 1 case instead.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cipherome.genomics.io.blocks import SampleTable
from cipherome.genomics.errors import InputError

__all__ = ["PhenoTable", "MISSING_TOKENS", "read_pheno", "read_covar", "match_samples",
           "align_to_samples"]

log = logging.getLogger(__name__)

#: Text values read as missing (besides the number -9).
MISSING_TOKENS = frozenset({"NA", "na", "Na", "nan", "NaN", "NAN", ".", ""})


@dataclass(frozen=True, eq=False)
class PhenoTable:
    """Columns of a phenotype or covariate file.

    iid: ``(r,)`` object array of str; fid: ``(r,)`` object array or None (``#IID``
    header); names: column names; values: ``(r, p)`` float64, NaN missing; binary:
    ``(p,)`` bool, True for case/control columns (values 0.0/1.0/NaN).
    """

    path: Path
    iid: np.ndarray
    fid: np.ndarray | None
    names: list[str]
    values: np.ndarray
    binary: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """``(r,)`` float64 values of one column."""
        return self.values[:, self.names.index(name)]


def _is_missing(tok: str) -> bool:
    if tok in MISSING_TOKENS:
        return True
    try:
        return float(tok) == -9.0
    except ValueError:
        return False


def _read_table(path: str | os.PathLike[str], names: Sequence[str] | None, what: str):
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: cannot open {what} file ({e.strerror})", kind=f"cannot open its {what} file") from None
    with fh:
        lines = [(i, ln.split()) for i, ln in enumerate(fh, 1)]
    lines = [(i, f) for i, f in lines if f]
    if not lines:
        raise InputError(f"{path}: the {what} file is empty", kind=f"{what} file is empty")
    lineno, head = lines[0]
    first = head[0].lstrip("#") if head[0].startswith("#") else head[0]
    if head[0] in ("#FID", "FID") and len(head) >= 2 and head[1] == "IID":
        has_fid, cols, body = True, head[2:], lines[1:]
    elif first == "IID" and (head[0] == "#IID" or head[0] == "IID"):
        has_fid, cols, body = False, head[1:], lines[1:]
    elif head[0].startswith("#"):
        raise InputError(f"{path}, line {lineno}: header must start with '#FID IID', 'FID IID' or"
                         f" '#IID', found {' '.join(head[:2])!r}",
                         kind=f"{what} file has an invalid header")
    else:
        has_fid, cols, body = True, [f"PHENO{j + 1}" for j in range(len(head) - 2)], lines
    if not cols:
        raise InputError(f"{path}: no {what} columns after the sample ID column(s)",
                         kind=f"{what} file has no value columns")
    if len(set(cols)) != len(cols):
        dup = next(c for c in cols if cols.count(c) > 1)
        raise InputError(f"{path}: column name {dup!r} appears twice in the header",
                         kind=f"{what} file repeats a column name")
    if names is None:
        sel = list(range(len(cols)))
    else:
        unknown = [nm for nm in names if nm not in cols]
        if unknown:
            raise InputError(f"{path}: no column named {unknown[0]!r}; the file has: {' '.join(cols)}",
                             kind=f"{what} file lacks a requested column")
        sel = [cols.index(nm) for nm in names]
    nid = 2 if has_fid else 1
    width = nid + len(cols)
    fid, iid, raw = [], [], []
    every = sel == list(range(len(cols)))
    for i, f in body:
        if len(f) != width:
            raise InputError(f"{path}, line {i}: {len(f)} columns, the header has {width}",
                             kind=f"{what} file has a row with the wrong number of columns")
        if has_fid:
            fid.append(f[0])
        iid.append(f[nid - 1])
        raw.append(f[nid:] if every else [f[nid + j] for j in sel])
    seen: dict[tuple, int] = {}
    for r, key in enumerate(zip(fid if has_fid else iid, iid)):
        if key in seen:
            raise InputError(f"{path}, line {body[r][0]}: sample {' '.join(dict.fromkeys(key))!r} listed"
                             f" twice (first on line {body[seen[key]][0]})",
                             kind=f"{what} file lists a sample twice")
        seen[key] = r
    return path, has_fid, fid, iid, [cols[j] for j in sel], raw, [b[0] for b in body]


def _numbers(path: Path, raw: list[list[str]], linenos: list[int], names: list[str], what: str) -> np.ndarray:
    """(r, p) float64 values of the table's cells, NaN where missing (a missing token or -9).

    One C-level ``float`` per cell (3,334 x 12 cells: 22 ms, against 139 ms cell by cell with numpy
    scalar checks); a table with a bad cell goes through ``_first_bad_number``, which names it.
    """
    r, p = len(raw), len(names)
    try:  # a missing token reads as -9, which is missing too
        vals = np.array([-9.0 if tok in MISSING_TOKENS else float(tok) for row in raw for tok in row],
                        dtype=np.float64)
    except ValueError:
        vals = None
    if vals is None or not np.isfinite(vals).all():
        _first_bad_number(path, raw, linenos, names, what)
    vals[vals == -9.0] = np.nan
    return vals.reshape(r, p)


def _first_bad_number(path: Path, raw: list[list[str]], linenos: list[int], names: list[str], what: str) -> None:
    """Raise the ``InputError`` naming the first cell that is neither a finite number nor missing."""
    for a, row in enumerate(raw):
        for j, tok in enumerate(row):
            if _is_missing(tok):
                continue
            try:
                val = float(tok)
            except ValueError:
                raise InputError(f"{path}, line {linenos[a]}, column {names[j]!r}: {tok!r} is not a number"
                                 f" or a missing value (NA, -9, .); categorical {what}s are not supported:"
                                 " encode them as 0/1 columns", kind=f"{what} file has a non-numeric value") from None
            if not math.isfinite(val):
                raise InputError(f"{path}, line {linenos[a]}, column {names[j]!r}: {tok!r} is not finite",
                                 kind=f"{what} file has a non-finite value")
    raise AssertionError("unreachable: a cell failed the fast parse but none is bad")  # pragma: no cover


def read_pheno(path: str | os.PathLike[str], names: Sequence[str] | None = None,
               control_zero: bool = False) -> PhenoTable:
    """Read a phenotype file (``--pheno``), optionally only the columns ``names`` (``--pheno-name``).

    Binary columns are detected as PLINK does: all non-missing values in {1, 2} with 0
    also missing (default), or in {0, 1} with ``control_zero`` (PLINK's ``--1``); they
    are stored as 0.0 control / 1.0 case. Other columns are quantitative.
    """
    path, has_fid, fid, iid, cols, raw, linenos = _read_table(path, names, "phenotype")
    vals = _numbers(path, raw, linenos, cols, "phenotype")
    binary = np.zeros(len(cols), dtype=bool)
    for j, name in enumerate(cols):
        v = vals[:, j]
        obs = v[~np.isnan(v)]
        if control_zero:
            if obs.size and np.isin(obs, (0.0, 1.0)).all():
                binary[j] = True
        else:
            if obs.size and np.isin(obs, (0.0, 1.0, 2.0)).all() and (obs != 0).any():
                binary[j] = True
                v = np.where(v == 0.0, np.nan, v - 1.0)
                vals[:, j] = v
                if not (v == 1.0).any():
                    log.warning("%s: binary column %r has no cases (value 2); if it is coded 0/1,"
                                " use control_zero (PLINK's --1)", path, name)
    return PhenoTable(path, np.array(iid, dtype=object), np.array(fid, dtype=object) if has_fid else None,
                      cols, vals, binary)


def read_covar(path: str | os.PathLike[str], names: Sequence[str] | None = None) -> PhenoTable:
    """Read a covariate file (``--covar``), optionally only the columns ``names`` (``--covar-name``).

    All columns are numeric (``binary`` all False); missing values are NaN.
    """
    path, has_fid, fid, iid, cols, raw, linenos = _read_table(path, names, "covariate")
    vals = _numbers(path, raw, linenos, cols, "covariate")
    return PhenoTable(path, np.array(iid, dtype=object), np.array(fid, dtype=object) if has_fid else None,
                      cols, vals, np.zeros(len(cols), dtype=bool))


def match_samples(samples: SampleTable, table: PhenoTable, strict: bool = False) -> np.ndarray:
    """Row of ``table`` for each genotype sample, ``(n,)`` int64, -1 where the table lacks it.

    Samples match on (FID, IID) when both sides have family IDs, else on IID alone
    (also when every genotype FID is "0", PLINK 2's placeholder for "no FID"). Samples
    found on one side only are counted in the log; with ``strict`` they raise an
    :class:`InputError` instead.
    """
    geno_fid = samples.fid
    if geno_fid is not None and all(f == "0" for f in geno_fid):
        geno_fid = None
    use_fid = geno_fid is not None and table.fid is not None
    if use_fid:
        rows = {(f, i): r for r, (f, i) in enumerate(zip(table.fid, table.iid))}
        keys = list(zip(geno_fid, samples.iid))
    else:
        rows = {}
        for r, i in enumerate(table.iid):
            if i in rows:
                raise InputError(f"{table.path}: IID {i!r} appears in several families; the genotype file"
                                 " has no family IDs to tell them apart",
                                 kind="an IID appears in several families of its phenotype/covariate file")
            rows[i] = r
        keys = list(samples.iid)
    index = np.array([rows.get(k, -1) for k in keys], dtype=np.int64)
    n_absent = int((index < 0).sum())
    used = np.zeros(len(table.iid), dtype=bool)
    used[index[index >= 0]] = True
    n_extra = int((~used).sum())
    by = "FID and IID" if use_fid else "IID"
    if strict and (n_absent or n_extra):
        if n_extra:
            r = int(np.flatnonzero(~used)[0])
            who = table.iid[r] if not use_fid else f"{table.fid[r]} {table.iid[r]}"
            raise InputError(f"{table.path}: {n_extra} sample(s) not in the genotype file (matched by {by}),"
                             f" e.g. {who!r}; remove them or check the sample IDs",
                             kind="its phenotype/covariate file lists samples not in its genotype file")
        s = int(np.flatnonzero(index < 0)[0])
        raise InputError(f"{table.path}: {n_absent} genotype sample(s) have no row (matched by {by}), e.g."
                         f" {samples.iid[s]!r}; add them (with NA) or check the sample IDs",
                         kind="genotype samples lack a row in its phenotype/covariate file")
    if n_extra:
        log.info("%s: %d sample(s) not in the genotype file, ignored", table.path, n_extra)
    if n_absent:
        log.info("%s: %d genotype sample(s) without a row, treated as missing", table.path, n_absent)
    return index


def align_to_samples(table: PhenoTable, samples: SampleTable, strict: bool = False) -> np.ndarray:
    """``(n, p)`` float64 values in genotype sample order, NaN where absent (see :func:`match_samples`)."""
    index = match_samples(samples, table, strict=strict)
    out = np.full((len(index), len(table.names)), np.nan)
    ok = index >= 0
    out[ok] = table.values[index[ok]]
    return out
