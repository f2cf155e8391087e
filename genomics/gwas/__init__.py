"""The secure GWAS job and its stages: common variants, QC, PCA, association, logistic regression, outputs."""
