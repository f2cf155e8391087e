"""Secure GWAS on imputed dosages (sites' .pgen files made by plink2) against plink2 --glm on the pooled .pgen.

The study (3 sites, 2 populations, 1% missing calls) carries dosage uncertainty
(``dosage_sim``); plink2 regresses on the dosages, takes --maf from the dosage
frequencies and --geno/--hwe from its hard calls, and so must the secure GWAS.
Thresholds: linear r of -log10 p >= 0.9999 and max |d -log10 p| <= 0.01; logistic Wald
rows within 1e-3 in ln OR.
"""
from __future__ import annotations

import numpy as np
import pytest
from dosage_sim import site_data, write_dosage_study
from genomics_files import needs_plink2, plink2

from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.io.site_files import site_from_config
from cipherome.genomics.simulate import demo_config
from cipherome.mpc.local import run_local
from cipherome.mpc.study import Site
from tests.plink_runner import read_glm, run_plink

pytestmark = [needs_plink2, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

QC = ["--geno", "0.1", "--maf", "0.02", "--hwe", "1e-6"]


@pytest.fixture(scope="module")
def dstudy(tmp_path_factory):
    d = tmp_path_factory.mktemp("dosage")
    cfg = demo_config().replace(n_samples=900, n_variants=500, seed=17)
    return write_dosage_study(cfg, d, plink2), d


def _sites(ds, kinds: list[str]):
    """Site objects whose [data] names the genotype file of the given kind."""
    return [Site(f"site{s + 1}", site_data(ds, s, kind), {}) for s, kind in enumerate(kinds)]


def _secure(ds, kinds, params):
    sites = [site_from_config(s, params) for s in _sites(ds, kinds)]
    return run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), len(sites), frac=params.frac).results[0]


def _plink(ds, d, pheno, extra, out, hwe=True):
    p = ds["pooled"]
    qc = QC if hwe else QC[:4]
    return run_plink(["--pfile", str(p["pfile"]), "--pheno", str(p["pheno"]), "--pheno-name", pheno,
                      "--covar", str(p["covar"]), *qc, *extra], d / out)


def _tested_ids(res) -> np.ndarray:
    return np.asarray(res["variants"]["id"])[np.asarray(res["tested"])]


def _match(ds, res, ref):
    ids = _tested_ids(res)
    assert set(ids) == set(ref["ID"])
    pos = {v: i for i, v in enumerate(ref["ID"])}
    return np.array([pos[v] for v in ids])


@pytest.fixture(scope="module")
def linear(dstudy):
    ds, d = dstudy
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.02, hwe=1e-6, block=256)
    ref = read_glm(_plink(ds, d, "quant_trait", ["--glm", "hide-covar"], "lin").path(".quant_trait.glm.linear"))
    return ds, params, ref


def _check_linear(ds, res, ref):
    j = _match(ds, res, ref)
    p = np.asarray(res["assoc"]["columns"]["P"], float)
    q = ref["P"][j]
    ok = np.isfinite(p) & np.isfinite(q)
    assert ok.sum() >= 0.95 * len(p)
    a, b = -np.log10(p[ok]), -np.log10(q[ok])
    assert np.corrcoef(a, b)[0, 1] >= 0.9999
    assert np.max(np.abs(a - b)) <= 0.01
    assert np.array_equal(np.asarray(res["assoc"]["obs_ct"])[ok], ref["OBS_CT"][j][ok])
    return float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("kind", ["pgen", "bgen8", "bgen16", "vcf"])
def test_linear_dosages_match_plink2(linear, kind):
    """Every site brings the same kind of file, cut by plink2 from the pooled .pgen."""
    ds, params, ref = linear
    res = _secure(ds, [kind] * 3, params)
    d = _check_linear(ds, res, ref)
    assert res["qc"]["passed"] > 0.8 * res["n_variants"]
    print(f"linear {kind}: {res['qc']['passed']} tested, max |d -log10 p| = {d:.2e}")


def test_mixed_sites_bed_pgen(linear):
    """Site 1 brings hard calls (.bed, or a hard-call .pgen), sites 2 and 3 dosages (.pgen, BGEN)."""
    ds, params, ref = linear
    for kinds in (["bed", "pgen", "bgen16"], ["pgen_hard", "bgen8", "pgen"]):
        _check_linear(ds, _secure(ds, kinds, params), ref)


@pytest.mark.parametrize("kinds", [["pgen"] * 3, ["bed", "bgen16", "bgen8"]])
def test_logistic_dosages_match_plink2(dstudy, kinds):
    ds, d = dstudy
    params = GwasParams(pheno_name="disease", geno=0.1, maf=0.02, hwe=1e-6, block=256)
    res = _secure(ds, kinds, params)
    ref = read_glm(_plink(ds, d, "disease", ["--glm", "hide-covar", "no-firth"], "log")
                   .path(".disease.glm.logistic"))
    j = _match(ds, res, ref)
    wald = np.asarray(res["assoc"]["test"]) == "ADD"
    lnor = np.log(np.asarray(res["assoc"]["columns"]["OR"], float))
    ok = wald & np.isfinite(ref["OR"][j])
    assert ok.sum() > 0
    assert np.max(np.abs(lnor[ok] - np.log(ref["OR"][j][ok]))) <= 1e-3


@pytest.mark.slow
@pytest.mark.long_e2e  # 16 s on a Zen 1 host; .ci/run runs it after the default run
def test_daemons_mixed_bed_pgen_bgen(linear, tmp_path):
    """Three party daemons (gRPC, mutual TLS) whose configs name a .bed, a .pgen and a BGEN."""
    from cipherome.mpc.launcher import LocalCluster

    ds, params, ref = linear
    data = [dict(site.data) for site in _sites(ds, ["bed", "pgen", "bgen8"])]
    with LocalCluster(3, workdir=tmp_path / "cluster", data=data, log_level="WARNING", start_timeout=240) as cluster:
        res = cluster.run("gwas", params.to_dict()).results[0]
        # `cipherome freq` as a submitter runs it, against plink2 on the pooled data
        from click.testing import CliRunner

        from cipherome.cli.main import cli

        keys = cluster.dir / "keys"
        got = CliRunner().invoke(cli, ["freq", "--study", str(cluster.study_path), "--key", str(keys / "submitter.key"),
                                       "--cert", str(keys / "submitter.crt"), "--out", str(tmp_path / "pooled")])
        assert got.exit_code == 0, got.output
    plink = run_plink(["--pfile", str(ds["pooled"]["pfile"]), "--freq", "--missing"], tmp_path / "pf")
    assert (tmp_path / "pooled.vmiss").read_bytes() == plink.path(".vmiss").read_bytes()
    from tests.plink_runner import read_table

    mine, theirs = read_table(tmp_path / "pooled.afreq"), read_table(plink.path(".afreq"))
    assert np.array_equal(mine["OBS_CT"], theirs["OBS_CT"])  # the BGEN site's dosages sit on the 8-bit grid:
    assert np.max(np.abs(mine["ALT_FREQS"] - theirs["ALT_FREQS"])) <= 1e-3  # frequencies within 1/255/2
    d = _check_linear(ds, res, ref)
    print(f"daemons .bed + .pgen + BGEN-8: {res['qc']['passed']} tested, max |d -log10 p| = {d:.2e}")


def test_variant_and_sample_selection_as_plink2(linear, tmp_path):
    """--extract, --exclude, --chr, --from-bp/--to-bp and the sites' keep/remove lists: the tested
    set equals plink2's with the same flags on the pooled data (its --keep/--remove: the union)."""
    from cipherome.genomics.gwas.select import parse_chr_list

    ds, params, _ = linear
    study = ds["study"]
    ids = np.asarray(study.variant_id)
    rng = np.random.default_rng(0)
    (tmp_path / "ex.txt").write_text("\n".join(rng.choice(ids, 300, replace=False)) + "\n")
    (tmp_path / "rm.txt").write_text("\n".join(rng.choice(ids, 40, replace=False)) + "\n")
    sites = _sites(ds, ["bed", "pgen", "bgen16"])
    # site 2 keeps all but 30 of its samples; site 3 removes 20 (FID IID lines)
    s2, s3 = study.site_samples(1), study.site_samples(2)
    (tmp_path / "keep2.txt").write_text("".join(f"{study.fid[i]} {study.iid[i]}\n" for i in s2[30:]))
    (tmp_path / "rm3.txt").write_text("".join(f"{study.iid[i]}\n" for i in s3[:20]))
    sites[1].data["keep"] = str(tmp_path / "keep2.txt")
    sites[2].data["remove"] = str(tmp_path / "rm3.txt")
    pos2 = study.pos[study.chrom == 2]
    lo, hi = int(np.quantile(pos2, 0.2)), int(np.quantile(pos2, 0.7))
    cases = [({"extract": str(tmp_path / "ex.txt"), "exclude": str(tmp_path / "rm.txt")},
              ["--extract", str(tmp_path / "ex.txt"), "--exclude", str(tmp_path / "rm.txt")]),
             ({"chr": "2-3"}, ["--chr", "2-3"]),
             ({"chr": "2", "from_bp": lo, "to_bp": hi}, ["--chr", "2", "--from-bp", str(lo), "--to-bp", str(hi)])]
    (tmp_path / "plink_remove.txt").write_text(
        "".join(f"{study.fid[i]} {study.iid[i]}\n" for i in np.concatenate([s2[:30], s3[:20]])))
    from cipherome.genomics.gwas.select import read_id_list

    for k, (ours, theirs) in enumerate(cases):
        p = GwasParams(**{**params.to_dict(), "hwe": None, "extract": read_id_list(ours["extract"]) if "extract" in ours else None,
                          "exclude": read_id_list(ours["exclude"]) if "exclude" in ours else None,
                          "chroms": parse_chr_list(ours["chr"]) if "chr" in ours else None,
                          "from_bp": ours.get("from_bp"), "to_bp": ours.get("to_bp")})
        built = [site_from_config(s, p) for s in sites]
        res = run_local(lambda ctx: run_gwas(ctx, p, built[ctx.index]), 3, frac=p.frac).results[0]
        # without --hwe here: the selection is under test, not the HWE test's stated difference
        ref = read_glm(_plink(ds, tmp_path, "quant_trait", ["--remove", str(tmp_path / "plink_remove.txt"),
                                                           *theirs, "--glm", "hide-covar"], f"sel{k}", hwe=False)
                       .path(".quant_trait.glm.linear"))
        got = set(_tested_ids(res))
        assert got == set(ref["ID"]), (theirs, len(got), len(ref["ID"]))
        j = _match(ds, res, ref)
        assert np.array_equal(np.asarray(res["assoc"]["obs_ct"]), ref["OBS_CT"][j])  # the same samples
        p_ours = np.asarray(res["assoc"]["columns"]["P"], float)
        ok = np.isfinite(p_ours) & np.isfinite(ref["P"][j])
        assert np.max(np.abs(np.log10(p_ours[ok]) - np.log10(ref["P"][j][ok]))) <= 0.01


def test_allow_no_covars_as_plink2(linear, tmp_path):
    """Sites have covariate files; --glm allow-no-covars (covar_names = []) fits y ~ g alone, as plink2
    does without --covar."""
    from cipherome.cli.gwas import gwas_params_from_cli

    ds, params, _ = linear
    p = gwas_params_from_cli("quant_trait", (), None, 0.1, 0.02, 1e-6, ("allow-no-covars",), None, 0, 256)
    assert p.covar_names == []
    res = _secure(ds, ["bed", "pgen", "bgen16"], p)
    assert res["covariates"] == []
    pooled = ds["pooled"]
    ref = read_glm(run_plink(["--pfile", str(pooled["pfile"]), "--pheno", str(pooled["pheno"]), "--pheno-name",
                              "quant_trait", *QC, "--glm", "allow-no-covars"], tmp_path / "nc")
                   .path(".quant_trait.glm.linear"))
    _check_linear(ds, res, ref)


def test_freq_equals_plink2_on_pooled_data(linear, tmp_path):
    """``gwas.freq`` over a .bed, a .pgen and a BGEN site: .afreq and .vmiss byte for byte as plink2 on the
    pooled .pgen, .hardy counts exact and P within 1e-6 relative."""
    from cipherome.genomics.gwas.freq import freq_job, write_freq
    from cipherome.genomics.io.site_files import site_genotypes_only
    from tests.plink_runner import read_table

    ds, _, _ = linear
    sites = [site_genotypes_only(s) for s in _sites(ds, ["bed", "pgen", "bgen16"])]
    res = run_local(lambda ctx: freq_job(ctx, {"block": 128}, sites[ctx.index]), 3).results[0]
    assert res["released"].all()
    write_freq(tmp_path / "mine", res)
    ref = run_plink(["--pfile", str(ds["pooled"]["pfile"]), "--freq", "--missing", "--hardy"], tmp_path / "ref")
    for s in ("afreq", "vmiss"):
        assert (tmp_path / f"mine.{s}").read_bytes() == ref.path(f".{s}").read_bytes(), s
    a, b = read_table(tmp_path / "mine.hardy"), read_table(ref.path(".hardy"))
    for col in ("HOM_A1_CT", "HET_A1_CT", "TWO_AX_CT"):
        assert np.array_equal(a[col], b[col])
    assert np.allclose(a["P"], b["P"], rtol=1e-5, atol=1e-300)


def test_freq_suppresses_variants_below_min_cell_size(linear):
    from cipherome.genomics.gwas.freq import freq_job
    from cipherome.genomics.io.site_files import site_genotypes_only

    ds, _, _ = linear
    sites = [site_genotypes_only(s) for s in _sites(ds, ["pgen", "pgen", "pgen"])]
    sites[1].policy["min_cell_size"] = 20
    run = run_local(lambda ctx: freq_job(ctx, {}, sites[ctx.index]), 3)
    res = run.results[0]
    c = res["counts"][:, :4] + res["counts"][:, 4:8]
    kept = res["released"]
    assert 0 < kept.sum() < len(kept)
    assert np.all(c[~kept] == 0)  # never opened
    assert np.all(np.minimum(c[kept, 1] + 2 * c[kept, 2], c[kept, 1] + 2 * c[kept, 0]) >= 20)
