"""What a user keeps from a GWAS: plots that say what was adjusted and fit their data, per-trait eigenvalues,
and a QC summary that counts the variants withheld by the sites' policy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cipherome.cli.gwas import qc_summary
from cipherome.genomics.gwas import output


@pytest.fixture
def figures(monkeypatch):
    """Capture the figures the plot functions would write."""
    got = []
    monkeypatch.setattr(output, "_save_png", lambda fig, path: got.append(fig) or path)
    return got


def test_qq_band_is_the_null_order_statistics():
    exp, lo, hi = output.qq_band(1000)
    assert np.all(lo < exp) and np.all(exp < hi)
    # the smallest of 1000 uniforms is below 2.53e-5 with probability 2.5%
    assert hi[0] == pytest.approx(-np.log10(stats.beta.ppf(0.025, 1, 1000)))
    # pointwise 95%: over many null studies, each order statistic falls inside about 95% of the time
    _, lo, hi = output.qq_band(100)
    obs = -np.log10(np.sort(np.random.default_rng(1).uniform(size=(4000, 100)), axis=1))
    coverage = np.mean((obs >= lo) & (obs <= hi), axis=0)
    assert np.all(np.abs(coverage - 0.95) < 0.02)


def test_qq_axes_fit_the_data(figures, tmp_path):
    rng = np.random.default_rng(2)
    p = rng.uniform(size=2000)
    p[:3] = [1e-30, 1e-12, 1e-9]  # strong hits: y must reach them, x must not stretch to them
    output.qq_plot(tmp_path / "x.png", p, title="t")
    ax = figures[0].axes[0]
    x_max = -np.log10(0.5 / 2000)
    assert ax.get_xlim()[1] == pytest.approx(x_max * 1.04, rel=1e-6)
    assert ax.get_ylim()[1] >= 30
    assert any(type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection") for c in ax.collections)
    assert "95%" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def _result(covariates, pca_names=None):
    n = 50
    res = {"glm": "linear", "n_assoc": 400, "covariates": covariates, "qc": {"passed": n}, "n_qc": 400,
           "n_variants": n, "trait": "quantitative", "tested": np.arange(n), "a1_is_alt": np.ones(n, bool),
           "variants": {"chrom": np.repeat(["1", "2"], n // 2), "pos": np.arange(n) * 1000 + 1,
                        "id": np.array([f"v{i}" for i in range(n)]), "ref": np.full(n, "A"), "alt": np.full(n, "G")},
           "assoc": {"obs_ct": np.full(n, 400), "errcode": np.full(n, "."),
                     "columns": {"BETA": np.zeros(n), "SE": np.ones(n), "T_STAT": np.zeros(n),
                                 "P": np.linspace(0.01, 1, n)}}}
    if pca_names:
        res["pca"] = {"eigenvalues": [9.0, 4.0], "variants": [], "names": pca_names}
    return res


def test_titles_name_the_adjustment_and_eigenval_is_per_trait(figures, tmp_path):
    with_pcs = _result(["age", "sex", "PC1", "PC2"], ["PC1", "PC2"])
    paths = output.write_gwas_outputs(tmp_path / "r", "bmi", with_pcs, {})
    title = figures[0].axes[0].get_title()
    assert "adjusted for age, sex + 2 secure PCs" in title and "lambda_GC = " in title
    assert paths["eigenval"] == tmp_path / "r.bmi.eigenval"
    output.write_gwas_outputs(tmp_path / "r", "ldl", with_pcs, {})
    assert (tmp_path / "r.bmi.eigenval").exists() and (tmp_path / "r.ldl.eigenval").exists()
    assert not (tmp_path / "r.eigenval").exists()
    output.write_gwas_outputs(tmp_path / "n", "bmi", _result([]), {})
    assert "no covariates, no PCs" in figures[-2].axes[0].get_title()
    # a covariate that the user named PC1 is not a secure PC
    output.write_gwas_outputs(tmp_path / "u", "bmi", _result(["PC1"]), {})
    assert "adjusted for PC1)" in figures[-2].axes[0].get_title()


def test_qc_summary_counts_policy_withheld_variants():
    res = {"qc": {"variants": 3000, "passed": 2900, "failed": {"geno": 30, "min_cell_size": 50}},
           "n_variants": 3000, "min_cell_size": 5}
    line = qc_summary(res)
    assert "2900 of 3000" in line and "--geno 30" in line
    assert "withheld by the sites' policy (min_cell_size = 5" in line and line.split("): ")[1].startswith("50")
    assert "withheld" not in qc_summary({"qc": {"passed": 10, "failed": {}}, "n_variants": 10})
