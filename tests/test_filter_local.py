"""Site-local stage of variant filtering: PED parsing, VCF rows with FILTER/GQ/DP, CSQ/ANN/TSV annotation, pre-filter, keys.

Everything here is plaintext at one site; errors must name the file and line.
"""
import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.features import cohort_counts, member_het
from cipherome.genomics.filtering.keys import (_macs, cuckoo_table, hash_keys, lane_table, overflow_probability,
                                               suggest_table)
from cipherome.genomics.filtering.local import PreFilter, read_annotation_tsv, read_ped, read_site, variant_key
from cipherome.genomics.io.ploidy import CHR_X
from tests.filter_sim import simulate, site_variants, write_site_files

HEADER = """##fileformat=VCFv4.2
##contig=<ID=1>
##contig=<ID=X>
##FILTER=<ID=LowQual,Description="low">
##INFO=<ID=CSQ,Number=.,Type=String,Description="Consequence annotations from Ensembl VEP. Format: Allele|Consequence|IMPACT|SYMBOL|gnomAD_AF">
##INFO=<ID=POP_AF,Number=A,Type=Float,Description="population AF">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="GQ">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="DP">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tK1\tK2\tK3
"""


def _write(tmp_path, records: str, ped: str | None = None):
    vcf = tmp_path / "s.vcf"
    vcf.write_text(HEADER + records)
    p = tmp_path / "s.ped"
    p.write_text(ped or "F1 K1 K2 K3 1 2\nF1 K2 0 0 1 1\nF1 K3 0 0 2 1\n")
    return vcf, p


def test_read_ped_codes_and_errors(tmp_path):
    p = tmp_path / "a.ped"
    p.write_text("# comment\nF1 C F M 1 2\nF1 F 0 0 1 1\nF1 M 0 0 2 -9\nF2 X 0 0 0 0 extra\n")
    ped = read_ped(p)
    assert list(ped.iid) == ["C", "F", "M", "X"]
    assert list(ped.sex) == [1, 1, 2, 0] and list(ped.affected) == [1, 0, -1, -1]
    for body, what in [("F1 C F M 1\n", "line 1: 5 columns"), ("F1 C 0 0 3 2\n", "line 1: SEX '3'"),
                       ("F1 C 0 0 1 7\n", "line 1: PHENOTYPE '7'"), ("F1 C 0 0 1 2\nF1 C 0 0 1 2\n", "line 2"),
                       ("F1 C C 0 1 2\n", "its own parent"), ("\n", "no individuals")]:
        p.write_text(body)
        with pytest.raises(InputError, match=what):
            read_ped(p)
    with pytest.raises(InputError, match="cannot open PED"):
        read_ped(tmp_path / "missing.ped")


def test_keys_are_trimmed_so_split_and_biallelic_records_agree():
    assert variant_key("chr1", 100, "ACT", "ACTT")[0] == "1:101:C:CT"
    assert variant_key("1", 101, "C", "CT")[0] == "1:101:C:CT"
    assert variant_key("1", 100, "ACT", "A")[0] == "1:100:ACT:A"
    assert variant_key("chrX", 5, "g", "a")[0] == "X:5:G:A"


def test_read_site_filter_gq_dp_multiallelic_annotation(tmp_path):
    recs = (
        "1\t100\t.\tACT\tA,ACTT\t50\tPASS\tCSQ=-|frameshift_variant|HIGH|G1|0.001,CTT|inframe_insertion|MODERATE|G1|0.2"
        "\tGT:GQ:DP\t0/1:50:30\t0/2:50:30\t1/2:10:30\n"
        "1\t200\t.\tG\tT\t50\tLowQual\tCSQ=T|missense_variant|MODERATE|G2|0\tGT:GQ:DP\t0/1:50:30\t0/0:50:30\t0/0:50:30\n"
        "1\t300\t.\tG\tC\t50\t.\tCSQ=C|synonymous_variant|LOW|G3|0\tGT:GQ:DP\t0/1:50:5\t./.:50:30\t0/0:50:30\n"
        "1\t400\t.\tG\tA\t50\tPASS\tCSQ=A|missense_variant|MODERATE|G4|0\tGT:GQ:DP\t0/0:50:30\t0/0:50:30\t0/0:50:30\n"
        "X\t500\t.\tC\tT\t50\tPASS\tPOP_AF=0.5;CSQ=T|stop_gained|HIGH|G5|\tGT:GQ:DP\t1:50:30\t0:50:30\t0/1:50:30\n"
        "X\t600\t.\tC\t<DEL>\t50\tPASS\t.\tGT:GQ:DP\t0/1:50:30\t0:50:30\t0/1:50:30\n"
    )
    vcf, ped = _write(tmp_path, recs)
    sv = read_site(vcf, ped, prefilter=PreFilter(min_gq=20, min_dp=10))
    rows = {k: i for i, k in enumerate(sv.keys)}
    # multi-allelic split and trimmed: ACT>A stays, ACT>ACTT becomes 101:C:CT; K3's GQ 10 -> missing
    assert "1:100:ACT:A" in rows and "1:101:C:CT" in rows
    assert list(sv.dosage[rows["1:100:ACT:A"]]) == [1, 0, -1]
    assert list(sv.dosage[rows["1:101:C:CT"]]) == [0, 1, -1]
    assert sv.genes[rows["1:101:C:CT"]] == ("G1",)
    assert sv.consequence[rows["1:101:C:CT"]] == "inframe_insertion"
    # FILTER LowQual: all calls missing, row kept; DP 5 -> missing; all-hom-ref row dropped; symbolic dropped
    assert list(sv.dosage[rows["1:200:G:T"]]) == [-1, -1, -1]
    assert list(sv.dosage[rows["1:300:G:C"]]) == [-1, -1, 0]
    assert "1:400:G:A" not in rows and not any("<DEL>" in k for k in sv.keys)
    # haploid male X call coded 2; X class
    assert list(sv.dosage[rows["X:500:C:T"]]) == [2, 0, 1] and sv.pclass[rows["X:500:C:T"]] == CHR_X
    # pre-filter on population AF (CSQ sub-field or INFO key) and consequences
    sv2 = read_site(vcf, ped, prefilter=PreFilter(max_pop_af=0.01, af_field="gnomAD_AF"))
    assert "1:101:C:CT" not in set(sv2.keys) and "1:100:ACT:A" in set(sv2.keys)
    sv3 = read_site(vcf, ped, prefilter=PreFilter(max_pop_af=0.01, af_field="POP_AF"))
    assert "X:500:C:T" not in set(sv3.keys)
    sv4 = read_site(vcf, ped, prefilter=PreFilter(consequences=["HIGH", "missense_variant"]))
    assert set(sv4.keys) == {"1:100:ACT:A", "1:200:G:T", "X:500:C:T"}
    sv5 = read_site(vcf, ped, prefilter=PreFilter(pass_only=False))
    assert list(sv5.dosage[list(sv5.keys).index("1:200:G:T")]) == [1, 0, 0]


def test_annotation_tsv_overrides_vcf(tmp_path):
    vcf, ped = _write(tmp_path, "1\t200\t.\tG\tT\t50\tPASS\t.\tGT:GQ:DP\t0/1:50:30\t0/0:50:30\t0/0:50:30\n")
    ann = tmp_path / "a.tsv"
    ann.write_text("#CHROM\tPOS\tREF\tALT\tGENE\tCONSEQUENCE\tAF\nchr1\t200\tG\tT\tGA,GB\tmissense_variant\t0.3\n")
    sv = read_site(vcf, ped, ann)
    assert sv.genes[0] == ("GA", "GB") and sv.consequence[0] == "missense_variant"
    assert len(read_site(vcf, ped, ann, PreFilter(max_pop_af=0.1))) == 0
    assert read_annotation_tsv(ann)["1:200:G:T"].af == 0.3
    ann.write_text("#CHROM\tPOS\tREF\tALT\tAF\n1\tx\tG\tT\t0.1\n")
    with pytest.raises(InputError, match="line 2: POS 'x'"):
        read_annotation_tsv(ann)
    ann.write_text("#CHROM\tPOS\tREF\tAF\n")
    with pytest.raises(InputError, match="must name CHROM POS REF ALT"):
        read_annotation_tsv(ann)


def test_bad_inputs_name_file_and_line(tmp_path):
    vcf, ped = _write(tmp_path, "1\t200\t.\tG\tT\t50\tPASS\t.\tGT:GQ:DP\t0/x:50:30\t0/0:50:30\t0/0:50:30\n")
    with pytest.raises(InputError, match=r"s\.vcf.*line 11"):
        read_site(vcf, ped)
    vcf, ped = _write(tmp_path, "1\t200\t.\tG\tT\t50\tPASS\t.\tGT\t0/1\t0/0\t0/0\n", ped="F9 Z 0 0 1 2\n")
    with pytest.raises(InputError, match="none of its 3 samples is in the PED"):
        read_site(vcf, ped)
    with pytest.raises(InputError, match="not found"):
        read_site(tmp_path / "nope.vcf", ped)


def test_simulated_files_read_back_as_simulated(tmp_path):
    st = simulate(3)
    for s in range(3):
        data = write_site_files(st, s, tmp_path)
        got = read_site(data["vcf"], data["ped"])
        want = site_variants(st, s)
        order = np.argsort(got.keys)
        worder = np.argsort(want.keys)
        assert list(got.keys[order]) == list(want.keys[worder])
        assert np.array_equal(got.dosage[order], want.dosage[worder])
        assert [got.genes[i] for i in order] == [want.genes[i] for i in worder]


def test_cohort_counts_ploidy_and_member_het():
    st = simulate(4)
    sv = site_variants(st, 0)
    c = cohort_counts(sv)
    aff = sv.ped.affected == 1
    assert np.array_equal(c[:, 0], (sv.dosage[:, aff] >= 1).sum(1))
    x = np.flatnonzero(sv.pclass == CHR_X)
    male = sv.ped.sex == 1
    # male X ALT counts one allele, female two
    j = x[0]
    g = sv.dosage[j].astype(int)
    assert c[j, 6] == int(((g >= 1) & male).sum() + np.where(~male & (g > 0), g, 0).sum())
    assert list(member_het(np.array([1, 2, 2, 0]), 1, np.array([0, 0, CHR_X, CHR_X]))) == [True, False, True, False]


def test_hash_table_layout_overflow_and_sizing():
    keys = [f"1:{i}:A:G" for i in range(50)]
    s1, f1 = hash_keys(b"k" * 32, keys, 8)
    s2, f2 = hash_keys(b"k" * 32, keys, 8)
    s3, _ = hash_keys(b"j" * 32, keys, 8)
    assert np.array_equal(s1, s2) and np.array_equal(f1, f2) and not np.array_equal(s1, s3)
    assert (f1 > 0).all() and (f1 < 2**48).all()
    fp, rows = lane_table(s1, f1, 8, 20, "site x")
    assert sorted(rows[rows >= 0]) == list(range(50)) and (fp[rows < 0] == 0).all()
    with pytest.raises(InputError, match="site x: .* variants fall into one slot .* --lanes"):
        lane_table(s1, f1, 8, 2, "site x")
    gs, _ = hash_keys(b"k" * 32, keys, 30, partition=np.arange(50) % 10, buckets=3)
    assert np.array_equal(gs // 3, np.arange(50) % 10)
    T, L = suggest_table(10000)
    assert overflow_probability(10000, T, L) <= 1e-6


def test_macs_are_rfc2104_hmac_sha256():
    import hmac
    keys = ["1:5:A:C", "X:99:AT:G", "", "22:16050075:A:G" * 10, "7:1:\u00e9:T"]
    # every padding case of the compiled SHA-256: 55, 56, 63, 64 and 119-120 bytes need one or two more blocks
    keys += ["A" * n for n in (55, 56, 57, 63, 64, 65, 119, 120, 128, 1000)]
    for job_key in (bytes(range(32)), b"x" * 100, b"y" * 64, b"z" * 65, b""):
        want = np.frombuffer(b"".join(hmac.digest(job_key, k.encode(), "sha256") for k in keys), "<u8").reshape(-1, 4)
        assert (_macs(job_key, keys) == want).all()
    assert _macs(b"k", []).shape == (0, 4)


def test_cuckoo_table_places_every_entry_in_one_of_its_bins():
    rng = np.random.default_rng(3)
    m, bins = 5000, 6350
    cand = rng.integers(0, bins, size=(m, 3))
    fps = rng.integers(1, 1 << 40, size=m).astype(np.uint64)
    fp, row = cuckoo_table(cand, fps, bins, "site")
    occ = row[:, 0]
    assert sorted(occ[occ >= 0].tolist()) == list(range(m))  # each entry exactly once
    where = np.flatnonzero(occ >= 0)
    assert all(b in cand[occ[b]] for b in where)  # in one of its candidate bins
    assert (fp[where, 0] == fps[occ[where]]).all() and (fp[occ < 0, 0] == 0).all()
    again = cuckoo_table(cand, fps, bins, "site")  # deterministic
    assert (again[1] == row).all()
    with pytest.raises(InputError, match="could not place"):
        cuckoo_table(np.zeros((5, 3), np.int64), fps[:5], bins, "site")  # five entries, one bin


def test_site_config_without_ped_is_a_clear_error(tmp_path):
    from cipherome.genomics.filtering.params import FilterParams
    from cipherome.genomics.filtering.job import load_site_variants
    from cipherome.mpc.study import Site

    site = Site("hospital-a", data={"vcf": "x.vcf.gz"}, config_dir=tmp_path)
    with pytest.raises(InputError, match="site hospital-a: .* no \\[data\\] entry 'ped'"):
        load_site_variants(site, FilterParams.from_dict({"model": "carrier"}))
