"""Genotype readers on real files: a VCF/BCF written with pysam, converted to .bed by plink2, read back by both readers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from genomics_files import expected_dosage, make_vcf, needs_plink2, plink2, write_bfile, write_sex_file

from cipherome.genomics.io.bed import BedReader, read_bim, read_fam
from cipherome.genomics.io.blocks import GenotypeBlock, VariantTable
from cipherome.genomics.errors import InputError
from cipherome.genomics.io.packed import pack_dosage, swap_alleles, unpack_dosage
from cipherome.genomics.io.vcf import VcfReader


def _all(reader):
    blocks = list(reader.blocks())
    return np.concatenate([b.dosage for b in blocks]), blocks


@pytest.fixture(scope="module")
def vcf_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("vcf")
    info = make_vcf(d / "g.vcf", np.random.default_rng(7))
    make_vcf(d / "g.bcf", np.random.default_rng(7), mode="wb")
    make_vcf(d / "g.vcf.gz", np.random.default_rng(7), mode="wz")
    import pysam

    pysam.tabix_index(str(d / "g.vcf.gz"), preset="vcf", force=True)
    info["dir"] = d
    return info


# --- packed codes ------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_pack_unpack_roundtrip(n):
    rng = np.random.default_rng(n)
    g = rng.integers(-1, 3, size=(6, n)).astype(np.int8)
    p = pack_dosage(g)
    assert p.shape == (6, (n + 3) // 4)
    assert (unpack_dosage(p, n) == g).all()
    idx = np.array(sorted(rng.choice(n, size=max(1, n // 2), replace=False)))
    assert (unpack_dosage(p, n, idx) == g[:, idx]).all()
    flip = rng.random(6) < 0.5
    sw = unpack_dosage(swap_alleles(p, flip), n)
    exp = g.copy()
    exp[flip] = np.where(g[flip] < 0, -1, 2 - g[flip])
    assert (sw == exp).all()


def test_pack_rejects_bad_values():
    with pytest.raises(ValueError):
        pack_dosage(np.array([[0, 3]], dtype=np.int8))


# --- VCF / BCF ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["g.vcf", "g.bcf", "g.vcf.gz"])
def test_vcf_dosage_conventions(vcf_set, name):
    """Split multi-allelic, haploid -> 0/2, missing -> -1, in every container format."""
    r = VcfReader(vcf_set["dir"] / name, block_size=17)
    got, blocks = _all(r)
    assert (got == expected_dosage(vcf_set["records"])).all()
    assert r.stats.multiallelic_split == 1 and r.stats.haploid_calls > 0
    assert [b.start for b in blocks] == list(np.cumsum([0] + [len(b) for b in blocks[:-1]]))
    v = np.concatenate([b.variants.alt for b in blocks])
    tri = [rec for rec in vcf_set["records"] if len(rec[4]) == 2][0]
    rows = np.flatnonzero(np.concatenate([b.variants.pos for b in blocks]) == tri[1])
    assert list(v[rows]) == list(tri[4])  # one row per ALT, in ALT order


def test_vcf_skip_multiallelic(vcf_set):
    r = VcfReader(vcf_set["dir"] / "g.vcf", multiallelic="skip")
    got, _ = _all(r)
    assert (got == expected_dosage(vcf_set["records"], split=False)).all()
    assert r.stats.multiallelic_skipped == 1


def test_vcf_sample_subset_and_region(vcf_set):
    names = vcf_set["samples"]
    want = [names[5], names[2], names[11]]
    r = VcfReader(vcf_set["dir"] / "g.vcf.gz", samples=want, region="X")
    got, blocks = _all(r)
    assert list(r.samples.iid) == [names[2], names[5], names[11]]  # file order
    full = expected_dosage(vcf_set["records"])
    chroms = np.array([rec[0] for rec in vcf_set["records"] for _ in rec[4]])
    assert (got == full[chroms == "X"][:, [2, 5, 11]]).all()
    assert set(np.concatenate([b.variants.chrom for b in blocks])) == {"X"}
    with pytest.raises(InputError, match="not in the header"):
        VcfReader(vcf_set["dir"] / "g.vcf", samples=["nobody"])
    with pytest.raises(InputError, match="index"):
        list(VcfReader(vcf_set["dir"] / "g.vcf", region="X").blocks())


@needs_plink2
def test_vcf_and_plink2_bed_identical(vcf_set, tmp_path):
    """plink2 --vcf ... --make-bed, then both readers give the same genotypes (A1 = ALT)."""
    d = vcf_set["dir"]
    write_sex_file(tmp_path / "g.sex", vcf_set["samples"], vcf_set["males"])
    plink2(tmp_path, "--vcf", str(d / "g.vcf"), "--update-sex", "g.sex", "--max-alleles", "2",
           "--make-bed", "--out", "g")
    bed = BedReader(tmp_path / "g", block_size=11)
    gb, bblocks = _all(bed)
    gv, vblocks = _all(VcfReader(d / "g.vcf", multiallelic="skip", block_size=23))
    assert gb.shape == gv.shape and (gb == gv).all()
    for f in ("chrom", "pos", "ref", "alt"):
        a = np.concatenate([getattr(b.variants, f) for b in bblocks])
        b = np.concatenate([getattr(b.variants, f) for b in vblocks])
        assert (a == b).all(), f
    assert list(bed.samples.iid) == vcf_set["samples"]
    assert (bed.samples.sex == np.where(vcf_set["males"], 1, 2)).all()
    # the same from the BCF, and a subset from the .bed
    gbcf, _ = _all(VcfReader(d / "g.bcf", multiallelic="skip"))
    assert (gbcf == gb).all()
    sub = BedReader(tmp_path / "g", samples=[vcf_set["samples"][3], vcf_set["samples"][1]])
    gs, _ = _all(sub)
    assert (gs == gb[:, [1, 3]]).all()


def _vcf_text(tmp_path: Path, body: str, name: str = "bad.vcf") -> Path:
    p = tmp_path / name
    p.write_text("##fileformat=VCFv4.2\n##contig=<ID=1>\n"
                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">\n'
                 "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\n"
                 "1\t5\t.\tA\tC\t.\t.\t.\tGT\t0/1\t0/0\t1/1\n" + body)
    return p


@pytest.mark.parametrize("line, problem", [
    ("1\t7\t.\tA\tC\t.\t.\t.\tGT\t0/1\t0/0\n", "2 sample|columns"),  # a sample column short
    ("1\tabc\t.\tA\tC\t.\t.\t.\tGT\t0/1\t0/0\t1/1\n", "POS 'abc'"),
    ("1\t7\t.\tA\tC\t.\t.\t.\tGT\t0/x\t0/0\t1/1\n", "GT '0/x'"),
    ("1\t7\t.\tA\tC\t.\t.\t.\tGT\t0/3\t0/0\t1/1\n", "allele index"),
])
def test_malformed_vcf_names_file_and_record(tmp_path, line, problem):
    p = _vcf_text(tmp_path, line + "1\t9\t.\tA\tC\t.\t.\t.\tGT\t0/1\t0/0\t1/1\n")
    with pytest.raises(InputError) as e:
        list(VcfReader(p).blocks())
    msg = str(e.value)
    assert str(p) in msg and "record 2" in msg and "line 6" in msg
    assert any(s in msg for s in problem.split("|")), msg


@pytest.mark.parametrize("third", ["1", "1/1"])  # haploid call: general parser; all diploid: fast path
def test_vcf_half_calls(tmp_path, third):
    p = _vcf_text(tmp_path, f"1\t7\t.\tA\tC\t.\t.\t.\tGT\t./1\t0|1\t{third}\n")
    with pytest.raises(InputError, match="half-call"):
        list(VcfReader(p).blocks())
    expect = {"missing": -1, "haploid": 2, "reference": 1}
    for mode, d in expect.items():
        g, _ = _all(VcfReader(p, half_call=mode))
        assert g[1].tolist() == [d, 1, 2]


def test_vcf_polyploid_and_missing_gt(tmp_path):
    p = tmp_path / "odd.vcf"
    p.write_text("##fileformat=VCFv4.2\n##contig=<ID=1>\n"
                 '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">\n'
                 '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="d">\n'
                 "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\n"
                 "1\t5\t.\tA\tC\t.\t.\t.\tGT\t0/1/1\t.\t1|1\n"
                 "1\t6\t.\tA\tC\t.\t.\t.\tDP\t3\t4\t5\n"
                 "1\t7\t.\tA\t.\t.\t.\t.\tGT:DP\t0/0:1\t./.:2\t0:3\n")
    r = VcfReader(p)
    g, blocks = _all(r)
    assert g.tolist() == [[-1, -1, 2], [-1, -1, -1], [0, -1, 0]]
    assert r.stats.polyploid_calls == 1
    assert list(np.concatenate([b.variants.alt for b in blocks])) == ["C", "C", "."]


def test_not_a_vcf(tmp_path):
    p = tmp_path / "x.vcf"
    p.write_text("hello\n")
    with pytest.raises(InputError, match="cannot open as VCF"):
        VcfReader(p)


# --- PLINK 1 .bed ------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 8, 13])
def test_genotype_block_sources(n):
    """A block made from sources gives the same arrays as one made from arrays, asked in either order."""
    g = np.random.default_rng(n).integers(-1, 3, size=(6, n)).astype(np.int8)
    p = pack_dosage(g)
    v = VariantTable.from_columns(["1"] * 6, np.arange(6) + 1, ["."] * 6, ["A"] * 6, ["C"] * 6)
    calls = []

    def source(a, name):
        def make():
            calls.append(name)
            return a.copy()
        return make

    for kw in ({"dosage_source": source(g, "d"), "packed_source": source(p, "p")},
               {"dosage_source": source(g, "d")}, {"packed_source": source(p, "p")}):
        for first in ("dosage", "packed"):
            calls.clear()
            b = GenotypeBlock(v, 0, n_samples=n, **kw)
            getattr(b, first)
            assert np.array_equal(b.dosage, g) and np.array_equal(b.packed, p)
            assert np.array_equal(b.dosage, GenotypeBlock(v, 0, packed=p, n_samples=n).dosage)
            assert np.array_equal(b.packed, GenotypeBlock(v, 0, dosage=g).packed)
            assert sorted(calls) == sorted(k[0] for k in kw), "each source given is called, and once"
    with pytest.raises(ValueError, match="source gave"):
        GenotypeBlock(v, 0, n_samples=n, dosage_source=lambda: g[:3]).dosage
    with pytest.raises(ValueError, match="needs dosage or packed"):
        GenotypeBlock(v, 0, n_samples=n)


def _small_bfile(tmp_path: Path, m: int = 9, n: int = 7) -> tuple[Path, np.ndarray]:
    g = np.random.default_rng(1).integers(-1, 3, size=(m, n)).astype(np.int8)
    prefix = write_bfile(tmp_path / "s", g, ["1"] * m, np.arange(1, m + 1) * 10,
                         [f"v{j}" for j in range(m)], ["A"] * m, ["G"] * m, [f"i{i}" for i in range(n)])
    return prefix, g


@pytest.mark.parametrize("block_size", [1, 2, 4, 100])
def test_bed_blocks(tmp_path, block_size):
    prefix, g = _small_bfile(tmp_path)
    got, blocks = _all(BedReader(prefix, block_size=block_size))
    assert (got == g).all()
    pre = list(BedReader(prefix, block_size=block_size).blocks(prefetch=True))
    assert (np.concatenate([b.dosage for b in pre]) == g).all()
    assert [b.start for b in pre] == [b.start for b in blocks]
    assert all(b.packed.shape == (len(b), 2) for b in blocks)
    v = read_bim(prefix.with_suffix(".bim"))
    assert list(v.alt) == ["G"] * 9 and list(v.ref) == ["A"] * 9 and v.pos[3] == 40
    assert list(read_fam(prefix.with_suffix(".fam")).iid) == [f"i{i}" for i in range(7)]


def test_truncated_bed(tmp_path):
    prefix, _ = _small_bfile(tmp_path)
    bed = prefix.with_suffix(".bed")
    bed.write_bytes(bed.read_bytes()[:-3])
    with pytest.raises(InputError) as e:
        BedReader(prefix)
    assert str(bed) in str(e.value) and "truncated" in str(e.value)


def test_fam_count_mismatch(tmp_path):
    prefix, _ = _small_bfile(tmp_path, n=8)
    fam = prefix.with_suffix(".fam")
    fam.write_text(fam.read_text() + "i8\ti8\t0\t0\t0\t-9\n")  # 9 samples need 3 bytes per variant
    with pytest.raises(InputError) as e:
        BedReader(prefix)
    assert str(prefix.with_suffix(".bed")) in str(e.value) and "9 samples" in str(e.value)


def test_bad_magic_and_bad_lines(tmp_path):
    prefix, _ = _small_bfile(tmp_path)
    bed = prefix.with_suffix(".bed")
    raw = bed.read_bytes()
    bed.write_bytes(b"\x6c\x1b\x00" + raw[3:])
    with pytest.raises(InputError, match="sample-major"):
        BedReader(prefix)
    bed.write_bytes(b"PK\x03" + raw[3:])
    with pytest.raises(InputError, match="not a PLINK 1 .bed"):
        BedReader(prefix)
    bed.write_bytes(raw)
    fam = prefix.with_suffix(".fam")
    fam.write_text("a b 0 0\n" + fam.read_text())
    with pytest.raises(InputError, match=r"s.fam, line 1: expected 6 columns"):
        BedReader(prefix)
    _small_bfile(tmp_path)
    bim = prefix.with_suffix(".bim")
    lines = bim.read_text().splitlines(keepends=True)
    lines[4] = "1\tv4\t0\tfifty\tG\tA\n"
    bim.write_text("".join(lines))
    with pytest.raises(InputError, match=r"s.bim, line 5: position 'fifty'"):
        list(BedReader(prefix, block_size=2).blocks())


def test_vcf_parses_text_in_pieces(vcf_set, monkeypatch):
    """A block assembled from several parsed pieces (tiny text budget) equals one parse."""
    import cipherome.genomics.io.vcf as vcfmod

    whole, _ = _all(VcfReader(vcf_set["dir"] / "g.bcf", block_size=40))
    monkeypatch.setattr(vcfmod, "_TEXT_BUDGET", 1)
    pieces, blocks = _all(VcfReader(vcf_set["dir"] / "g.bcf", block_size=40))
    assert (pieces == whole).all() and all(len(b) >= 40 for b in blocks[:-1])


def test_vcf_fast_and_general_gt_paths_agree(tmp_path):
    """GT-only records (fast path) and GT:DP records (general parser) give the same dosages."""
    rng = np.random.default_rng(8)
    n = 23
    head = ("##fileformat=VCFv4.2\n##contig=<ID=1>\n"
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">\n'
            '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="d">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"s{i}" for i in range(n)) + "\n")
    lines_gt, lines_dp = [], []
    for j in range(40):
        n_alt = 2 if j % 9 == 0 else 1
        calls = []
        for _ in range(n):
            a, b = (str(x) if rng.random() > 0.05 else "." for x in rng.integers(0, n_alt + 1, size=2))
            if (a == ".") != (b == "."):
                a = b = "."
            calls.append(a + ("|" if rng.random() < 0.3 else "/") + b)
        alts = ",".join("CGT"[:n_alt])
        fixed = f"1\t{100 + j}\t.\tA\t{alts}\t.\t.\t."
        lines_gt.append(fixed + "\tGT\t" + "\t".join(calls) + "\n")
        lines_dp.append(fixed + "\tGT:DP\t" + "\t".join(c + ":7" for c in calls) + "\n")
    (tmp_path / "gt.vcf").write_text(head + "".join(lines_gt))
    (tmp_path / "dp.vcf").write_text(head + "".join(lines_dp))
    fast, _ = _all(VcfReader(tmp_path / "gt.vcf"))
    general, _ = _all(VcfReader(tmp_path / "dp.vcf"))
    assert fast.shape == (45, n) and (fast == general).all() and (fast == -1).any()
    bad = lines_gt[3].split("\t")
    bad[12] = "0/4"
    (tmp_path / "bad.vcf").write_text(head + "".join(lines_gt[:3]) + "\t".join(bad) + "".join(lines_gt[4:]))
    with pytest.raises(InputError, match="record 4 .*allele index"):
        _all(VcfReader(tmp_path / "bad.vcf"))
