""".pgen hard calls decoded straight from the file (genomics/io/pgen_records.py) equal pgenlib's, on files plink2 wrote.

Each file is made by ``plink2 --vcf ... --make-pgen`` from calls chosen so that plink2's
writer uses every record type it has: plain 2-bit (common variants), 1-bit + difflist,
difflist-only (rare variants; monomorphic; mostly missing; mostly hom ALT), and LD
compression against an earlier record (near copies of a variant, and near copies of its
REF/ALT swap). Sample counts 5, 130, 257 (two-byte sample IDs in difflists) and 1003
(difflists of more than one 64-entry group) are not multiples of 4. The reference is
pgenlib itself (``PgenReader._read``, the path used before). A tri-allelic record, a
sample subset and a dosage file (hard-call track) go through the same comparison.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from genomics_files import needs_plink2, plink2

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.packed import unpack_dosage
from cipherome.genomics.io.pgen import PgenReader
from cipherome.genomics.io.pgen_records import PGEN_KIND, PgenRecords

SAMPLE_COUNTS = (5, 130, 257, 1003)


def _calls(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(m, n)`` ALT counts (-1 missing): families of a source variant and its LD near copies, plus special rows."""
    rows = []

    def hwe(p, miss):
        g = rng.binomial(2, p, n).astype(np.int8)
        g[rng.random(n) < miss] = -1
        return g

    for _ in range(40):
        kind = rng.integers(3)
        p = rng.uniform(0.05, 0.5) if kind == 0 else rng.uniform(0.001, 0.01) if kind == 1 else rng.uniform(0.2, 0.4)
        src = hwe(p, 0.02 if kind < 2 else 0.3)
        rows.append(src)
        for _ in range(rng.integers(0, 4)):  # near copies (LD compressed), some with REF/ALT swapped
            c = src.copy()
            flip = rng.random(n) < 0.01
            c[flip] = rng.integers(-1, 3, flip.sum())
            if rng.random() < 0.4:
                c = np.where(c >= 0, 2 - c, -1).astype(np.int8)
            rows.append(c)
    rows += [np.zeros(n, np.int8), np.full(n, 2, np.int8), np.full(n, -1, np.int8)]  # monomorphic, all missing
    almost_alt = np.full(n, 2, np.int8)
    almost_alt[rng.random(n) < 0.05] = 1
    mostly_missing = hwe(0.3, 0.97)
    rows += [almost_alt, mostly_missing, hwe(0.003, 0.0)]
    return np.array(rows, dtype=np.int8)


def _write_vcf(path, G: np.ndarray, tri_allelic: bool) -> None:
    n = G.shape[1]
    gt = np.array(["./.", "0/0", "0/1", "1/1"])
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=10000000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]
                       + [f"S{i}" for i in range(n)])]
    for j, g in enumerate(G):
        alt, calls = "C", gt[g + 1]
        if tri_allelic and j == 3:  # a tri-allelic record between LD families
            alt, calls = "C,G", np.where(np.arange(n) % 3 == 0, "1/2", np.where(np.arange(n) % 3 == 1, "0/2", calls))
        lines.append("\t".join(["1", str(1000 + 10 * j), f"v{j}", "A", alt, ".", ".", ".", "GT", *calls]))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pgen_direct")
    rng = np.random.default_rng(17)
    out = {}
    for n in SAMPLE_COUNTS:
        _write_vcf(d / f"n{n}.vcf", _calls(rng, n), tri_allelic=n == 130)
        plink2(d, "--vcf", f"n{n}.vcf", "--make-pgen", "--out", f"n{n}")
        out[n] = d / f"n{n}"
    plink2(d, "--dummy", "61", "200", "0.05", "dosage-freq=0.4", "--make-pgen", "--out", "dos")
    out["dos"] = d / "dos"
    plink2(d, "--pfile", "n257", "--make-bed", "--out", "bed257")
    out["dir"] = d
    return out


def _pgenlib_hard(reader: PgenReader, rows: np.ndarray) -> np.ndarray:
    """The same rows through pgenlib (int8, -9 missing -> -1)."""
    calls = reader._read(rows, np.empty((len(rows), len(reader.samples)), dtype=np.int8), False)
    return np.maximum(calls, -1)


def _same_as_pgenlib(reader: PgenReader, rng: np.random.Generator) -> None:
    m = reader.n_variants
    every = np.arange(m)
    assert np.array_equal(reader.read_hard(every), _pgenlib_hard(reader, every))
    assert np.array_equal(reader.read_packed(every), reader._pgenlib_packed(every))
    shuffled = rng.choice(m, size=2 * m)  # any order, repeats, LD records without their base
    assert np.array_equal(reader.read_hard(shuffled), _pgenlib_hard(reader, shuffled))
    # blocks keep their records' bytes: int8 calls and packed codes decoded on demand, asked in either order
    blocks = list(PgenReader(reader.paths["pgen"].with_suffix(""), samples=None if reader._index is None else reader._index,
                             block_size=7).blocks())
    for k, b in enumerate(blocks):
        if k % 2:
            b.packed
    assert np.array_equal(np.concatenate([b.dosage for b in blocks]), _pgenlib_hard(reader, every))
    assert np.array_equal(np.concatenate([b.packed for b in blocks]), reader._pgenlib_packed(every))
    if reader._records is not None:  # the int8 decoder alone, without pgenlib's multi-allelic rows
        biallelic = np.flatnonzero(reader._allele == 1)
        for rows in (biallelic, shuffled[np.isin(shuffled, biallelic)]):
            r = reader._rec[rows]
            assert np.array_equal(reader._records.calls(r), unpack_dosage(reader._records.packed(r), reader._records.n_samples))
        if reader._multi is None and reader._index is None:
            assert np.array_equal(reader._records.calls(reader._rec[biallelic]), _pgenlib_hard(reader, biallelic))


@needs_plink2
def test_direct_decoding_equals_pgenlib_for_every_record_type(files):
    rng = np.random.default_rng(1)
    seen = set()
    for n in SAMPLE_COUNTS:
        r = PgenReader(files[n])
        assert r._records is not None, "the direct path must handle plink2's own output"
        seen |= set((r._records.vrtypes & 7).tolist())
        _same_as_pgenlib(r, rng)
    # plain 2-bit, 1-bit + difflist, LD, inverted LD, difflist with base hom REF / hom ALT / missing
    assert {0, 1, 2, 3, 4, 6, 7} <= seen, seen


@needs_plink2
def test_multiallelic_record_and_sample_subset(files):
    rng = np.random.default_rng(2)
    r = PgenReader(files[130])
    assert r._multi is not None and r._multi.sum() == 1 and r.n_variants == r._records.n_records + 1
    _same_as_pgenlib(r, rng)
    for n in (130, 1003):
        sub = PgenReader(files[n], samples=np.array([n - 1, 0, 7, 3, 64, 65, 66, 100]))
        _same_as_pgenlib(sub, rng)
        full = PgenReader(files[n]).read_hard(np.arange(sub.n_variants))
        assert np.array_equal(sub.read_hard(np.arange(sub.n_variants)), full[:, sub._index])


@needs_plink2
def test_dosage_file_hard_call_track(files):
    r = PgenReader(files["dos"])
    assert r.has_dosage and r._records is not None
    _same_as_pgenlib(r, np.random.default_rng(3))


@needs_plink2
def test_fixed_width_modes(files, tmp_path):
    """A PLINK 1 .bed under the .pgen name (mode 0x01) and a hand-written mode 0x02 file (plain 2-bit records)."""
    d = files["dir"]
    for ext, new in (("bed", "pgen"), ("bim", "pvar"), ("fam", "psam")):
        shutil.copy(d / f"bed257.{ext}", tmp_path / f"b.{new}")
    r = PgenReader(tmp_path / "b")
    assert r._records is not None and r._records._plink1
    _same_as_pgenlib(r, np.random.default_rng(4))
    G = PgenReader(files[257]).read_hard(np.arange(r.n_variants))
    codes = np.where(G < 0, 3, G).astype(np.uint8)  # .pgen codes: 0 hom REF, 1 het, 2 hom ALT, 3 missing
    n = G.shape[1]
    pad = np.zeros((G.shape[0], (-n) % 4), np.uint8)
    c = np.concatenate([codes, pad], axis=1).reshape(G.shape[0], -1, 4)
    body = (c[:, :, 0] | c[:, :, 1] << 2 | c[:, :, 2] << 4 | c[:, :, 3] << 6).astype(np.uint8)
    head = b"\x6c\x1b\x02" + G.shape[0].to_bytes(4, "little") + n.to_bytes(4, "little") + b"\x00"
    (tmp_path / "f.pgen").write_bytes(head + body.tobytes())
    shutil.copy(tmp_path / "b.pvar", tmp_path / "f.pvar")
    shutil.copy(tmp_path / "b.psam", tmp_path / "f.psam")
    f = PgenReader(tmp_path / "f")
    assert f._records is not None and not f._records._plink1
    assert np.array_equal(f.read_hard(np.arange(f.n_variants)), G)
    _same_as_pgenlib(f, np.random.default_rng(5))


@needs_plink2
def test_bad_files_raise_input_errors_with_a_kind(files, tmp_path):
    src = files[1003]
    data = src.with_suffix(".pgen").read_bytes()
    for ext in ("pvar", "psam"):
        shutil.copy(src.with_suffix("." + ext), tmp_path / f"t.{ext}")
    # cut short: the header's record lengths run past the end of the file
    (tmp_path / "t.pgen").write_bytes(data[:-100])
    with pytest.raises(InputError, match="cut short") as e:
        PgenRecords.open(tmp_path / "t.pgen", 1003, PgenReader(src).n_variants)
    assert e.value.kind == PGEN_KIND
    # a header whose counts disagree with the .pvar/.psam
    with pytest.raises(InputError, match="the header says") as e:
        PgenRecords.open(src.with_suffix(".pgen"), 1002, PgenReader(src).n_variants)
    assert e.value.kind == PGEN_KIND
    # a damaged record: a difflist-only record whose first sample ID points past the last sample
    rec = PgenRecords.open(src.with_suffix(".pgen"), 1003, PgenReader(src).n_variants)
    k = int(np.flatnonzero(rec.vrtypes & 7 == 4)[0])
    pos = int(rec.offsets[k])
    assert data[pos] < 128 and data[pos] > 0  # one-byte difflist length
    bad = bytearray(data)
    bad[pos + 1:pos + 3] = (1003 + 5).to_bytes(2, "little")  # the first group's start ID
    (tmp_path / "t.pgen").write_bytes(bytes(bad))
    r = PgenRecords.open(tmp_path / "t.pgen", 1003, rec.n_records)
    with pytest.raises(InputError, match=f"variant record {k + 1} does not parse") as e:
        r.packed(np.arange(rec.n_records))
    assert e.value.kind == PGEN_KIND
    r.close()
    rec.close()
