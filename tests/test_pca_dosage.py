"""Secure PCA on imputed dosages against ``plink2 --pca`` on the pooled dosages (.pgen made by plink2).

The study (``dosage_sim``: 2 populations, dosage uncertainty, site 1 with hard calls only)
is read by the sites as .pgen dosages, or as a mix of a .bed, a .pgen and a BGEN-16 file;
plink2 computes its matrix on the dosages (its dosage allele frequencies, its pairwise
missing-call rule), and so must the secure PCA. The same PCA on hard calls misses
plink2's dosage eigenvalues by far more, which shows the dosages are used.
"""
from __future__ import annotations

import numpy as np
import pytest
from dosage_sim import site_data, write_dosage_study
from genomics_files import needs_plink2, plink2

from cipherome.genomics.gwas.pca import PCAParams, dosage_bits, frequency_bits, secure_pca
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.gwas.variants import StudyVariants
from cipherome.genomics.io.site_files import site_from_config
from cipherome.genomics.simulate import demo_config
from cipherome.mpc.local import run_local
from cipherome.mpc.study import Site
from tests.plink_runner import read_eigenval, read_eigenvec, read_snplist, run_plink
from tests.test_pca_secure import subspace_cosines

pytestmark = [needs_plink2, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
K = 2


@pytest.fixture(scope="module")
def dstudy(tmp_path_factory):
    d = tmp_path_factory.mktemp("pcadosage")
    cfg = demo_config().replace(n_samples=900, n_variants=500, seed=17)
    ds = write_dosage_study(cfg, d, plink2)
    pooled = str(ds["pooled"]["pfile"])
    ids = read_snplist(run_plink(["--pfile", pooled, "--maf", "0.02", "--write-snplist"], d / "qc").path(".snplist"))
    (d / "pass.txt").write_text("\n".join(ids) + "\n")
    r = run_plink(["--pfile", pooled, "--extract", d / "pass.txt", "--pca", K], d / "pca")
    iid, vec = read_eigenvec(r.path(".eigenvec"))
    assert list(iid) == list(ds["study"].iid)
    return ds, set(ids), vec, read_eigenval(r.path(".eigenval"))


def _secure(ds, kinds, passed_ids, dosage: bool):
    study = ds["study"]
    params = GwasParams(pheno_name="quant_trait")
    sites = [site_from_config(Site(f"site{s + 1}", site_data(ds, s, kind), {}), params) for s, kind in enumerate(kinds)]
    m = len(study.variant_id)
    sv = StudyVariants(np.arange(m), np.zeros(m, bool), np.arange(m), 0)
    passed = np.flatnonzero(np.isin(np.asarray(study.variant_id), list(passed_ids)))
    pp = PCAParams(k=K, min_maf=0.02)
    run = run_local(lambda ctx: secure_pca(ctx, sites[ctx.index], sv, passed, np.ones(sites[ctx.index].n, bool), pp,
                                           dosage=dosage), 3, frac=24, timeout=1800)
    u = np.zeros((len(study.iid), K))
    for i, r in enumerate(run.results):
        u[study.site_samples(i)] = r.scores_own
    return u, run.results[0].eigenvalues


def test_grid_bits():
    assert dosage_bits(900, 24, 16) == 13 and dosage_bits(10**6, 24, 16) == 8
    assert frequency_bits(900, 0.02) >= 4 and frequency_bits(10**5, 0.001) == 0


@pytest.mark.parametrize("kinds", [["pgen"] * 3, ["bed", "pgen", "bgen16"]])
def test_pca_on_dosages_matches_plink2(dstudy, kinds):
    ds, passed, vec, val = dstudy
    u, eig = _secure(ds, kinds, passed, dosage=True)
    cos = subspace_cosines(u, vec)
    err = np.max(np.abs(eig - val) / val)
    print(f"{kinds}: eigenvalues {eig} vs plink2 {val} (max rel {err:.1e}), subspace cosines {cos}")
    assert err <= 2e-3
    assert abs(np.sum(u[:, 0] * vec[:, 0])) >= 0.9999  # PC1: the population axis
    assert cos.min() >= 0.999
    if kinds == ["pgen"] * 3:  # the hard calls of the same files: plink2's dosage matrix is missed by far more
        _, eig_hard = _secure(ds, kinds, passed, dosage=False)
        err_hard = np.max(np.abs(eig_hard - val) / val)
        print(f"hard calls: eigenvalues {eig_hard} (max rel {err_hard:.1e})")
        assert err_hard > 5 * err
