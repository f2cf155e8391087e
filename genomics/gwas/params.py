"""The public parameters of a secure GWAS job, in PLINK 2's vocabulary.

They travel as JSON to every party's daemon and are identical at every party;
site-specific inputs (file paths) never appear here, only in each site's config.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

__all__ = ["GwasParams", "MAX_CORR", "MAX_VIF"]

#: PLINK 2's --glm multicollinearity limits (its --max-corr and --vif defaults)
MAX_CORR, MAX_VIF = 0.999, 50.0


@dataclass
class GwasParams:
    """Flags of ``cipherome gwas`` (PLINK 2 names; None disables a filter).

    pheno_name: phenotype column; covar_names: covariate columns (None: all; []: none, as
    ``--glm allow-no-covars`` when sites have covariate files);
    mind/geno/maf/hwe: QC thresholds (``--mind`` is applied locally per site);
    glm: 'auto' (linear for quantitative, logistic for binary traits, as PLINK 2), 'linear',
    'logistic' or 'trend'; ci: confidence level for L95/U95 columns (e.g. 0.95);
    pca: number of principal components to compute and add as covariates (0: none); pca_variants:
    count thinning of the PCA variants (0: every QC-passing variant, as plink2 --pca);
    block: variants per association block (memory bound); frac: fixed-point bits;
    min_cell_size: set from the sites' policies (the largest): a variant is released
    only if its minor allele count and its OBS_CT are at least this;
    variant_bound: public bound on distinct variants per site for the secure variant
    intersection (None: the largest site's count rounded up to a power of two, found in MPC).
    extract/exclude: variant ID lists (plink2 --extract/--exclude, sent with the job);
    chroms: --chr names (normalised); from_bp/to_bp: inclusive position bounds (one chromosome).
    mach_r2_filter: [min, max] of plink2's --mach-r2-filter (None: off);
    glm_cols: the optional column sets of ``--glm cols=`` that are released (``glm_cols.OPTIONAL``:
    'a1freq', 'a1freqcc', 'machr2'), each a disclosure the sites see in the job's parameters;
    glm_drop: default column sets left out of the file (``cols=`` without them).
    """

    pheno_name: str | None = None
    covar_names: list[str] | None = None
    mind: float | None = None
    geno: float | None = None
    maf: float | None = None
    hwe: float | None = None
    hwe_midp: bool = False
    glm: str = "auto"
    ci: float | None = None
    pca: int = 0
    pca_variants: int = 0
    logistic_top: int = 100
    case_control_01: bool = False
    block: int = 4096
    frac: int = 24
    missing_bound: float = 0.1
    min_cell_size: int = 0
    extract: list[str] | None = None
    exclude: list[str] | None = None
    chroms: list[str] | None = None
    from_bp: int | None = None
    to_bp: int | None = None
    variant_bound: int | None = None
    mach_r2_filter: list[float] | None = None
    glm_cols: list[str] = field(default_factory=list)
    glm_drop: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GwasParams":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GWAS parameter(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def validate(self) -> "GwasParams":
        for name in ("mind", "geno", "maf", "hwe"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise ValueError(f"--{name} must be between 0 and 1 (got {v})")
        if self.glm not in ("auto", "linear", "logistic", "trend"):
            raise ValueError(f"--glm must be linear, logistic or trend (got {self.glm!r})")
        if self.ci is not None and not 0 < self.ci < 1:
            raise ValueError(f"--ci must be between 0 and 1 (got {self.ci})")
        if (self.from_bp is not None or self.to_bp is not None) and (self.chroms is None or len(self.chroms) != 1):
            raise ValueError("--from-bp/--to-bp need --chr with exactly one chromosome (as plink2)")
        if self.variant_bound is not None and self.variant_bound < 1:
            raise ValueError("variant_bound must be positive")
        if self.mach_r2_filter is not None:
            lo, hi = (float(v) for v in self.mach_r2_filter)
            if not 0 <= lo <= hi:
                raise ValueError(f"--mach-r2-filter needs 0 <= min <= max (got {lo} {hi})")
        from cipherome.genomics.gwas.glm_cols import check_sets

        check_sets(self.glm_cols, self.glm_drop)
        if self.block < 1:
            raise ValueError("block must be positive")
        return self
