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

from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.io.ploidy import PlinkCounts
from cipherome.genomics.io.variants import normalize_chroms

__all__ = ["AFREQ_HEADER", "VMISS_HEADER", "GCOUNT_HEADER", "format_g", "afreq_rows", "vmiss_rows",
           "gcount_rows", "atomic_outputs"]

AFREQ_HEADER = "#CHROM\tID\tREF\tALT\tALT_FREQS\tOBS_CT\n"
VMISS_HEADER = "#CHROM\tID\tMISSING_CT\tOBS_CT\tF_MISS\n"
GCOUNT_HEADER = ("#CHROM\tID\tREF\tALT\tHOM_REF_CT\tHET_REF_ALT_CTS\tTWO_ALT_GENO_CTS\tHAP_REF_CT"
                 "\tHAP_ALT_CTS\tMISSING_CT\n")


def format_g(x: np.ndarray) -> list[str]:
    """Six significant digits as C's ``%g`` (plink2's number format); NaN -> ``nan``."""
    return ["%g" % v for v in np.asarray(x, dtype=np.float64).tolist()]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.asarray(num, dtype=np.float64) / np.maximum(den, 1), np.nan)


def _rows(fmt: str, *cols) -> str:
    """Rows from one %-format per row (Python's ``%g`` prints NaN as ``nan``, as plink2 does)."""
    lists = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in cols]
    return "".join([fmt % r for r in zip(*lists)])


def _chrom(v: VariantTable, chrom: np.ndarray | None) -> np.ndarray:
    return normalize_chroms(v.chrom) if chrom is None else chrom


def afreq_rows(v: VariantTable, pc: PlinkCounts, chrom: np.ndarray | None = None) -> str:
    """``.afreq`` rows (no header): #CHROM ID REF ALT ALT_FREQS OBS_CT.

    chrom: the normalised chromosome names if already computed (default: from ``v``).
    """
    freq = _ratio(pc.alt_ct, pc.allele_obs)
    return _rows("%s\t%s\t%s\t%s\t%g\t%d\n", _chrom(v, chrom), v.id, v.ref, v.alt, freq, pc.allele_obs)


def vmiss_rows(v: VariantTable, pc: PlinkCounts, chrom: np.ndarray | None = None) -> str:
    """``.vmiss`` rows (no header): #CHROM ID MISSING_CT OBS_CT F_MISS."""
    return _rows("%s\t%s\t%d\t%d\t%g\n", _chrom(v, chrom), v.id, pc.miss_ct, pc.sample_obs,
                 _ratio(pc.miss_ct, pc.sample_obs))


def gcount_rows(v: VariantTable, pc: PlinkCounts, chrom: np.ndarray | None = None) -> str:
    """``.gcount`` rows (no header): #CHROM ID REF ALT HOM_REF_CT HET_REF_ALT_CTS TWO_ALT_GENO_CTS HAP_REF_CT HAP_ALT_CTS MISSING_CT."""
    return _rows("%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", _chrom(v, chrom), v.id, v.ref, v.alt,
                 pc.hom_ref, pc.het, pc.two_alt, pc.hap_ref, pc.hap_alt, pc.missing)


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
