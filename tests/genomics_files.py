"""Real genotype files for the genomics tests: VCF/BCF written with pysam, .bed written from numpy, plink2 runs."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cipherome.genomics.io.packed import pack_dosage

PLINK2 = shutil.which("plink2")
needs_plink2 = pytest.mark.skipif(PLINK2 is None, reason="plink2 (Debian package plink2) not installed")

CONTIGS = [("1", 249_000_000), ("2", 243_000_000), ("X", 156_000_000), ("Y", 57_000_000), ("MT", 16_569)]


def plink2(cwd: Path, *args: str) -> str:
    """Run plink2 in ``cwd``; return its log; fail the test with the log if it fails."""
    cmd = [PLINK2, "--threads", "1", *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def random_calls(rng: np.random.Generator, n_variants: int, n_samples: int, missing: float = 0.03,
                 n_alleles: np.ndarray | None = None) -> np.ndarray:
    """``(m, n, 2)`` int allele indices (-1 missing), HWE-ish with random frequencies."""
    p = rng.uniform(0.02, 0.6, size=(n_variants, 1, 1))
    a = (rng.random((n_variants, n_samples, 2)) < p).astype(np.int64)
    if n_alleles is not None:  # some ALT copies become higher ALTs
        extra = rng.integers(0, 2, size=a.shape) * (n_alleles[:, None, None] > 2)
        a = np.where(a > 0, a + extra, a)
    miss = rng.random((n_variants, n_samples)) < missing
    a[miss] = -1
    return a


def make_vcf(path: Path, rng: np.random.Generator, n_samples: int = 40, per_chrom: int = 30,
             males: np.ndarray | None = None, mode: str = "w") -> dict:
    """Write a VCF (mode "w"), bgzipped VCF ("wz") or BCF ("wb") with pysam.

    Chromosomes 1, 2, X, Y, MT; ~3% missing calls; one tri-allelic record on chr1; males
    (default: even samples) get haploid calls on X, Y and MT, everyone on MT. Returns
    the samples, males, the records' alleles and the calls written (allele indices).
    """
    import pysam

    males = (np.arange(n_samples) % 2 == 0) if males is None else males
    hdr = pysam.VariantHeader()
    for c, length in CONTIGS:
        hdr.contigs.add(c, length=length)
    hdr.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    hdr.add_line('##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">')
    samples = [f"S{i:03d}" for i in range(n_samples)]
    for s in samples:
        hdr.add_sample(s)
    records = []
    bases = "ACGT"
    with pysam.VariantFile(str(path), mode, header=hdr) as vf:
        for c, _ in CONTIGS:
            n_alleles = np.full(per_chrom, 2)
            if c == "1":
                n_alleles[5] = 3
            calls = random_calls(rng, per_chrom, n_samples, n_alleles=n_alleles)
            positions = np.sort(rng.choice(np.arange(1000, 16_000), size=per_chrom, replace=False))
            for j in range(per_chrom):
                ref = bases[rng.integers(4)]
                alts = [b for b in bases if b != ref][: n_alleles[j] - 1]
                rid = f"{c}_{positions[j]}" if j % 7 else "."
                rec = vf.new_record(contig=c, start=int(positions[j]) - 1, alleles=(ref, *alts),
                                    id=None if rid == "." else rid)
                gts = []
                for i, s in enumerate(samples):
                    a, b = (None if x < 0 else int(x) for x in calls[j, i])
                    haploid = c == "MT" or (c in ("X", "Y") and males[i])
                    if haploid:
                        g = (a,) if a is None or b is None or a == b or c == "Y" else (a, b)
                    else:
                        g = (a, b) if (a is None) == (b is None) else (None, None)
                    rec.samples[s]["GT"] = g
                    rec.samples[s]["DP"] = int(rng.integers(5, 40))
                    gts.append(g)
                vf.write(rec)
                records.append((c, int(positions[j]), rid, ref, tuple(alts), gts))
    return {"samples": samples, "males": males, "records": records}


def expected_dosage(records: list, split: bool = True) -> np.ndarray:
    """Dosage rows the VCF conventions give for ``make_vcf`` records (haploid -> 0/2)."""
    rows = []
    for _, _, _, _, alts, gts in records:
        if len(alts) > 1 and not split:
            continue
        for a in range(1, len(alts) + 1):
            row = []
            for g in gts:
                if any(x is None for x in g):
                    row.append(-1)
                elif len(g) == 1:
                    row.append(2 if g[0] == a else 0)
                else:
                    row.append(sum(x == a for x in g))
            rows.append(row)
    return np.array(rows, dtype=np.int8)


def write_sex_file(path: Path, samples: list[str], males: np.ndarray) -> Path:
    path.write_text("#IID\tSEX\n" + "".join(f"{s}\t{1 if m else 2}\n" for s, m in zip(samples, males)))
    return path


def write_bfile(prefix: Path, G: np.ndarray, chrom, pos, ids, ref, alt, iid, fid=None, sex=None) -> Path:
    """Write prefix.bed/.bim/.fam from an int8 dosage matrix (A1 = ALT, A2 = REF)."""
    m, n = G.shape
    prefix.with_suffix(".bed").write_bytes(b"\x6c\x1b\x01" + pack_dosage(G).tobytes())
    prefix.with_suffix(".bim").write_text("".join(
        f"{c}\t{i}\t0\t{p}\t{a}\t{r}\n" for c, i, p, r, a in zip(chrom, ids, pos, ref, alt)))
    fid = iid if fid is None else fid
    sex = np.zeros(n, int) if sex is None else sex
    prefix.with_suffix(".fam").write_text("".join(
        f"{f}\t{i}\t0\t0\t{s}\t-9\n" for f, i, s in zip(fid, iid, sex)))
    return prefix
