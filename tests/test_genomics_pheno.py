"""Phenotype/covariate files in PLINK conventions and their matching to genotype samples."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from cipherome.genomics.io.blocks import SampleTable
from cipherome.genomics.errors import InputError
from cipherome.genomics.io.pheno import align_to_samples, match_samples, read_covar, read_pheno

GENO = SampleTable.from_columns(["a", "b", "c", "d"], ["f1", "f1", "f2", "f3"], [1, 2, 0, 1])


def _write(tmp_path, text, name="p.txt"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("header, rows", [
    ("#FID IID", ["f1 a", "f1 b", "f2 c"]),
    ("FID\tIID", ["f1\ta", "f1\tb", "f2\tc"]),
    ("#IID", ["a", "b", "c"]),
])
def test_header_forms(tmp_path, header, rows):
    vals = ["1.5 2", "NA 1", "-9 0"]
    text = f"{header} qt dis\n" + "".join(f"{r} {v}\n" for r, v in zip(rows, vals))
    t = read_pheno(_write(tmp_path, text))
    assert t.names == ["qt", "dis"]
    assert list(t.binary) == [False, True]
    np.testing.assert_array_equal(t.column("qt"), [1.5, np.nan, np.nan])
    np.testing.assert_array_equal(t.column("dis"), [1.0, 0.0, np.nan])  # 2 case, 1 control, 0 missing
    aligned = align_to_samples(t, GENO)
    np.testing.assert_array_equal(aligned[:, 0], [1.5, np.nan, np.nan, np.nan])


def test_no_header_and_missing_tokens(tmp_path):
    t = read_pheno(_write(tmp_path, "f1 a 3.5 .\nf1 b nan 7\nf2 c -9.0 NA\n"))
    assert t.names == ["PHENO1", "PHENO2"]
    np.testing.assert_array_equal(t.values, [[3.5, np.nan], [np.nan, 7.0], [np.nan, np.nan]])


def test_control_zero_coding(tmp_path, caplog):
    p = _write(tmp_path, "#IID y\na 0\nb 1\nc NA\n")
    with caplog.at_level(logging.WARNING):
        t = read_pheno(p)  # PLINK's default: 0 missing, 1 control -> warns: no cases
    assert t.binary[0] and "control_zero" in caplog.text
    np.testing.assert_array_equal(t.values[:, 0], [np.nan, 0.0, np.nan])
    t1 = read_pheno(p, control_zero=True)
    assert t1.binary[0]
    np.testing.assert_array_equal(t1.values[:, 0], [0.0, 1.0, np.nan])


def test_column_selection_and_errors(tmp_path):
    p = _write(tmp_path, "#FID IID x y\nf1 a 1 2\nf1 b 3 4\n")
    assert read_covar(p, ["y"]).names == ["y"]
    with pytest.raises(InputError, match=r"p.txt: no column named 'z'; the file has: x y"):
        read_pheno(p, ["z"])
    bad = _write(tmp_path, "#FID IID x\nf1 a 1\nf1 b male\n", "bad.txt")
    with pytest.raises(InputError, match=r"bad.txt, line 3, column 'x': 'male' is not a number"):
        read_covar(bad)
    short = _write(tmp_path, "#FID IID x\nf1 a 1\nf1 b\n", "short.txt")
    with pytest.raises(InputError, match=r"short.txt, line 3: 2 columns, the header has 3"):
        read_pheno(short)
    dup = _write(tmp_path, "#FID IID x\nf1 a 1\nf1 a 2\n", "dup.txt")
    with pytest.raises(InputError, match=r"dup.txt, line 3: sample .* listed twice"):
        read_pheno(dup)


def test_matching_fid_iid_and_unknown_samples(tmp_path, caplog):
    p = _write(tmp_path, "#FID IID x\nf1 a 1\nf9 b 2\nf3 d 4\nzz q 5\n")
    t = read_pheno(p)
    with caplog.at_level(logging.INFO):
        idx = match_samples(GENO, t)
    assert list(idx) == [0, -1, -1, 2]  # b is in another family; c has no row
    assert "2 sample(s) not in the genotype file" in caplog.text
    assert "2 genotype sample(s) without a row" in caplog.text
    with pytest.raises(InputError) as e:
        match_samples(GENO, t, strict=True)
    assert str(p) in str(e.value) and "not in the genotype file" in str(e.value)
    # VCF samples (no FID) match on IID alone; so do .fam files whose FIDs are all "0"
    vcf_samples = SampleTable.from_columns(["a", "b", "c", "d"])
    assert list(match_samples(vcf_samples, t)) == [0, 1, -1, 2]
    zero = SampleTable.from_columns(["a", "b", "c", "d"], ["0"] * 4)
    assert list(match_samples(zero, t)) == [0, 1, -1, 2]
    only = _write(tmp_path, "#IID x\na 1\nb 2\nc 3\nd 4\n", "iid.txt")
    assert list(match_samples(GENO, read_pheno(only), strict=True)) == [0, 1, 2, 3]


def test_cells_missing_tokens_and_non_finite_values(tmp_path):
    """Every missing spelling becomes NaN, numbers keep their value, and a non-finite cell is named."""
    p = _write(tmp_path, "#FID IID x y\nf1 a NA -9\nf1 b . -9.0\nf2 c nan 1e3\nf3 d 2.5 -8.5\n")
    t = read_covar(p)
    np.testing.assert_array_equal(t.values, [[np.nan, np.nan], [np.nan, np.nan], [np.nan, 1e3], [2.5, -8.5]])
    for tok in ("inf", "-nan", "1e999"):
        bad = _write(tmp_path, f"#FID IID x y\nf1 a 1 2\nf1 b 3 {tok}\n", "inf.txt")
        with pytest.raises(InputError, match=rf"inf.txt, line 3, column 'y': '{tok}' is not finite"):
            read_covar(bad)
