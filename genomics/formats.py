"""PLINK 2 report tables (.afreq, .vmiss, .gcount) formatted byte for byte as plink2 writes them, and written atomically.

Rows are produced a block at a time and streamed to temporary files beside the
targets; only when every table is complete are they renamed into place, so a failed
run leaves neither partial nor stale-looking new output.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from cipherome.genomics.blocks import VariantTable
from cipherome.genomics.ploidy import PlinkCounts
from cipherome.genomics.variants import normalize_chroms

__all__ = ["AFREQ_HEADER", "VMISS_HEADER", "GCOUNT_HEADER", "format_g", "afreq_rows", "vmiss_rows",
           "gcount_rows", "atomic_outputs"]

AFREQ_HEADER = "#CHROM\tID\tREF\tALT\tALT_FREQS\tOBS_CT\n"
VMISS_HEADER = "#CHROM\tID\tMISSING_CT\tOBS_CT\tF_MISS\n"
GCOUNT_HEADER = ("#CHROM\tID\tREF\tALT\tHOM_REF_CT\tHET_REF_ALT_CTS\tTWO_ALT_GENO_CTS\tHAP_REF_CT"
                 "\tHAP_ALT_CTS\tMISSING_CT\n")


def format_g(x: np.ndarray) -> list[str]:
    """Six significant digits as C's ``%g`` (plink2's number format); NaN -> ``nan``."""
    return ["nan" if v != v else "%g" % v for v in np.asarray(x, dtype=np.float64).tolist()]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.asarray(num, dtype=np.float64) / np.maximum(den, 1), np.nan)


def _join(cols: Sequence[list[str]]) -> str:
    return "\n".join(map("\t".join, zip(*cols))) + "\n"


def _str(a: np.ndarray) -> list[str]:
    return list(map(str, np.asarray(a).tolist()))


def afreq_rows(v: VariantTable, pc: PlinkCounts) -> str:
    """``.afreq`` rows (no header): #CHROM ID REF ALT ALT_FREQS OBS_CT."""
    if not len(v):
        return ""
    freq = _ratio(pc.alt_ct, pc.allele_obs)
    return _join([list(normalize_chroms(v.chrom)), list(v.id), list(v.ref), list(v.alt),
                  format_g(freq), _str(pc.allele_obs)])


def vmiss_rows(v: VariantTable, pc: PlinkCounts) -> str:
    """``.vmiss`` rows (no header): #CHROM ID MISSING_CT OBS_CT F_MISS."""
    if not len(v):
        return ""
    return _join([list(normalize_chroms(v.chrom)), list(v.id), _str(pc.miss_ct), _str(pc.sample_obs),
                  format_g(_ratio(pc.miss_ct, pc.sample_obs))])


def gcount_rows(v: VariantTable, pc: PlinkCounts) -> str:
    """``.gcount`` rows (no header): #CHROM ID REF ALT HOM_REF_CT HET_REF_ALT_CTS TWO_ALT_GENO_CTS HAP_REF_CT HAP_ALT_CTS MISSING_CT."""
    if not len(v):
        return ""
    return _join([list(normalize_chroms(v.chrom)), list(v.id), list(v.ref), list(v.alt),
                  _str(pc.hom_ref), _str(pc.het), _str(pc.two_alt), _str(pc.hap_ref), _str(pc.hap_alt),
                  _str(pc.missing)])


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[TextIO]]:
    """Open a temporary text file beside each path; on success rename all into place, else delete them.

    Yields the open files in the order of ``paths``. Files get the permissions a plain
    ``open(path, "w")`` would give them.
    """
    targets = [Path(p) for p in paths]
    umask = os.umask(0)
    os.umask(umask)
    handles: list[TextIO] = []
    temps: list[Path] = []
    try:
        for t in targets:
            t.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".tmp", dir=t.parent)
            temps.append(Path(tmp))
            os.fchmod(fd, 0o666 & ~umask)
            handles.append(os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20))
        yield handles
        for h in handles:
            h.close()
        for tmp, t in zip(temps, targets, strict=True):
            os.replace(tmp, t)
    except BaseException:
        for h in handles:
            with contextlib.suppress(OSError):
                h.close()
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise
