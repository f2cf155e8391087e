"""PLINK 2 filesets through pgenlib: blocks equal the .bed's, dosages and multi-allelic splits as plink2 reads them.

``cipherome local-stats --pfile`` is compared byte for byte with ``plink2 --freq --missing
--geno-counts`` on files plink2 wrote itself (hard calls with haploid chromosomes and a
tri-allelic record; dosages from ``--dummy ... dosage-freq``).
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from genomics_files import PLINK2, make_vcf, needs_plink2, plink2, write_sex_file

from cipherome.cli.main import cli
from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import BedReader
from cipherome.genomics.io.pgen import PgenReader

SUFFIXES = ("afreq", "vmiss", "gcount")


def _same(d, a, b):
    for s in SUFFIXES:
        assert (d / f"{a}.{s}").read_bytes() == (d / f"{b}.{s}").read_bytes(), s


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pgen")
    info = make_vcf(d / "g.vcf", np.random.default_rng(5), n_samples=50, per_chrom=30)
    write_sex_file(d / "g.sex", info["samples"], info["males"])
    if PLINK2 is not None:
        plink2(d, "--vcf", "g.vcf", "--update-sex", "g.sex", "--make-pgen", "--out", "g")
        plink2(d, "--pfile", "g", "--make-pgen", "multiallelics=-", "--out", "split")
        plink2(d, "--pfile", "g", "--max-alleles", "2", "--make-bed", "--out", "bi")
        plink2(d, "--bfile", "bi", "--make-pgen", "--out", "bi")
        plink2(d, "--dummy", "120", "300", "0.04", "dosage-freq=0.4", "--make-pgen", "--out", "dos")
    return d


def _local_stats(*args):
    r = CliRunner().invoke(cli, ["local-stats", *args])
    assert r.exit_code == 0, r.output
    return r


@needs_plink2
def test_hard_call_blocks_equal_bed(files):
    """A .pgen made from a .bed yields the same hard calls, block by block, and no dosage track."""
    pg = PgenReader(files / "bi", block_size=7)
    assert not pg.has_dosage
    bed = list(BedReader(files / "bi", block_size=7).blocks())
    got = list(pg.blocks())
    assert len(got) == len(bed)
    for a, b in zip(got, bed):
        assert np.array_equal(a.dosage, b.dosage)
        assert a.float_dosage is None
        assert list(a.variants.id) == list(b.variants.id)
    rows = np.array([40, 3, 17, 3])
    assert np.array_equal(pg.read_hard(rows), np.concatenate([b.dosage for b in bed])[rows])


@needs_plink2
def test_local_stats_multiallelic_split_equals_plink2(files):
    """Haploid chromosomes from the .psam SEX column and a tri-allelic record split as multiallelics=-."""
    _local_stats("--pfile", str(files / "g"), "--out", str(files / "mine"), "--block-size", "11")
    plink2(files, "--pfile", "split", "--freq", "--missing", "--geno-counts", "--out", "ref")
    _same(files, "mine", "ref")
    assert len(PgenReader(files / "g").variants) == len(PgenReader(files / "split").variants)


@needs_plink2
def test_local_stats_dosages_equal_plink2(files):
    """ALT_FREQS/OBS_CT from dosages; .vmiss and .gcount from the hard calls, as plink2 does."""
    r = PgenReader(files / "dos")
    assert r.has_dosage
    d = np.concatenate([b.float_dosage for b in r.blocks()])
    assert np.isnan(d).any() and ((d % 1) != 0).mean() > 0.1  # really fractional, with missing dosages
    assert np.all((d[~np.isnan(d)] * 16384) % 1 == 0)  # PLINK 2's 1/16384 steps, held exactly
    _local_stats("--pfile", str(files / "dos"), "--out", str(files / "mdos"), "--block-size", "64")
    plink2(files, "--pfile", "dos", "--freq", "--missing", "--geno-counts", "--out", "rdos")
    _same(files, "mdos", "rdos")


@needs_plink2
def test_sample_subset(files):
    full = PgenReader(files / "dos")
    part = PgenReader(files / "dos", samples=np.array([3, 0, 50]))
    a = np.concatenate([b.float_dosage for b in full.blocks()])
    b = np.concatenate([b.float_dosage for b in part.blocks()])
    assert np.array_equal(a[:, [0, 3, 50]], b, equal_nan=True)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(InputError, match=r"x\.pgen: \.pgen file not found"):
        PgenReader(tmp_path / "x")
    for ext in ("pgen", "pvar", "psam"):
        (tmp_path / f"y.{ext}").write_text("#IID\nS1\n" if ext == "psam" else "#CHROM\tPOS\tID\tREF\tALT\n")
    with pytest.raises(InputError, match="not a PLINK 2 .pgen"):
        PgenReader(tmp_path / "y")
    (tmp_path / "z.pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n1\tabc\tv\tA\tC\n")
    from cipherome.genomics.io.pgen import read_pvar

    with pytest.raises(InputError, match=r"z\.pvar, line 2: position 'abc'"):
        read_pvar(tmp_path / "z.pvar")


def test_pack_kernel_equals_bed_packing():
    """pgenlib's int8 calls (0, 1, 2, -9) packed by the table-free kernel equal packed.pack_dosage's .bed codes,
    for widths with and without a partial last byte."""
    from cipherome.genomics.io.packed import pack_dosage
    from cipherome.genomics.io.pgen import _pack_calls

    rng = np.random.default_rng(3)
    for n in (1, 4, 7, 1001):
        calls = rng.choice(np.array([0, 1, 2, -9], dtype=np.int8), size=(13, n))
        out = np.empty_like(pack_dosage(np.maximum(calls, -1)))
        _pack_calls(calls, out)
        assert np.array_equal(out, pack_dosage(np.maximum(calls, -1))), n
