"""``--glm cols=`` (A1_FREQ, A1_CASE_FREQ/A1_CTRL_FREQ, MACH_R2) and ``--mach-r2-filter`` against plink2.

The study carries dosage uncertainty (``dosage_sim``, plink2 writes every site file);
plink2 runs on the pooled .pgen with the same flags. The optional columns are
disclosures: their ledger labels appear only when the submitter asks for them, and
each is documented in docs/threat_model.md.
"""
from __future__ import annotations

import numpy as np
import pytest
from dosage_sim import site_data, write_dosage_study
from genomics_files import needs_plink2, plink2

from cipherome.genomics.gwas.glm_cols import parse_cols
from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.machr2 import mach_r2_plain, site_dosage_sums
from cipherome.genomics.gwas.output import result_table, write_glm
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.io.site_files import site_from_config
from cipherome.genomics.simulate import demo_config
from cipherome.mpc.local import run_local
from cipherome.mpc.study import Site
from tests.plink_runner import read_glm, read_table, run_plink
from tests.threat_model_doc import documented_labels

pytestmark = [needs_plink2, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

QC = ["--geno", "0.1", "--maf", "0.02"]
OPTIONAL_LABELS = {"gwas.a1_freq", "gwas.a1_freq_cc", "gwas.mach_r2", "gwas.cols_withheld"}


@pytest.fixture(scope="module")
def dstudy(tmp_path_factory):
    d = tmp_path_factory.mktemp("glmcols")
    cfg = demo_config().replace(n_samples=900, n_variants=400, seed=23)
    return write_dosage_study(cfg, d, plink2), d


def _site(ds, s: int, kind: str, policy=None) -> Site:
    return Site(f"site{s + 1}", site_data(ds, s, kind), dict(policy or {}))


def _run(ds, kinds, params, policy=None):
    sites = [site_from_config(_site(ds, s, k, policy), params) for s, k in enumerate(kinds)]
    run = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), len(sites), frac=params.frac)
    labels = {e["label"] for rep in run.reports.values() for e in rep["ledger"]}
    return run.results[0], labels


def _plink(ds, d, pheno, extra, out):
    p = ds["pooled"]
    return run_plink(["--pfile", str(p["pfile"]), "--pheno", str(p["pheno"]), "--pheno-name", pheno,
                      "--covar", str(p["covar"]), *QC, *extra], d / out)


def _write(res, path):
    table, _ = result_table(res)
    write_glm(path, table, test=res["assoc"].get("test", "ADD"))
    return path


def _rows(path) -> dict[str, list[str]]:
    lines = path.read_text().splitlines()
    return {ln.split("\t")[2]: ln.split("\t") for ln in lines[1:]}, lines[0].split("\t")


def test_parse_cols_as_plink2():
    assert parse_cols("+a1freq,+machr2") == (["a1freq", "machr2"], [])
    assert parse_cols("+a1freqcc,-err,-ci") == (["a1freqcc"], ["ci", "err"])
    extra, drop = parse_cols("chrom,pos,a1freq,test,nobs,beta,se,tz,p")
    assert extra == ["a1freq", "beta"] and drop == ["ref", "alt", "firth", "orbeta", "ci", "err"]
    for bad, word in (("+a1freq,machr2", "not both"), ("+a1count", "not released"), ("+bogus", "unknown")):
        with pytest.raises(ValueError, match=word):
            parse_cols(bad)


def test_site_dosage_sums_and_plain_r2():
    """Hard calls and their float dosages give the same sums; the plaintext twin is plink2's formula."""
    rng = np.random.default_rng(1)
    g = rng.integers(-1, 3, size=(20, 50)).astype(np.int8)
    d = np.where(g < 0, np.nan, g.astype(np.float64))
    groups = rng.integers(-1, 2, size=50)
    assert np.array_equal(site_dosage_sums(g, 16384, groups, 2), site_dosage_sums(d, 16384, groups, 2))
    s = site_dosage_sums(d, 1)[:, 0, :]
    dd = np.where(np.isnan(d), 0, d)
    n = (~np.isnan(d)).sum(1)
    p = dd.sum(1) / (2 * n)
    want = ((dd * dd).sum(1) / n - (dd.sum(1) / n) ** 2) / (2 * p * (1 - p))
    assert np.allclose(mach_r2_plain(*s.T), want, equal_nan=True)


@pytest.mark.parametrize("kinds", [["pgen"] * 3, ["bed", "pgen", "bgen16"]])
def test_linear_cols_match_plink2(dstudy, kinds, tmp_path):
    """cols=+a1freq,+machr2 on a quantitative trait: the same header as plink2; A1_FREQ equal to its
    6 printed digits (pgen sites), MACH_R2 within 2e-5."""
    ds, d = dstudy
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.02, block=128, glm_cols=["a1freq", "machr2"])
    res, labels = _run(ds, kinds, params)
    assert {"gwas.a1_freq", "gwas.mach_r2"} <= labels and "gwas.a1_freq_cc" not in labels
    ref = _plink(ds, d, "quant_trait", ["--glm", "hide-covar", "cols=+a1freq,+machr2"], "lin").path(
        ".quant_trait.glm.linear")
    mine, head = _rows(_write(res, tmp_path / "mine.glm.linear"))
    theirs, head_ref = _rows(ref)
    assert head == head_ref
    assert set(mine) == set(theirs)
    i_f, i_r = head.index("A1_FREQ"), head.index("MACH_R2")
    f_m = np.array([float(mine[v][i_f]) for v in theirs])
    f_t = np.array([float(theirs[v][i_f]) for v in theirs])
    r_m = np.array([float(mine[v][i_r]) for v in theirs])
    r_t = np.array([float(theirs[v][i_r]) for v in theirs])
    tol_f = 1e-6 if kinds == ["pgen"] * 3 else 2e-5  # BGEN-16 dosages sit on a 1/65535 grid
    assert np.max(np.abs(f_m - f_t) / np.maximum(f_t, 1e-3)) <= tol_f
    assert np.max(np.abs(r_m - r_t)) <= (2e-5 if kinds == ["pgen"] * 3 else 2e-4)
    print(f"{kinds}: {len(theirs)} variants, max |d A1_FREQ| = {np.max(np.abs(f_m - f_t)):.2e}, "
          f"max |d MACH_R2| = {np.max(np.abs(r_m - r_t)):.2e}")


def test_logistic_cols_match_plink2(dstudy, tmp_path):
    """cols=+a1freq,+a1freqcc,+machr2 on a case/control trait against plink2 (no-firth)."""
    ds, d = dstudy
    params = GwasParams(pheno_name="disease", geno=0.1, maf=0.02, block=128, glm_cols=["a1freq", "a1freqcc", "machr2"])
    res, labels = _run(ds, ["bed", "pgen", "pgen"], params)  # site 1 holds hard calls only
    assert {"gwas.a1_freq", "gwas.a1_freq_cc", "gwas.mach_r2"} <= labels
    ref = _plink(ds, d, "disease", ["--glm", "hide-covar", "no-firth", "cols=+a1freq,+a1freqcc,+machr2"], "log").path(
        ".disease.glm.logistic")
    mine, head = _rows(_write(res, tmp_path / "mine.glm.logistic"))
    theirs, head_ref = _rows(ref)
    assert head[:10] == head_ref[:10] == ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "A1_CASE_FREQ",
                                          "A1_CTRL_FREQ", "MACH_R2"]
    for col, tol in (("A1_FREQ", 1e-6), ("A1_CASE_FREQ", 1e-6), ("A1_CTRL_FREQ", 1e-6), ("MACH_R2", 2e-5)):
        j = head.index(col)
        a = np.array([float(mine[v][j]) for v in theirs])
        b = np.array([float(theirs[v][j]) for v in theirs])
        assert np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3 if col != "MACH_R2" else 1)) <= tol, col


def test_optional_columns_only_when_asked(dstudy):
    """Without cols= no optional label is opened; min_cell_size withholds the cells below it (NA)."""
    ds, _ = dstudy
    base = GwasParams(pheno_name="disease", geno=0.1, maf=0.02, block=128)
    _, labels = _run(ds, ["pgen"] * 3, base)
    assert not labels & OPTIONAL_LABELS
    asked = GwasParams(**{**base.to_dict(), "glm_cols": ["a1freq", "a1freqcc", "machr2"]})
    res, labels = _run(ds, ["pgen"] * 3, asked, policy={"min_cell_size": 25})
    assert OPTIONAL_LABELS <= labels
    assert OPTIONAL_LABELS <= documented_labels()
    opt = res["assoc"]["optional"]
    held = np.asarray(opt["withheld"])
    case = np.asarray(opt["columns"]["A1_CASE_FREQ"])
    assert held.any() and not held.all()
    assert np.isnan(case[held]).all() and np.isfinite(case[~held]).all()
    # what is released meets the policy: A1 dosage in cases >= 25 (on the minor side, A1 <= 1/2)
    obs = np.asarray(res["assoc"]["obs_ct"], float)
    assert np.all(np.asarray(opt["columns"]["A1_FREQ"])[~held] * 2 * obs[~held] >= 25 - 1e-6)


@pytest.mark.parametrize("kinds,bounds", [(["pgen"] * 3, (0.95, 1.1)), (["bed", "pgen", "bgen16"], (0.9, 1.2)),
                                          (["bed"] * 3, None)])
def test_mach_r2_filter_matches_plink2(dstudy, kinds, bounds, tmp_path):
    """--mach-r2-filter MIN MAX: the tested set equals plink2's on the pooled dosages (both bounds bite);
    with hard calls only (three .bed sites), against plink2 on the pooled .bed with the default bounds
    and with tight ones."""
    ds, d = dstudy
    if bounds is None:  # hard calls: plink2 computes MaCH r2 from them too (the sites' .bed: plink2's hard calls)
        p = ds["pooled"]
        hard = run_plink(["--pfile", str(p["pfile"]), "--make-bed"], tmp_path / "hard").prefix
        for b in ((0.1, 2.0), (0.97, 1.03)):
            params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.02, block=128, mach_r2_filter=list(b))
            res, _ = _run(ds, kinds, params)
            ref = read_glm(run_plink(["--bfile", str(hard), "--pheno", str(p["pheno"]), "--pheno-name",
                                      "quant_trait", "--covar", str(p["covar"]), *QC, "--mach-r2-filter", *map(str, b),
                                      "--glm", "hide-covar"], tmp_path / f"hb{b[0]}").path(".quant_trait.glm.linear"))
            got = set(np.asarray(res["variants"]["id"])[np.asarray(res["tested"])])
            assert got == set(ref["ID"]), (b, len(got), len(ref["ID"]))
            print(f"hard calls {b}: {len(got)} tested, {res['qc']['failed'].get('mach_r2')} fail --mach-r2-filter")
        return
    params = GwasParams(pheno_name="quant_trait", geno=0.1, maf=0.02, block=128, mach_r2_filter=list(bounds))
    res, _ = _run(ds, kinds, params)
    ref = read_glm(_plink(ds, d, "quant_trait", ["--mach-r2-filter", *map(str, bounds), "--glm", "hide-covar"],
                          f"mf{len(kinds)}").path(".quant_trait.glm.linear"))
    got = set(np.asarray(res["variants"]["id"])[np.asarray(res["tested"])])
    free = read_glm(_plink(ds, d, "quant_trait", ["--glm", "hide-covar"], "nofilter").path(".quant_trait.glm.linear"))
    fr = read_table(run_plink(["--pfile", str(ds["pooled"]["pfile"]), "--freq", "cols=+machr2"], d / "fr").path(".afreq"))
    r2 = dict(zip(fr["ID"], fr["MACH_R2"]))
    lo = sum(r2[v] < bounds[0] for v in free["ID"])
    hi = sum(r2[v] > bounds[1] for v in free["ID"])
    assert lo > 0 and hi > 0  # both bounds bite
    assert res["qc"]["failed"]["mach_r2"] >= lo + hi
    if kinds == ["pgen"] * 3:
        assert got == set(ref["ID"]), (len(got), len(ref["ID"]))
    else:  # BGEN-16 dosages: only variants within the grid's r2 difference of a bound may differ
        diff = got ^ set(ref["ID"])
        assert all(min(abs(r2[v] - bounds[0]), abs(r2[v] - bounds[1])) < 1e-3 for v in diff), diff
    print(f"{kinds} {bounds}: {len(got)} tested, {lo} below min, {hi} above max")


@pytest.mark.slow
@pytest.mark.long_e2e  # 18 s on a Zen 1 host: .ci/run runs it after the default run
def test_cli_through_daemons_as_plink2(dstudy, tmp_path):
    """`cipherome gwas --glm hide-covar cols=+a1freq,+machr2 --mach-r2-filter 0.95 1.1` on three party daemons
    (gRPC, mutual TLS) whose sites bring a .bed, a .pgen and a BGEN-16: the file has plink2's header and
    tested set, A1_FREQ within BGEN's grid, MACH_R2 within 2e-4."""
    from click.testing import CliRunner

    from cipherome.cli.main import cli
    from cipherome.mpc.launcher import LocalCluster

    ds, d = dstudy
    data = [site_data(ds, s, k) for s, k in enumerate(["bed", "pgen", "bgen16"])]
    flags = ["--pheno-name", "quant_trait", "--geno", "0.1", "--maf", "0.02", "--mach-r2-filter", "0.95", "1.1",
             "--glm", "hide-covar", "cols=+a1freq,+machr2"]
    with LocalCluster(3, workdir=tmp_path / "cluster", data=data, log_level="WARNING", start_timeout=240) as cluster:
        keys = cluster.dir / "keys"
        got = CliRunner().invoke(cli, ["gwas", "--study", str(cluster.study_path), "--key", str(keys / "submitter.key"),
                                       "--cert", str(keys / "submitter.crt"), "--out", str(tmp_path / "res"), *flags])
        assert got.exit_code == 0, got.output
    ref = _plink(ds, d, "quant_trait", ["--mach-r2-filter", "0.95", "1.1", "--glm", "hide-covar",
                                        "cols=+a1freq,+machr2"], "cli").path(".quant_trait.glm.linear")
    mine, head = _rows(tmp_path / "res.quant_trait.glm.linear")
    theirs, head_ref = _rows(ref)
    assert head == head_ref
    fr = read_table(run_plink(["--pfile", str(ds["pooled"]["pfile"]), "--freq", "cols=+machr2"], d / "fr2").path(".afreq"))
    r2 = dict(zip(fr["ID"], fr["MACH_R2"]))
    assert all(min(abs(r2[v] - 0.95), abs(r2[v] - 1.1)) < 1e-3 for v in set(mine) ^ set(theirs))
    both = sorted(set(mine) & set(theirs))
    for col, tol in (("A1_FREQ", 2e-5), ("MACH_R2", 2e-4)):
        j = head.index(col)
        assert max(abs(float(mine[v][j]) - float(theirs[v][j])) for v in both) <= tol, col
