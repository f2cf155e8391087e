"""Dosage readers (.pgen, BGEN 8/16-bit through cbgen, VCF DS) on files plink2 wrote, against plink2 reading them.

``cipherome local-stats`` must equal ``plink2 --freq --missing --geno-counts`` byte for
byte on each file (ALT_FREQS from the dosages, rounded to 1/16384 as plink2's import
rounds them; .vmiss/.gcount from the hard calls at its 0.1 threshold).
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from dosage_sim import write_dosage_study
from genomics_files import needs_plink2, plink2

from cipherome.cli.main import cli
from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bgen import BgenReader, read_sample_file
from cipherome.genomics.io.pgen import PgenReader
from cipherome.genomics.io.vcf_dosage import VcfDosageReader
from cipherome.genomics.simulate import demo_config

pytestmark = needs_plink2


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    d = tmp_path_factory.mktemp("dosage_readers")
    return write_dosage_study(demo_config().replace(n_samples=300, n_variants=200, seed=3), d, plink2), d


def _same(d, a, b):
    for s in ("afreq", "vmiss", "gcount"):
        assert (d / f"{a}.{s}").read_bytes() == (d / f"{b}.{s}").read_bytes(), s


@pytest.mark.parametrize("kind", ["pfile", "bgen8", "bgen16", "vcf"])
def test_local_stats_equals_plink2(ds, kind):
    files, d = ds
    f = files["site2"]
    if kind == "pfile":
        mine, theirs = ["--pfile", str(f["pfile"])], ["--pfile", str(f["pfile"])]
    elif kind == "vcf":
        mine, theirs = ["--vcf", str(f["vcf"]), "--vcf-dosage", "DS"], ["--vcf", str(f["vcf"]), "dosage=DS"]
    else:
        sample = str(f["sample" + kind[4:]])
        mine = ["--bgen", str(f[kind]), "--sample", sample]
        theirs = ["--bgen", str(f[kind]), "ref-last", "--sample", sample]
    r = CliRunner().invoke(cli, ["local-stats", *mine, "--block-size", "37", "--out", str(d / f"m_{kind}")])
    assert r.exit_code == 0, r.output
    plink2(d, *theirs, "--freq", "--missing", "--geno-counts", "--out", f"p_{kind}")
    _same(d, f"m_{kind}", f"p_{kind}")


def test_readers_agree_with_the_pgen(ds):
    """16-bit BGEN and VCF DS carry the .pgen's dosages exactly; 8-bit within its 1/255 grid."""
    files, _ = ds
    f = files["site3"]
    pg = PgenReader(f["pfile"])
    rows = np.arange(pg.n_variants)
    ref = pg.read_dosage(rows)
    assert np.isnan(ref).any() and ((ref[~np.isnan(ref)] % 1) != 0).any()
    b16 = BgenReader(f["bgen16"], f["sample16"])
    assert list(b16.variants.ref) == list(pg.variants.ref) and list(b16.variants.alt) == list(pg.variants.alt)
    assert np.array_equal(b16.read_dosage(rows), ref, equal_nan=True)
    assert np.array_equal(b16.read_hard(rows), pg.read_hard(rows))
    b8 = BgenReader(f["bgen8"], f["sample8"])
    assert np.nanmax(np.abs(b8.read_dosage(rows) - ref)) <= 1.0 / 255
    _, hard, dos = VcfDosageReader(f["vcf"]).read_all()
    assert np.array_equal(dos, ref, equal_nan=True) and np.array_equal(hard, pg.read_hard(rows))


def test_bad_inputs_name_the_file(ds, tmp_path):
    files, _ = ds
    f = files["site1"]
    bad = tmp_path / "bad.sample"
    bad.write_text("ID_1 ID_2 missing\n0 0 0\nA A 0\n")
    with pytest.raises(InputError, match="lists 1 samples but"):
        BgenReader(f["bgen8"], bad)
    bad.write_text("FID IID\n")
    with pytest.raises(InputError, match=r"bad\.sample, line 1: not an Oxford"):
        read_sample_file(bad)
    _, hard, dos = VcfDosageReader(f["vcf"], "GP").read_all()  # no GP in the header: the GT calls, as plink2
    assert np.array_equal(dos[~np.isnan(dos)], hard[hard >= 0])
    (tmp_path / "x.vcf").write_text("not a vcf\n")
    with pytest.raises(InputError, match=r"x\.vcf: cannot open as VCF/BCF"):
        VcfDosageReader(tmp_path / "x.vcf")
    with pytest.raises(InputError, match="BGEN file not found"):
        BgenReader(tmp_path / "none.bgen")
