"""The simulator is deterministic, writes files PLINK and pysam read back unchanged, and has the properties it claims."""
from __future__ import annotations


import numpy as np
import pysam
import pytest

from cipherome.genomics import simulate
from cipherome.genomics.io import writers as writebed
from cipherome.genomics.gwas.gc import lambda_gc
from cipherome.genomics.reference.linear import glm_linear
from cipherome.genomics.reference.pca import pca_exact
from cipherome.genomics.reference.qc import alt_freq

from conftest_sim import gwas_data, pca_data, scratch_dir
from plink_runner import PLINK2, have_plink, read_afreq, read_snplist, read_table, run_plink

needs_plink2 = pytest.mark.skipif(not have_plink(PLINK2), reason="plink2 not installed")


def decode_bed(path, n_samples: int) -> np.ndarray:
    """Independent .bed decoder: (m, n) int8 ALT counts (A1 = ALT), -1 missing."""
    raw = np.fromfile(path, dtype=np.uint8)
    assert bytes(raw[:3]) == writebed.BED_MAGIC
    nb = (n_samples + 3) // 4
    body = raw[3:].reshape(-1, nb)
    codes = np.stack([(body >> (2 * k)) & 3 for k in range(4)], axis=2).reshape(body.shape[0], -1)
    codes = codes[:, :n_samples]
    return np.array([2, -1, 1, 0], dtype=np.int8)[codes]


def small_config(**kw):
    return simulate.SimConfig(n_samples=203, n_variants=301, seed=3, **kw)


def test_deterministic_and_seeded():
    a = simulate.simulate_study(small_config())
    b = simulate.simulate_study(small_config())
    c = simulate.simulate_study(small_config().replace(seed=4))
    for name in ("genotypes", "quant", "binary", "covariates", "pos", "causal_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.genotypes, c.genotypes)


def test_shapes_dtypes_and_layout():
    s = simulate.simulate_study(small_config(pheno_missing_rate=0.05, covar_missing_rate=0.05))
    m, n = s.genotypes.shape
    assert (m, n) == (301, 203) and s.genotypes.dtype == np.int8
    assert set(np.unique(s.genotypes)) <= {-1, 0, 1, 2}
    assert s.covariates.shape == (n, 4) and s.covariate_names == ("age", "sex", "cov1", "cov2")
    assert np.isnan(s.quant).any() and np.isnan(s.covariates).any()
    assert set(np.unique(s.binary[~np.isnan(s.binary)])) == {0.0, 1.0}
    # positions sorted within chromosome, ids unique, REF != ALT
    for c in np.unique(s.chrom):
        assert np.all(np.diff(s.pos[s.chrom == c]) > 0)
    assert len(set(s.variant_id)) == m and np.all(s.ref != s.alt)
    assert len(set(s.iid)) == n
    assert np.all(np.diff(s.site) >= 0)  # samples ordered by site


def test_demo_preset_properties():
    s = simulate.simulate_demo()  # its time: bench/test_bench_simulate.py
    cfg = s.config
    assert (cfg.n_sites, cfg.n_populations, cfg.n_causal) == (3, 2, 5)
    assert s.genotypes.shape == (3000, 1500)
    # uneven mixing: site 1 mostly population A, site 3 mostly population B
    share_b = [s.population[s.site == k].mean() for k in range(3)]
    assert share_b[0] < 0.2 and 0.35 < share_b[1] < 0.65 and share_b[2] > 0.8
    assert abs((s.genotypes < 0).mean() - 0.01) < 0.004
    assert abs(np.nanmean(s.binary) - cfg.case_fraction) < 0.01
    # causal variants are common and carry the planted effects
    p = alt_freq(s.true_genotypes[s.causal_index])
    assert np.all(np.minimum(p, 1 - p) > 0.1)
    assert s.causal_beta.shape == (5,)


def test_balding_nichols_fst():
    rng = np.random.default_rng(0)
    anc = rng.uniform(0.1, 0.9, 20000)
    f = simulate.balding_nichols_freqs(rng, anc, 0.05, 2)
    est = np.mean((f - anc[:, None]) ** 2 / (anc * (1 - anc))[:, None])
    assert abs(est - 0.05) < 0.003


def test_bed_roundtrip_and_site_files(tmp_path):
    s = simulate.simulate_study(small_config())
    out = simulate.write_study(s, tmp_path, vcf=False)
    pooled = out["pooled"]
    np.testing.assert_array_equal(decode_bed(pooled["bed"], s.n_samples), s.genotypes)
    bim = [ln.split() for ln in pooled["bim"].read_text().splitlines()]
    assert [b[4] for b in bim] == list(s.alt) and [b[5] for b in bim] == list(s.ref)
    fam = [ln.split() for ln in pooled["fam"].read_text().splitlines()]
    assert [f[1] for f in fam] == list(s.iid)
    total = 0
    for k in range(s.config.n_sites):
        site = out[f"site{k + 1}"]
        idx = s.site_samples(k)
        total += idx.size
        np.testing.assert_array_equal(decode_bed(site["bed"], idx.size), s.genotypes[:, idx])
    assert total == s.n_samples
    # phenotype file: PLINK coding (1/2 for the binary trait, NA for missing)
    header = pooled["pheno"].read_text().splitlines()[0].split()
    assert header == ["#FID", "IID", simulate.QUANT_PHENO, simulate.BINARY_PHENO]


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.bed"
    with pytest.raises(ValueError):
        writebed.write_bed(tmp_path / "x", np.full((2, 3), 5, np.int8),
                           writebed.Variants(["1"] * 2, [1, 2], ["a", "b"], ["A"] * 2, ["C"] * 2),
                           ["s1", "s2", "s3"], ["s1", "s2", "s3"])
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_vcf_roundtrip(tmp_path):
    s = simulate.simulate_study(small_config())
    path = simulate.write_study(s, tmp_path, sites=False)["pooled"]["vcf"]
    assert path.with_name(path.name + ".tbi").exists()
    with pysam.VariantFile(str(path)) as vf:
        assert list(vf.header.samples) == list(s.iid)
        got = []
        for rec in vf:
            row = []
            for smp in rec.samples.values():
                gt = smp["GT"]
                row.append(-1 if gt[0] is None else gt[0] + gt[1])
            got.append(row)
        np.testing.assert_array_equal(np.array(got, dtype=np.int8), s.genotypes)
        # tabix index answers region queries
        c2 = s.chrom == 2
        recs = list(vf.fetch("2", int(s.pos[c2][0]) - 1, int(s.pos[c2][4])))
        assert [r.id for r in recs] == list(s.variant_id[c2][:5])


@needs_plink2
def test_plink2_reads_files_as_written(tmp_path):
    s = simulate.simulate_study(small_config(pheno_missing_rate=0.05))
    p = simulate.write_study(s, tmp_path, sites=False)["pooled"]
    bfile = str(p["bed"])[:-4]
    r = run_plink(["--bfile", bfile, "--freq", "--pheno", p["pheno"], "--covar", p["covar"],
                   "--write-snplist", "--make-just-psam"], tmp_path)
    f = read_afreq(r.path(".afreq"))
    np.testing.assert_allclose(f["ALT_FREQS"], alt_freq(s.genotypes), atol=5e-7)
    assert list(f["ALT"]) == list(s.alt)
    assert "2 phenotypes loaded (1 binary, 1 quantitative)" in r.log
    assert "4 covariates loaded" in r.log
    psam = read_table(r.path(".psam"))
    assert list(psam["IID"]) == list(s.iid)
    np.testing.assert_array_equal(psam[simulate.BINARY_PHENO], np.where(np.isnan(s.binary), np.nan, s.binary + 1))
    np.testing.assert_allclose(psam[simulate.QUANT_PHENO], s.quant, rtol=1e-5, atol=1e-6)  # 6 digits
    assert list(read_snplist(r.path(".snplist"))) == list(s.variant_id)
    # the VCF imports to the same genotypes
    r2 = run_plink(["--vcf", p["vcf"], "--freq"], tmp_path, out="v")
    np.testing.assert_allclose(read_afreq(r2.path(".afreq"))["ALT_FREQS"], f["ALT_FREQS"])


def test_population_structure_is_pc1():
    """Fst shows as PC1: it separates the populations almost perfectly."""
    d = gwas_data()
    pc1 = d.covariates12[:, 4]
    pop = d.study.population
    assert abs(np.corrcoef(pc1, pop)[0, 1]) > 0.95
    # three populations: PC1 and PC2 together separate them
    d3 = pca_data()
    pcs = pca_exact(d3.study.genotypes[d3.thinned], 2).eigenvectors
    centroids = np.array([pcs[d3.study.population == k].mean(0) for k in range(3)])
    spread = max(pcs[d3.study.population == k].std(0).max() for k in range(3))
    gaps = [np.linalg.norm(centroids[a] - centroids[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 5 * spread


def test_confounding_inflates_lambda_and_pcs_fix_it():
    """lambda_GC > 1.3 before PC adjustment for the confounded trait, ~1 after; causal variants are the top hits."""
    d = gwas_data()
    s = d.study
    keep = d.qc.variant_keep
    g = s.genotypes[keep]
    raw = glm_linear(g, s.quant, s.covariates)
    adj = glm_linear(g, s.quant, d.covariates12)
    lam_raw, lam_adj = lambda_gc(raw.p), lambda_gc(adj.p)
    assert lam_raw > 1.3, lam_raw
    assert 0.9 < lam_adj < 1.1, lam_adj
    kept = np.flatnonzero(keep)
    top = set(kept[np.argsort(adj.p)[: 2 * s.config.n_causal]])
    assert set(s.causal_index) <= top
