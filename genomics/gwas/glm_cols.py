"""``--glm cols=``: plink2's column sets of the association file, and the optional ones released on request.

A column set descriptor is plink2's: a comma-separated full list of sets
(``cols=chrom,pos,ref,alt,a1freq,test,nobs,beta,se,tz,p``), or changes to the
default all preceded by ``+``/``-`` (``cols=+a1freq,+machr2``). The default sets
are always computable; three optional sets are computed from what the association
already reads and are disclosures, opened only when the submitter asks for them:

* ``a1freq``: A1_FREQ = A1 dosage sum / (2 OBS_CT) over the samples in the regression
  (label ``gwas.a1_freq``: the pooled A1 dosage sum per tested variant);
* ``a1freqcc``: A1_CASE_FREQ, A1_CTRL_FREQ for case/control traits (``gwas.a1_freq_cc``:
  the cases' and controls' A1 dosage sums and the number of cases with a call);
* ``machr2``: MACH_R2 of the regression samples' dosages (``gwas.mach_r2``: the value
  itself, computed in MPC by ``genomics.gwas.machr2``; ``nan`` if monomorphic, as plink2).

The set ``beta`` only changes how released values print (logistic: BETA = ln OR, SE,
and the interval on that scale, in place of OR and LOG(OR)_SE).

Every site sums, per tested variant and over its regression samples, the samples
with a call, the A1 dosage and the squared A1 dosage (by case/control group), a
plaintext local sum read together with the association's genotypes. Under the
sites' ``min_cell_size`` policy a variant's optional columns are withheld (NA)
unless its A1 dosage sum and OBS_CT (and, for ``a1freqcc``, each group's A1 dosage
sum and sample count) reach it: only that bit is opened first (``gwas.cols_withheld``).
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.shares import Shared, concat

__all__ = ["DEFAULT", "OPTIONAL", "DISPLAY", "parse_cols", "check_sets", "ColumnSums", "release_columns",
           "column_sets_of", "beta_scale"]

#: plink2's default column sets of .glm.linear/.glm.logistic, in file order
DEFAULT = ("chrom", "pos", "ref", "alt", "firth", "test", "nobs", "orbeta", "se", "ci", "tz", "p", "err")
#: the optional sets released on request, in plink2's file order (after A1, before FIRTH? and TEST)
OPTIONAL = ("a1freq", "a1freqcc", "machr2")
#: sets that only change how released values print
DISPLAY = ("beta",)
#: plink2 sets that would release more than the study opens (counts of every cell)
NOT_RELEASED = ("alt1", "ax", "a1count", "totallele", "a1countcc", "totallelecc", "gcountcc")
#: output column names of each set (both spellings where linear and logistic differ)
COLUMNS = {"chrom": ("#CHROM",), "pos": ("POS",), "ref": ("REF",), "alt": ("ALT",),
           "a1freq": ("A1_FREQ",), "a1freqcc": ("A1_CASE_FREQ", "A1_CTRL_FREQ"), "machr2": ("MACH_R2",),
           "firth": ("FIRTH?",), "test": ("TEST",), "nobs": ("OBS_CT",), "orbeta": ("OR", "BETA"),
           "se": ("SE", "LOG(OR)_SE"), "ci": ("L95", "U95"), "tz": ("T_STAT", "Z_STAT"), "p": ("P",),
           "err": ("ERRCODE",)}


def check_sets(extra, drop) -> None:
    """ValueError unless ``extra`` are optional sets and ``drop`` default ones."""
    bad = [s for s in extra if s not in OPTIONAL + DISPLAY] + [s for s in drop if s not in DEFAULT]
    if bad:
        raise ValueError(f"--glm cols=: unknown column set(s) {', '.join(bad)}")


def parse_cols(desc: str) -> tuple[list[str], list[str]]:
    """(optional sets added, default sets dropped) of a plink2 column set descriptor.

    ValueError (naming the set) for an unknown set, a set that cipherome does not
    release, or a list mixing +/- changes with plain names, as plink2 rejects it.
    """
    items = [w.strip() for w in desc.split(",") if w.strip()]
    if not items:
        raise ValueError("--glm cols= needs a column set descriptor")
    signed = [w[0] in "+-" for w in items]
    if any(signed) and not all(signed):
        raise ValueError("--glm cols=: either a full list of column sets or +/- changes to the default, not both")
    for w in items:
        name = w.lstrip("+-")
        if name in NOT_RELEASED:
            raise ValueError(f"--glm cols=: column set {name!r} is not released by a secure GWAS (it would open "
                             f"per-cell counts); optional sets: {', '.join(OPTIONAL)}")
        if name not in DEFAULT + OPTIONAL + DISPLAY:
            raise ValueError(f"--glm cols=: unknown column set {name!r} "
                             f"(known: {', '.join(DEFAULT + OPTIONAL + DISPLAY)})")
    if all(signed):
        chosen = set(DEFAULT)
        for w in items:
            (chosen.add if w[0] == "+" else chosen.discard)(w[1:])
    else:
        chosen = set(items)
    return [s for s in OPTIONAL + DISPLAY if s in chosen], [s for s in DEFAULT if s not in chosen]


def column_sets_of(drop, extra=()) -> set[str]:
    """The column names that the dropped default sets remove from the file ('orbeta' yields to 'beta')."""
    return {c for s in drop if not (s == "orbeta" and "beta" in extra) for c in COLUMNS[s]}


def beta_scale(stats: dict) -> dict:
    """Logistic columns on the log-odds scale, as plink2's 'beta' set: OR -> BETA, LOG(OR)_SE -> SE, ln L95/U95."""
    if "OR" not in stats:
        return stats
    names = {"OR": "BETA", "LOG(OR)_SE": "SE"}
    with np.errstate(divide="ignore", invalid="ignore"):
        return {names.get(k, k): (np.log(v) if k in ("OR", "L95", "U95") else v) for k, v in stats.items()}


class ColumnSums:
    """This site's per-tested-variant sums for the optional columns, filled as the association reads.

    ``wrap(read)`` returns a reader that also stores the sums of the block it returns
    (genotypes of the regression samples, rows ``sel`` of the tested variants). Array
    ``sums``: (V, groups, 3) int64 (samples with a call, ALT dosage sum, squared ALT dosage
    sum, in units of 1/``unit``); group 0 controls and 1 cases for a case/control trait.
    """

    def __init__(self, n_variants: int, unit: int, groups: np.ndarray | None):
        self.unit = int(unit)
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        self.n_groups = 1 if groups is None else 2
        self.sums = np.zeros((n_variants, self.n_groups, 3), dtype=np.int64)

    def wrap(self, read):
        from cipherome.genomics.gwas.machr2 import site_dosage_sums

        def reader(sel):
            g = read(sel)
            self.sums[np.asarray(sel)] = site_dosage_sums(g, self.unit, self.groups, self.n_groups)
            return g

        return reader

    def a1_oriented(self, a1_is_alt: np.ndarray) -> np.ndarray:
        """The sums of the A1 dosages (REF dosages 2 - d where A1 is REF): (V, groups, 3) int64."""
        from cipherome.genomics.gwas.machr2 import minor_side

        n, s1, s2 = self.sums[..., 0], self.sums[..., 1], self.sums[..., 2]
        r1, r2 = minor_side(n, s1, s2, self.unit)
        alt = np.asarray(a1_is_alt, bool)[:, None]
        return np.stack([n, np.where(alt, s1, r1), np.where(alt, s2, r2)], axis=2)


def _withheld(ctx, s: Shared, obs_ct: np.ndarray, unit: int, mcs: int, cc: bool) -> np.ndarray:
    """Public (V,) bool: the optional columns break the min_cell_size policy (opened bit ``gwas.cols_withheld``)."""
    from cipherome.protocols import compare

    V = s.shape[0]
    low = obs_ct < mcs
    if mcs <= 0:
        return low
    checks = [s[:, :, 1].sum(axis=1) - mcs * unit]
    if cc:
        checks += [s[:, 0, 1] - mcs * unit, s[:, 1, 1] - mcs * unit, s[:, 0, 0] - mcs, s[:, 1, 0] - mcs]
    bits = compare.ltz(concat(checks), 48).reshape(len(checks), V)
    any_low = bits.sum(axis=0)  # a count of failing checks: > 0 iff any fails
    fails = compare.ltz(0 - any_low, 8)
    return low | ctx.open(fails, "gwas.cols_withheld").astype(bool)


def release_columns(ctx, cols: ColumnSums, sets, obs_ct: np.ndarray, a1_is_alt: np.ndarray, mcs: int) -> dict:
    """Open the requested optional columns: {"columns": name -> (V,) float64, "withheld": (V,) bool}.

    sets: the requested ``OPTIONAL`` sets; obs_ct: the public OBS_CT of the tested variants.
    A column is NaN where withheld, and MACH_R2 also where the variant is monomorphic
    (plink2 prints ``nan`` there). A1_CASE_FREQ/A1_CTRL_FREQ only for a case/control trait.
    """
    from cipherome.genomics.gwas import machr2

    V = len(obs_ct)
    own = cols.a1_oriented(a1_is_alt)
    s = ctx.inputs_sum(own, shape=own.shape, frac=0)
    cc = "a1freqcc" in sets and cols.n_groups == 2
    out = {}
    hide = _withheld(ctx, s, np.asarray(obs_ct), cols.unit, mcs, cc)
    show = np.flatnonzero(~hide)
    u = float(cols.unit)
    obs = np.asarray(obs_ct, dtype=np.float64)
    if "a1freq" in sets:
        col = np.full(V, np.nan)
        a1 = ctx.open(s[show, :, 1].sum(axis=1), "gwas.a1_freq")
        with np.errstate(divide="ignore", invalid="ignore"):
            col[show] = a1 / (2 * u * obs[show])
        out["A1_FREQ"] = col
    if cc:
        case, ctrl = np.full(V, np.nan), np.full(V, np.nan)
        got = ctx.open(concat([s[show, 1, 1], s[show, 0, 1], s[show, 1, 0]]), "gwas.a1_freq_cc").reshape(3, -1)
        n_case = got[2].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            case[show] = got[0] / (2 * u * n_case)
            ctrl[show] = got[1] / (2 * u * (obs[show] - n_case))
        out["A1_CASE_FREQ"], out["A1_CTRL_FREQ"] = case, ctrl
    if "machr2" in sets:
        col = np.full(V, np.nan)
        if show.size:
            t = s[show].sum(axis=1)
            n = Shared.public(ctx, np.asarray(obs_ct, dtype=np.int64)[show], 0)
            a, b, mono = machr2.mach_r2_parts(ctx, n, t[:, 1], t[:, 2], cols.unit, max(int(obs.max(initial=1)), 1))
            col[show] = machr2.mach_r2_values(ctx, a, b, mono, "gwas.mach_r2")
        out["MACH_R2"] = col
    return {"columns": out, "withheld": hide}
