"""Plaintext twins of every GWAS statistic, each proven equal to PLINK on simulated data; the secure versions are tested against these.

This module gathers the public functions of the ``reference_*`` modules (QC, linear,
trend, logistic, PCA, genomic control); docs/statistics.md gives their formulas, the
PLINK commands they match and the measured agreement.
"""
from __future__ import annotations

from cipherome.genomics.gwas.gc import lambda_gc, p_to_chi2
from cipherome.genomics.reference.linear import (
    LinearResult,
    VariantSums,
    complete_samples,
    design_matrix,
    glm_linear,
    iter_variant_sums,
    plink2_a1_is_alt,
)
from cipherome.genomics.reference.logistic import (
    LogisticResult,
    NullModel,
    ScoreResult,
    fit_null_logistic,
    glm_firth,
    glm_logistic,
    logistic_score_test,
    score_sums,
    score_test_from_sums,
)
from cipherome.genomics.reference.pca import (
    PCAResult,
    orient_signs,
    pca_exact,
    pca_randomized,
    relationship_matrix,
    standardize,
    thin_by_count,
    thin_by_distance,
)
from cipherome.genomics.reference.qc import (
    QCResult,
    alt_freq,
    genotype_counts,
    hwe_chisq,
    hwe_exact,
    minor_allele_freq,
    qc_filter,
    sample_missing_rate,
    variant_missing_rate,
)
from cipherome.genomics.reference.trend import TrendResult, residualized_trend_test, trend_test

__all__ = [
    # QC
    "QCResult", "qc_filter", "genotype_counts", "variant_missing_rate", "sample_missing_rate",
    "alt_freq", "minor_allele_freq", "hwe_exact", "hwe_chisq",
    # linear
    "LinearResult", "VariantSums", "glm_linear", "iter_variant_sums", "complete_samples",
    "design_matrix", "plink2_a1_is_alt",
    # trend
    "TrendResult", "trend_test", "residualized_trend_test",
    # logistic
    "LogisticResult", "ScoreResult", "NullModel", "glm_firth", "glm_logistic", "fit_null_logistic",
    "logistic_score_test", "score_test_from_sums", "score_sums",
    # PCA
    "PCAResult", "pca_exact", "pca_randomized", "relationship_matrix", "standardize",
    "thin_by_count", "thin_by_distance", "orient_signs",
    # genomic control
    "lambda_gc", "p_to_chi2",
]
