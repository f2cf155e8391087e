"""Variant keys, chromosome names, allele swaps and strand-ambiguous SNPs."""
from __future__ import annotations

import numpy as np

from cipherome.genomics.io.packed import pack_dosage, swap_alleles, unpack_dosage
from cipherome.genomics.io.variants import (flip_dosage, intersect_keys, match_variants, normalize_chrom,
                                         sort_keys, strand_ambiguous, variant_keys)


def test_normalize_chrom():
    assert [normalize_chrom(c) for c in ["chr1", "CHR01", "1", "chrX", "23", "chrM", "M", "MT", "26",
                                         "chrY", "24", "XY", "25", "chrUn_gl000220", "HLA-A"]] == [
        "1", "1", "1", "X", "X", "MT", "MT", "MT", "MT", "Y", "Y", "XY", "XY", "chrUn_gl000220", "HLA-A"]


def test_keys_and_matching_with_swaps():
    a = variant_keys(["chr1", "1", "chrX", "2"], [100, 200, 5, 7], ["a", "C", "G", "AT"], ["g", "T", "A", "A"])
    assert list(a) == ["1:100:A:G", "1:200:C:T", "X:5:G:A", "2:7:AT:A"]
    b = variant_keys(["1", "X", "1", "3"], [100, 5, 200, 1], ["G", "G", "C", "A"], ["A", "A", "T", "C"])
    idx, flip = match_variants(b, a)
    assert list(idx) == [0, 2, 1, -1] and list(flip) == [True, False, False, False]
    common = intersect_keys(a, b)
    assert list(common) == ["1:100:A:G", "1:200:C:T", "X:5:G:A"]
    assert list(intersect_keys(a, b, allow_swap=False)) == ["1:200:C:T", "X:5:G:A"]


def test_sort_and_strand():
    keys = ["X:1:A:G", "10:5:A:C", "2:9:A:C", "MT:3:A:G", "2:1:A:C"]
    assert list(sort_keys(keys)) == ["2:1:A:C", "2:9:A:C", "10:5:A:C", "X:1:A:G", "MT:3:A:G"]
    assert list(strand_ambiguous(["A", "C", "A", "AT", "g"], ["T", "G", "G", "TA", "c"])) == [
        True, True, False, False, True]


def test_flip_dosage_matches_packed_swap():
    rng = np.random.default_rng(2)
    g = rng.integers(-1, 3, size=(10, 13)).astype(np.int8)
    f = rng.random(10) < 0.5
    out = flip_dosage(g, f)
    assert (out[~f] == g[~f]).all()
    assert (out[f] == np.where(g[f] < 0, -1, 2 - g[f])).all()
    assert (unpack_dosage(swap_alleles(pack_dosage(g), f), 13) == out).all()
