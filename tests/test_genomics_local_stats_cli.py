"""``cipherome local-stats`` against plink2 --freq --geno-counts --missing on the same files (byte-identical)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from genomics_files import PLINK2, make_vcf, needs_plink2, plink2, write_bfile, write_sex_file

from cipherome.cli.main import cli

SUFFIXES = ("afreq", "vmiss", "gcount")


def _run(*args):
    r = CliRunner().invoke(cli, ["local-stats", *args])
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ls")
    info = make_vcf(d / "g.vcf", np.random.default_rng(11), n_samples=60, per_chrom=40)
    write_sex_file(d / "g.sex", info["samples"], info["males"])
    if PLINK2 is not None:
        plink2(d, "--vcf", "g.vcf", "--update-sex", "g.sex", "--max-alleles", "2", "--make-bed", "--out", "g")
    rng = np.random.default_rng(3)
    lines = ["#IID\tdis\tqt"]
    for i, s in enumerate(info["samples"]):
        if i == 4:
            continue  # one genotype sample without a row
        qt = "NA" if i % 7 == 0 else f"{rng.normal():.3f}"
        lines.append(f"{s}\t{rng.choice(['1', '2', '2', 'NA', '0'])}\t{qt}")
    lines.append("stranger\t2\t0.1")  # a phenotype row without genotypes
    (d / "g.pheno").write_text("\n".join(lines) + "\n")
    info["dir"] = d
    return info


def _same(a, b):
    for s in SUFFIXES:
        assert (a.parent / f"{a.name}.{s}").read_bytes() == (b.parent / f"{b.name}.{s}").read_bytes(), s


@needs_plink2
def test_bfile_equals_plink2(data):
    d = data["dir"]
    r = _run("--bfile", str(d / "g"), "--out", str(d / "mine"), "--block-size", "13")
    assert r.exit_code == 0, r.output
    plink2(d, "--bfile", "g", "--freq", "--geno-counts", "--missing", "--out", "ref")
    _same(d / "mine", d / "ref")


@needs_plink2
def test_vcf_equals_plink2(data):
    """VCF input: no sex (chrX diploid, chrY uncounted) as plink2 --vcf; half-calls none; tri-allelic skipped."""
    d = data["dir"]
    r = _run("--vcf", str(d / "g.vcf"), "--multiallelic", "skip", "--out", str(d / "mv"))
    assert r.exit_code == 0, r.output
    plink2(d, "--vcf", "g.vcf", "--max-alleles", "2", "--freq", "--geno-counts", "--missing", "--out", "rv")
    _same(d / "mv", d / "rv")


@needs_plink2
@pytest.mark.parametrize("name", ["dis", "qt"])
def test_pheno_equals_plink2_require_pheno(data, name):
    d = data["dir"]
    r = _run("--bfile", str(d / "g"), "--pheno", str(d / "g.pheno"), "--pheno-name", name,
             "--out", str(d / f"mp_{name}"))
    assert r.exit_code == 0, r.output
    plink2(d, "--bfile", "g", "--pheno", "g.pheno", "--pheno-name", name, "--require-pheno", name,
           "--freq", "--geno-counts", "--missing", "--out", f"rp_{name}")
    _same(d / f"mp_{name}", d / f"rp_{name}")
    if name == "dis":
        for status, label in (("case", "cases"), ("control", "controls")):
            plink2(d, "--bfile", "g", "--pheno", "g.pheno", "--pheno-name", name, "--keep-if",
                   name, "==", status, "--geno-counts", "--out", f"rk_{status}")
            assert (d / f"mp_{name}.{label}.gcount").read_bytes() == (d / f"rk_{status}.gcount").read_bytes()
    else:
        assert not (d / f"mp_{name}.cases.gcount").exists()


def test_errors_are_clean_and_leave_no_output(data, tmp_path):
    d = data["dir"]
    vcf = tmp_path / "bad.vcf"
    text = (d / "g.vcf").read_text().splitlines(keepends=True)
    body = [i for i, ln in enumerate(text) if not ln.startswith("#")]
    bad = text[body[50]].split("\t")
    bad[12] = "0/z"
    text[body[50]] = "\t".join(bad)
    vcf.write_text("".join(text))
    out = tmp_path / "o"
    r = _run("--vcf", str(vcf), "--out", str(out), "--block-size", "10")
    assert r.exit_code != 0
    assert "Traceback" not in r.output and r.exception is not None and isinstance(r.exception, SystemExit)
    assert str(vcf) in r.output and "record 51" in r.output and "GT '0/z'" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.vcf"]  # nothing half-written
    # unknown samples in the phenotype file with strict matching
    r = _run("--vcf", str(d / "g.vcf"), "--pheno", str(d / "g.pheno"), "--strict-samples", "--out", str(out))
    assert r.exit_code != 0 and "g.pheno" in r.output and "'stranger'" in r.output
    r = _run("--out", str(out))
    assert r.exit_code != 0 and "exactly one of --bfile" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.vcf"]


def test_bfile_with_sex_chromosomes_from_numpy(tmp_path):
    """Hand-made .bed with MT/X/Y: counts follow plink2's haploid rules (checked by hand)."""
    g = np.array([[0, 1, 2, -1],   # MT: everyone haploid: het -> missing in gcount, 0.5 ALT in afreq
                  [1, 1, 2, 0],    # X: sample 0 and 1 are male
                  [2, 1, 0, 2]],   # Y: only males count
                 dtype=np.int8)
    write_bfile(tmp_path / "s", g, ["MT", "X", "Y"], [1, 2, 3], ["m", "x", "y"], ["A"] * 3, ["C"] * 3,
                ["a", "b", "c", "d"], sex=[1, 1, 2, 0])
    r = _run("--bfile", str(tmp_path / "s"), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    gc = (tmp_path / "o.gcount").read_text().splitlines()[1:]
    assert gc == ["MT\tm\tA\tC\t0\t0\t0\t1\t1\t2", "X\tx\tA\tC\t1\t0\t1\t0\t0\t2",
                  "Y\ty\tA\tC\t0\t0\t0\t0\t1\t1"]
    af = (tmp_path / "o.afreq").read_text().splitlines()[1:]
    assert af == ["MT\tm\tA\tC\t0.5\t3", "X\tx\tA\tC\t0.5\t6", "Y\ty\tA\tC\t0.75\t2"]
    vm = (tmp_path / "o.vmiss").read_text().splitlines()[1:]
    assert vm == ["MT\tm\t1\t4\t0.25", "X\tx\t0\t4\t0", "Y\ty\t0\t2\t0"]


@needs_plink2
def test_number_format_matches_plink2_on_rare_and_missing(tmp_path):
    """%g edge cases (1e-05-style exponents, rounding to 6 digits, all-missing 'nan') as plink2 prints them."""
    rng = np.random.default_rng(5)
    n, m = 6001, 300
    g = np.zeros((m, n), dtype=np.int8)
    for j in range(m):
        k = int(rng.integers(0, 40))
        g[j, rng.choice(n, size=k, replace=False)] = rng.integers(1, 3, size=k)
        g[j, rng.random(n) < rng.uniform(0, 0.2)] = -1
    g[7] = -1  # all missing: ALT_FREQS nan
    chrom = rng.choice(["1", "5", "22"], size=m)
    order = np.lexsort((np.arange(m), chrom.astype(int)))
    g, chrom = g[order], chrom[order]
    write_bfile(tmp_path / "r", g, chrom, np.arange(m) + 1, [f"v{j}" for j in range(m)], ["A"] * m, ["T"] * m,
                [f"s{i}" for i in range(n)], sex=rng.integers(0, 3, size=n))
    r = _run("--bfile", str(tmp_path / "r"), "--out", str(tmp_path / "mine"))
    assert r.exit_code == 0, r.output
    plink2(tmp_path, "--bfile", "r", "--freq", "--geno-counts", "--missing", "--out", "ref")
    _same(tmp_path / "mine", tmp_path / "ref")
    assert "e-05" in (tmp_path / "mine.afreq").read_text()
