"""A site's own statistics, computed in plaintext at PLINK speed, and their kernels."""
