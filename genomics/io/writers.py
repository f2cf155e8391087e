"""Writers for the files PLINK and VCF tools read: PLINK 1 .bed/.bim/.fam, bgzipped VCF, phenotype and covariate tables.

Genotypes are an ``int8`` array of shape ``(n_variants, n_samples)`` holding the ALT
allele count (0, 1, 2) or -1 for a missing call; every file is written to a temporary
name in the target directory and renamed into place, so a failure never leaves a
half-written file behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "BED_MAGIC",
    "Variants",
    "encode_bed",
    "write_bed",
    "write_bim",
    "write_fam",
    "write_pheno",
    "write_covar",
    "write_vcf",
    "atomic_path",
]

#: The three magic bytes of a SNP-major PLINK 1 .bed file.
BED_MAGIC = bytes([0x6C, 0x1B, 0x01])

# ALT count -> 2-bit PLINK code.  In .bim the first allele column (A1) is ALT, so
# "homozygous A1" (0b00) is two ALT copies, 0b10 is het, 0b11 is homozygous A2
# (REF), 0b01 is missing.  Index 3 is used for missing (-1 maps there below).
_CODE_OF_ALT_COUNT = np.array([0b11, 0b10, 0b00, 0b01], dtype=np.uint8)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; honour the umask instead
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def encode_bed(genotypes: np.ndarray) -> bytes:
    """Encode ALT counts as the body of a SNP-major .bed file (magic bytes included).

    ``genotypes``: ``(n_variants, n_samples)`` integer array, values in {-1, 0, 1, 2}.
    Each variant occupies ``ceil(n_samples / 4)`` bytes; sample ``i`` sits in bits
    ``2*(i % 4)`` and ``2*(i % 4) + 1`` of byte ``i // 4``; padding bits are 0.
    """
    g = np.asarray(genotypes)
    if g.ndim != 2:
        raise ValueError(f"genotypes must be 2-D (variants, samples), got shape {g.shape}")
    if g.size and (g.min() < -1 or g.max() > 2):
        raise ValueError("genotypes must hold ALT counts 0, 1, 2 or -1 for missing")
    m, n = g.shape
    nbytes = (n + 3) // 4
    codes = _CODE_OF_ALT_COUNT[np.where(g < 0, 3, g).astype(np.intp)]
    padded = np.zeros((m, nbytes * 4), dtype=np.uint8)
    padded[:, :n] = codes
    q = padded.reshape(m, nbytes, 4)
    packed = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return BED_MAGIC + np.ascontiguousarray(packed, dtype=np.uint8).tobytes()


class Variants(NamedTuple):
    """The variant columns every genotype file carries, one entry per variant (row of the genotypes)."""

    chrom: Sequence | np.ndarray
    pos: np.ndarray
    ids: Sequence[str] | np.ndarray
    ref: Sequence[str] | np.ndarray
    alt: Sequence[str] | np.ndarray


def _genotype_matrix(genotypes: np.ndarray, variants: Variants, samples: Sequence) -> np.ndarray:
    """``genotypes`` as an array, checked to be (variants x samples)."""
    g = np.asarray(genotypes)
    if g.shape != (len(variants.ids), len(samples)):
        raise ValueError(
            f"genotypes shape {g.shape} does not match {len(variants.ids)} variants x {len(samples)} samples"
        )
    return g


def write_bim(path: str | os.PathLike[str], variants: Variants) -> None:
    """Write a .bim: CHR, ID, cM (0), POS, A1 = ALT, A2 = REF (as ``plink2 --make-bed`` writes)."""
    v = variants
    lines = [
        f"{c}\t{i}\t0\t{int(p)}\t{a}\t{r}\n"
        for c, i, p, a, r in zip(v.chrom, v.ids, v.pos, v.alt, v.ref, strict=True)
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def write_fam(
    path: str | os.PathLike[str],
    fid: Sequence[str] | np.ndarray,
    iid: Sequence[str] | np.ndarray,
    sex: np.ndarray | None = None,
    pheno: np.ndarray | None = None,
) -> None:
    """Write a .fam: FID IID PAT(0) MAT(0) SEX PHENO.

    ``sex``: ``(n,)`` int, 1 male, 2 female, 0 unknown (default all 0).
    ``pheno``: ``(n,)`` float; NaN is written as -9 (default all -9: phenotypes then
    come from a separate ``--pheno`` file).
    """
    n = len(iid)
    sex = np.zeros(n, dtype=np.int64) if sex is None else np.asarray(sex)
    pheno_txt = (
        ["-9"] * n
        if pheno is None
        else ["-9" if np.isnan(v) else _fmt(v) for v in np.asarray(pheno, dtype=np.float64)]
    )
    lines = [
        f"{f}\t{i}\t0\t0\t{int(s)}\t{p}\n"
        for f, i, s, p in zip(fid, iid, sex, pheno_txt, strict=True)
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def write_bed(
    prefix: str | os.PathLike[str],
    genotypes: np.ndarray,
    variants: Variants,
    fid: Sequence[str] | np.ndarray,
    iid: Sequence[str] | np.ndarray,
    sex: np.ndarray | None = None,
    pheno: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``prefix.bed``/``.bim``/``.fam`` and return their paths keyed by extension.

    ``genotypes``: ``(n_variants, n_samples)`` int8 ALT counts, -1 missing.
    """
    prefix = Path(prefix)
    g = _genotype_matrix(genotypes, variants, iid)
    paths = {ext: prefix.with_name(prefix.name + "." + ext) for ext in ("bed", "bim", "fam")}
    with atomic_path(paths["bed"]) as tmp:
        tmp.write_bytes(encode_bed(g))
    write_bim(paths["bim"], variants)
    write_fam(paths["fam"], fid, iid, sex, pheno)
    return paths


def _fmt(v: float) -> str:
    """Shortest round-trip text of a float ('NA' for NaN)."""
    if np.isnan(v):
        return "NA"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def _write_table(
    path: str | os.PathLike[str],
    fid: Sequence[str] | np.ndarray,
    iid: Sequence[str] | np.ndarray,
    columns: Mapping[str, np.ndarray],
    binary: set[str],
) -> None:
    names = list(columns)
    cols = []
    for name in names:
        v = np.asarray(columns[name], dtype=np.float64)
        if v.shape != (len(iid),):
            raise ValueError(f"column {name!r} has shape {v.shape}, expected ({len(iid)},)")
        if name in binary:
            bad = ~np.isnan(v) & ~np.isin(v, (0.0, 1.0))
            if bad.any():
                raise ValueError(f"binary column {name!r} must hold 0/1/NaN")
            cols.append(np.where(np.isnan(v), "NA", np.where(v == 1.0, "2", "1")))
        else:
            cols.append(np.array([_fmt(x) for x in v], dtype=object))
    header = "#FID\tIID" + "".join("\t" + n for n in names) + "\n"
    rows = [
        f"{f}\t{i}" + "".join("\t" + str(c[k]) for c in cols) + "\n"
        for k, (f, i) in enumerate(zip(fid, iid, strict=True))
    ]
    with atomic_path(path) as tmp:
        tmp.write_text(header + "".join(rows))


def write_pheno(
    path: str | os.PathLike[str],
    fid: Sequence[str] | np.ndarray,
    iid: Sequence[str] | np.ndarray,
    phenotypes: Mapping[str, np.ndarray],
    binary: Sequence[str] = (),
) -> None:
    """Write a PLINK phenotype file ``#FID IID name...``.

    ``phenotypes``: name -> ``(n,)`` float64, NaN written as ``NA``.  Columns named in
    ``binary`` hold 0 (control) / 1 (case) and are written in PLINK's 1/2 coding.
    """
    _write_table(path, fid, iid, phenotypes, set(binary))


def write_covar(
    path: str | os.PathLike[str],
    fid: Sequence[str] | np.ndarray,
    iid: Sequence[str] | np.ndarray,
    covariates: np.ndarray,
    names: Sequence[str],
) -> None:
    """Write a PLINK covariate file ``#FID IID name...``.

    ``covariates``: ``(n, c)`` float64, NaN written as ``NA``; ``names``: ``c`` names.
    """
    c = np.asarray(covariates, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != len(names):
        raise ValueError(f"covariates shape {c.shape} does not match {len(names)} names")
    _write_table(path, fid, iid, {n: c[:, k] for k, n in enumerate(names)}, set())


_GT_TEXT = np.array(["0/0", "0/1", "1/1", "./."], dtype=object)


def write_vcf(
    path: str | os.PathLike[str],
    genotypes: np.ndarray,
    variants: Variants,
    samples: Sequence[str] | np.ndarray,
    contig_lengths: Mapping[str, int] | None = None,
) -> Path:
    """Write a bgzipped VCF 4.2 (``path`` ends in ``.vcf.gz``) with a tabix index beside it.

    Variants must be sorted by (contig order, position).  The header comes from
    ``pysam.VariantHeader``; the body is rendered with numpy (one text cell per call,
    unphased ``GT``), bgzipped by ``pysam.tabix_compress`` and indexed by
    ``pysam.tabix_index`` (``.tbi``).  Filling ``pysam.VariantFile(..., "wz")`` records
    sample by sample runs at Python speed per call, far slower for the same bytes.
    Returns the path of the ``.vcf.gz``.
    """
    import pysam

    path = Path(path)
    if not path.name.endswith(".vcf.gz"):
        raise ValueError(f"{path}: a bgzipped VCF must end in .vcf.gz")
    g = _genotype_matrix(genotypes, variants, samples)
    chrom = variants.chrom
    contigs = list(dict.fromkeys(str(c) for c in chrom))
    header = pysam.VariantHeader()
    header.add_line("##source=cipherome.genomics.simulate")
    for c in contigs:
        length = None if contig_lengths is None else contig_lengths.get(c)
        if length is None:
            header.contigs.add(c)
        else:
            header.contigs.add(c, length=int(length))
    header.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    for s in samples:
        header.add_sample(str(s))
    head_txt = str(header)

    cells = _GT_TEXT[np.where(g < 0, 3, g).astype(np.intp)]
    body = [
        f"{c}\t{int(p)}\t{i}\t{r}\t{a}\t.\tPASS\t.\tGT\t" + "\t".join(row) + "\n"
        for c, p, i, r, a, row in zip(chrom, *variants[1:], cells, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".vcf-") as tmpdir:
        plain = Path(tmpdir) / "x.vcf"
        plain.write_text(head_txt + "".join(body))
        gz = Path(tmpdir) / "x.vcf.gz"
        pysam.tabix_compress(str(plain), str(gz), force=True)
        pysam.tabix_index(str(gz), preset="vcf", force=True)
        os.replace(gz, path)  # data first, then the (newer) index
        os.replace(str(gz) + ".tbi", str(path) + ".tbi")
    return path
