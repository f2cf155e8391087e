"""The PCA flags of ``cipherome gwas`` reach the PCA's parameters."""
import click
import pytest

from cipherome.cli.gwas import gwas, pca_extra
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.gwas.pca import PCAParams


def test_pca_rtol_reaches_the_krylov_stop():
    extra = pca_extra((), pca_passes=None, pca_mode="pooled", pca_rtol=0.005)
    pp = PCAParams.from_gwas(GwasParams(pheno_name="y", pca=10, extra=extra))
    assert pp.rtol == 0.005 and pp.mode == "pooled" and pp.passes is None
    assert PCAParams.from_gwas(GwasParams(pheno_name="y", pca=10, extra=pca_extra(()))).rtol == 2e-3


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "abc"])
def test_pca_rtol_outside_zero_one_is_refused(value):
    opt = next(p for p in gwas.params if p.name == "pca_rtol")
    with pytest.raises(click.BadParameter):
        opt.type.convert(value, opt, None)


@pytest.mark.parametrize("value", [0.0, 1.0, 2.0])
def test_a_job_with_pca_rtol_outside_zero_one_is_refused(value):
    with pytest.raises(ValueError, match="--pca-rtol"):
        PCAParams.from_gwas(GwasParams(pheno_name="y", pca=10, extra={"pca_rtol": value}))
