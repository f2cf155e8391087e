"""Run plink2 / plink1.9 in a scratch directory and parse their reports into numpy arrays.

The reference twins in ``cipherome.genomics.reference_*`` are tested against what these
helpers return; a failing PLINK run raises :class:`PlinkError` carrying PLINK's log.
"""
from __future__ import annotations

import sys as _sys

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# One module object whether imported as ``plink_runner`` (tests/ on sys.path) or as
# ``tests.plink_runner`` (repository root on sys.path), so caches and classes are shared.
_sys.modules.setdefault("plink_runner", _sys.modules[__name__])
_sys.modules.setdefault("tests.plink_runner", _sys.modules[__name__])

__all__ = [
    "PLINK2",
    "PLINK1",
    "PlinkError",
    "PlinkRun",
    "have_plink",
    "run_plink",
    "read_table",
    "read_glm",
    "read_model",
    "read_afreq",
    "read_hardy",
    "read_vmiss",
    "read_smiss",
    "read_eigenvec",
    "read_eigenval",
    "read_snplist",
    "read_id_list",
    "align",
]

PLINK2 = "plink2"
PLINK1 = "plink1.9"


class PlinkError(RuntimeError):
    """A PLINK run exited non-zero; ``log`` holds its .log file (or stderr)."""

    def __init__(self, cmd: list[str], returncode: int, log: str):
        self.cmd, self.returncode, self.log = cmd, returncode, log
        super().__init__(f"{' '.join(cmd)} exited with {returncode}:\n{log}")


@dataclass
class PlinkRun:
    """A finished run: ``prefix`` is the ``--out`` path, ``log`` the log text."""

    prefix: Path
    log: str
    cmd: list[str]

    def path(self, suffix: str) -> Path:
        """``prefix + suffix``, e.g. ``run.path('.afreq')``."""
        return self.prefix.with_name(self.prefix.name + suffix)

    def glob(self, pattern: str) -> list[Path]:
        """Files next to the prefix whose names start with it and match ``pattern``."""
        return sorted(self.prefix.parent.glob(self.prefix.name + pattern))


def have_plink(exe: str = PLINK2) -> bool:
    """Whether ``exe`` is on PATH."""
    return shutil.which(exe) is not None


def run_plink(
    args: list[str],
    workdir: str | Path,
    exe: str = PLINK2,
    out: str = "out",
    threads: int = 2,
) -> PlinkRun:
    """Run ``exe args --out workdir/out`` (plus ``--threads``); raise PlinkError on failure.

    ``args`` are the flags after the program name, file paths absolute or relative to
    ``workdir``.  Memory is capped with ``--memory 2000`` so runs stay predictable.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = workdir / out
    cmd = [exe, *map(str, args), "--out", str(prefix), "--threads", str(threads), "--memory", "2000"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    log_path = prefix.with_name(prefix.name + ".log")
    log = log_path.read_text() if log_path.exists() else ""
    if proc.returncode != 0:
        raise PlinkError(cmd, proc.returncode, log or (proc.stdout + proc.stderr))
    return PlinkRun(prefix=prefix, log=log, cmd=cmd)


def _convert(values: list[str]) -> np.ndarray:
    """Float array if every entry parses (NA/nan/inf -> float), else a str array."""
    try:
        return np.array([np.nan if v in ("NA", ".", "nan") else float(v) for v in values])
    except ValueError:
        return np.array(values)


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """A whitespace table with a header line (leading '#' stripped) -> column name -> array.

    Numeric columns become float64 (``NA`` -> NaN); others stay str.
    """
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise ValueError(f"{path}: empty report")
    header = lines[0].lstrip("#").split()
    rows = [ln.split() for ln in lines[1:] if ln.strip()]
    for k, r in enumerate(rows):
        if len(r) != len(header):
            raise ValueError(f"{path}:{k + 2}: {len(r)} fields, header has {len(header)}")
    cols = list(zip(*rows)) if rows else [() for _ in header]
    return {h: _convert(list(c)) for h, c in zip(header, cols)}


def read_glm(path: str | Path, test: str | None = "ADD") -> dict[str, np.ndarray]:
    """A plink2 ``.glm.linear`` / ``.glm.logistic[.hybrid]`` report, rows of ``test`` only."""
    t = read_table(path)
    if test is not None and "TEST" in t:
        keep = t["TEST"] == test
        t = {k: v[keep] for k, v in t.items()}
    return t


def read_model(path: str | Path, test: str = "TREND") -> dict[str, np.ndarray]:
    """A plink1.9 ``.model`` report, rows of ``test`` (TREND, ALLELIC, GENO, DOM, REC)."""
    t = read_table(path)
    keep = t["TEST"] == test
    return {k: v[keep] for k, v in t.items()}


def read_afreq(path: str | Path) -> dict[str, np.ndarray]:
    """A plink2 ``.afreq`` report: ID, REF, ALT, ALT_FREQS, OBS_CT (allele count)."""
    return read_table(path)


def read_hardy(path: str | Path) -> dict[str, np.ndarray]:
    """A plink2 ``.hardy`` report (A1, AX, HOM_A1_CT, HET_A1_CT, TWO_AX_CT, O/E(HET_A1), P)."""
    return read_table(path)


def read_vmiss(path: str | Path) -> dict[str, np.ndarray]:
    """A plink2 ``.vmiss`` report: ID, MISSING_CT, OBS_CT, F_MISS."""
    return read_table(path)


def read_smiss(path: str | Path) -> dict[str, np.ndarray]:
    """A plink2 ``.smiss`` report: IID, MISSING_CT, OBS_CT, F_MISS."""
    return read_table(path)


def read_eigenvec(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A plink2 ``.eigenvec``: (IIDs ``(n,)`` str, PCs ``(n, K)`` float64)."""
    t = read_table(path)
    pcs = sorted((k for k in t if k.startswith("PC")), key=lambda k: int(k[2:]))
    return t["IID"], np.column_stack([t[k] for k in pcs])


def read_eigenval(path: str | Path) -> np.ndarray:
    """A plink ``.eigenval``: ``(K,)`` float64."""
    return np.array([float(x) for x in Path(path).read_text().split()])


def read_snplist(path: str | Path) -> np.ndarray:
    """A ``--write-snplist`` file: variant IDs ``(m,)`` str (empty array if none)."""
    p = Path(path)
    return np.array(p.read_text().split()) if p.exists() else np.array([], dtype=str)


def read_id_list(path: str | Path) -> np.ndarray:
    """The IID column of a ``--write-samples`` / ``.id`` file: ``(n,)`` str."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if lines and lines[0][0].startswith("#"):
        col = [c.lstrip("#") for c in lines[0]].index("IID")
        return np.array([r[col] for r in lines[1:]])
    return np.array([r[-1] if len(r) < 2 else r[1] for r in lines])


def align(ids: np.ndarray, reference_ids: np.ndarray) -> np.ndarray:
    """Indices ``idx`` with ``reference_ids[idx] == ids`` (every id must be present)."""
    pos = {v: i for i, v in enumerate(np.asarray(reference_ids).tolist())}
    try:
        return np.array([pos[v] for v in np.asarray(ids).tolist()], dtype=np.int64)
    except KeyError as exc:
        raise KeyError(f"id {exc.args[0]!r} not in the reference list") from None
