"""The public parameters of a filtering job, identical at every party, with their checks and defaults.

They travel as a JSON object in the job request: the model, its thresholds, the
site pre-filter criteria, the hashed table geometry and, for gene-level models,
the public gene list. Nothing in them is private to any site.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["FilterParams", "PreFilter", "MODELS", "COHORT_MODELS", "FAMILY_MODELS", "GENE_MODELS"]

COHORT_MODELS = ("carrier", "dominant", "recessive", "xlinked")
FAMILY_MODELS = ("denovo", "comphet")
GENE_MODELS = ("max-gene", "top-genes", "gene-intersect", "gene-diff")
MODELS = COHORT_MODELS + FAMILY_MODELS + GENE_MODELS


@dataclass
class PreFilter:
    """Public pre-filter criteria, applied by each site to its own rows.

    pass_only: FILTER must be PASS or '.' (otherwise the row's calls are missing);
    min_gq / min_dp: per-call thresholds (None: off); max_pop_af: drop rows whose
    population AF (``af_field``: an INFO key or a CSQ/ANN sub-field; absent = 0)
    is above it; consequences: SO terms and/or impact classes (HIGH, MODERATE,
    LOW, MODIFIER), a row is kept if any of its terms or its impact is listed
    (None: off; a row without annotation is then dropped).
    """

    pass_only: bool = True
    min_gq: int | None = None
    min_dp: int | None = None
    max_pop_af: float | None = None
    af_field: str | None = None
    consequences: list[str] | None = None

    @classmethod
    def from_params(cls, p: dict) -> "PreFilter":
        cons = p.get("consequences")
        return cls(bool(p.get("pass_only", True)),
                   None if p.get("min_gq") is None else int(p["min_gq"]),
                   None if p.get("min_dp") is None else int(p["min_dp"]),
                   None if p.get("max_pop_af") is None else float(p["max_pop_af"]),
                   p.get("af_field"), list(cons) if cons else None)

    def keeps(self, terms: set, impact: set, af: float) -> bool:
        if self.max_pop_af is not None and af > self.max_pop_af:
            return False
        if self.consequences is not None:
            allowed = set(self.consequences)
            if not (terms & allowed or impact & allowed):
                return False
        return True


@dataclass(kw_only=True)
class FilterParams(PreFilter):
    """Job parameters (all public), the site pre-filter criteria (:class:`PreFilter`) among them.

    model: one of :data:`MODELS`. min_affected (k), max_unaffected (u),
    max_cohort_af (t, a decimal string such as "0.01"): cohort thresholds. top:
    genes wanted by ``top-genes``. Pre-filter (per site, on its own rows):
    pass_only, min_gq, min_dp, max_pop_af, af_field, consequences. Hashed
    tables: table_size (T slots) and lanes (L per slot and owner); when absent
    both follow from max_variants (a public bound on the variants of one site
    after the pre-filter) by :func:`cipherome.genomics.filtering.keys.suggest_table`.
    denovo matches each child's cuckoo table (its heterozygous variants, one per
    bin) against each parent's simple table (variants not called hom-ref, in all
    three candidate bins); both are sized by :func:`cuckoo_geometry` from
    max_member_variants (a public bound on one family member's listed variants;
    default max_variants), or by table_size (bins) and lanes (parent lanes).
    comphet matches the same way on (variant, listed gene) entries (max_member_variants
    then bounds one member's entries; table_size and lanes as for denovo); with
    ``lanes`` or ``gene_buckets`` but no table_size it uses a gene-partitioned table
    of len(genes) * gene_buckets slots with ``lanes`` lanes. genes: the public gene list of gene-level models
    and comphet (symbols as in the sites' annotation).
    """

    model: str
    min_affected: int | None = None
    max_unaffected: int = 0
    max_cohort_af: str | None = None
    top: int = 10
    table_size: int | None = None
    lanes: int | None = None
    max_variants: int = 20000
    max_member_variants: int | None = None
    gene_buckets: int = 1
    genes: list[str] | None = field(default=None)

    @classmethod
    def from_dict(cls, d: dict) -> "FilterParams":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown filter parameter(s): {', '.join(unknown)}")
        return cls(**d).validate()

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def validate(self) -> "FilterParams":
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.min_affected is not None and int(self.min_affected) < 1:
            raise ValueError("min_affected must be at least 1")
        if int(self.max_unaffected) < 0:
            raise ValueError("max_unaffected must be >= 0")
        if self.max_cohort_af is not None:
            self.max_cohort_af = str(self.max_cohort_af)
            if not 0.0 <= float(self.max_cohort_af) <= 1.0:
                raise ValueError("max_cohort_af must be in [0, 1]")
        if self.max_pop_af is not None and not 0.0 <= float(self.max_pop_af) <= 1.0:
            raise ValueError("max_pop_af must be in [0, 1]")
        for name in ("table_size", "lanes", "gene_buckets", "max_variants", "max_member_variants", "top"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.table_size is not None and int(self.table_size) > (1 << 26):
            raise ValueError("table_size above 2^26 slots is not supported")
        if (self.model in GENE_MODELS or self.model == "comphet") and not self.genes:
            raise ValueError(f"model {self.model} needs the public gene list (genes / --genes FILE)")
        if self.genes is not None:
            self.genes = [str(g) for g in self.genes]
            if len(set(self.genes)) != len(self.genes):
                raise ValueError("the gene list names a gene twice")
        return self
