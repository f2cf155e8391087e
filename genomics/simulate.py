"""Deterministic simulation of a multi-site genetic study with population structure, planted causal variants and missing data.

Genotypes follow the Balding-Nichols model with uneven population mixing across sites,
and the phenotypes carry planted genetic effects, covariate effects and a population mean
shift (confounding), so every GWAS pitfall has something to bite on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cipherome.genomics.io import writers as writebed

# Conventions (shared with writebed and the reference twins): genotypes are int8 of
# shape (n_variants, n_samples) holding the ALT allele count 0/1/2, -1 for a missing
# call; ALT is the A1 allele of the written .bim.  Binary phenotypes are float64
# 0 (control) / 1 (case) / NaN in memory and PLINK's 1/2/NA in files.  The same config
# (seed included) gives a bit-identical study.

__all__ = [
    "SimConfig",
    "Study",
    "QUANT_PHENO",
    "BINARY_PHENO",
    "demo_config",
    "simulate_study",
    "simulate_demo",
    "write_study",
    "write_ped",
    "write_site_files",
    "balding_nichols_freqs",
    "default_site_mix",
]

#: Column names of the two simulated phenotypes in the written phenotype file.
QUANT_PHENO = "quant_trait"
BINARY_PHENO = "disease"

_ALLELE_PAIRS = np.array(
    [(a, b) for a in "ACGT" for b in "ACGT" if a != b], dtype="<U1"
)


@dataclass(frozen=True)
class SimConfig:
    """Parameters of a simulated study; every default is the ``cipherome demo`` preset.

    Rates are per genotype call (``missing_rate``) or per sample/variant fraction.
    ``site_population_mix`` is ``n_sites`` rows of ``n_populations`` mixing weights
    (None: a gradient, site 1 mostly population A, the last site mostly the last
    population).  ``population_shift`` is the phenotype mean difference (in units of
    the residual SD) between the first and the last population, spread linearly.
    """

    n_samples: int = 1500
    n_variants: int = 3000
    n_populations: int = 2
    fst: float = 0.05
    n_sites: int = 3
    site_fractions: tuple[float, ...] | None = None
    site_population_mix: tuple[tuple[float, ...], ...] | None = None
    n_chromosomes: int = 3
    chromosome_length: int = 50_000_000
    rare_fraction: float = 0.1
    rare_freq_range: tuple[float, float] = (0.002, 0.05)
    common_freq_range: tuple[float, float] = (0.05, 0.95)
    missing_rate: float = 0.01
    high_missing_variant_fraction: float = 0.01
    high_missing_variant_rate: float = 0.08
    high_missing_sample_fraction: float = 0.005
    high_missing_sample_rate: float = 0.08
    hwe_error_fraction: float = 0.005
    n_causal: int = 5
    causal_h2: float = 0.02
    population_shift: float = 0.25
    case_fraction: float = 0.3
    n_extra_covariates: int = 2
    pheno_missing_rate: float = 0.0
    covar_missing_rate: float = 0.0
    seed: int = 20240611

    def replace(self, **changes) -> "SimConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass
class Study:
    """A simulated study, pooled over all sites (samples ordered by site).

    Shapes: ``m`` variants, ``n`` samples, ``c`` covariates, ``k`` causal variants,
    ``P`` populations.

    genotypes        (m, n) int8     ALT allele count, -1 missing
    true_genotypes   (m, n) int8     the same before missing calls and call errors
    chrom            (m,)   int32    1..n_chromosomes
    pos              (m,)   int64    1-based positions, increasing within a chromosome
    variant_id       (m,)   str      "chrom:pos"
    ref, alt         (m,)   str      single bases
    fid, iid         (n,)   str      FID == IID, unique over the study
    site             (n,)   int32    0-based site index
    population       (n,)   int32    0-based population index
    sex              (n,)   int32    1 male, 2 female (PLINK .fam coding)
    covariates       (n, c) float64  age, sex (0/1), cov1.. ; NaN missing
    quant            (n,)   float64  quantitative phenotype, NaN missing
    binary           (n,)   float64  1 case, 0 control, NaN missing
    liability        (n,)   float64  the liability behind ``binary``
    causal_index     (k,)   int64    indices of the planted causal variants
    causal_beta      (k,)   float64  effect per ALT allele on ``quant`` (and liability)
    ancestral_freq   (m,)   float64  ALT frequency in the ancestral population
    population_freq  (m, P) float64  ALT frequency in each population
    hwe_error_index  (e,)   int64    variants with planted het->hom call errors
    """

    config: SimConfig
    genotypes: np.ndarray
    true_genotypes: np.ndarray
    chrom: np.ndarray
    pos: np.ndarray
    variant_id: np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    fid: np.ndarray
    iid: np.ndarray
    site: np.ndarray
    population: np.ndarray
    sex: np.ndarray
    covariates: np.ndarray
    covariate_names: tuple[str, ...]
    quant: np.ndarray
    binary: np.ndarray
    liability: np.ndarray
    causal_index: np.ndarray
    causal_beta: np.ndarray
    ancestral_freq: np.ndarray
    population_freq: np.ndarray
    hwe_error_index: np.ndarray
    contig_lengths: dict[str, int] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.genotypes.shape[1])

    @property
    def n_variants(self) -> int:
        return int(self.genotypes.shape[0])

    def site_samples(self, s: int) -> np.ndarray:
        """Indices (int64) of the samples held by site ``s`` (0-based)."""
        return np.flatnonzero(self.site == s)

    def subset_samples(self, idx: np.ndarray) -> "Study":
        """The same study restricted to samples ``idx`` (variants unchanged)."""
        idx = np.asarray(idx)
        per_sample = {
            "genotypes": self.genotypes[:, idx],
            "true_genotypes": self.true_genotypes[:, idx],
            "fid": self.fid[idx],
            "iid": self.iid[idx],
            "site": self.site[idx],
            "population": self.population[idx],
            "sex": self.sex[idx],
            "covariates": self.covariates[idx],
            "quant": self.quant[idx],
            "binary": self.binary[idx],
            "liability": self.liability[idx],
        }
        return dataclasses.replace(self, **per_sample)

    def site_study(self, s: int) -> "Study":
        """The part of the study held by site ``s`` (0-based)."""
        return self.subset_samples(self.site_samples(s))


def demo_config() -> SimConfig:
    """The small deterministic preset of ``cipherome demo``: 3 sites, 1,500 samples, 3,000 variants."""
    return SimConfig()


def default_site_mix(n_sites: int, n_populations: int) -> np.ndarray:
    """Uneven population mixing, ``(n_sites, n_populations)`` float64 rows summing to 1.

    Sites and populations sit on [0, 1]; a site draws population k with weight
    ``1 / (0.15 + |t_site - u_k|)``.  Two populations, three sites gives
    0.885/0.115, 0.5/0.5, 0.115/0.885.
    """
    t = np.linspace(0, 1, n_sites) if n_sites > 1 else np.array([0.5])
    u = np.linspace(0, 1, n_populations) if n_populations > 1 else np.array([0.5])
    w = 1.0 / (0.15 + np.abs(t[:, None] - u[None, :]))
    return w / w.sum(axis=1, keepdims=True)


def balding_nichols_freqs(
    rng: np.random.Generator, ancestral: np.ndarray, fst: float, n_populations: int
) -> np.ndarray:
    """Population allele frequencies ``(m, P)`` float64 under Balding-Nichols.

    p_k ~ Beta(p (1-F)/F, (1-p)(1-F)/F) independently per population, so that
    E[p_k] = p and Var[p_k] = F p (1-p).
    """
    p = np.asarray(ancestral, dtype=np.float64)
    if fst <= 0:
        return np.repeat(p[:, None], n_populations, axis=1)
    s = (1.0 - fst) / fst
    return rng.beta((p * s)[:, None], ((1 - p) * s)[:, None], size=(p.size, n_populations))


def _ancestral_freqs(rng: np.random.Generator, cfg: SimConfig) -> np.ndarray:
    m = cfg.n_variants
    freq = rng.uniform(*cfg.common_freq_range, size=m)
    rare = rng.random(m) < cfg.rare_fraction
    freq[rare] = rng.uniform(*cfg.rare_freq_range, size=int(rare.sum()))
    # rare ALT or rare REF, so the minor allele is not always the coded one
    flip = rare & (rng.random(m) < 0.5)
    freq[flip] = 1.0 - freq[flip]
    return freq


def _layout(rng: np.random.Generator, cfg: SimConfig):
    m, nc = cfg.n_variants, cfg.n_chromosomes
    counts = np.full(nc, m // nc)
    counts[: m % nc] += 1
    chrom = np.repeat(np.arange(1, nc + 1, dtype=np.int32), counts)
    pos = np.empty(m, dtype=np.int64)
    start = 0
    for c in range(nc):
        k = int(counts[c])
        pos[start : start + k] = np.sort(
            rng.choice(cfg.chromosome_length - 1, size=k, replace=False) + 1
        )
        start += k
    alleles = _ALLELE_PAIRS[rng.integers(0, len(_ALLELE_PAIRS), size=m)]
    ids = np.array([f"{c}:{p}" for c, p in zip(chrom, pos)])
    return chrom, pos, ids, alleles[:, 0].copy(), alleles[:, 1].copy()


def _assign_samples(rng: np.random.Generator, cfg: SimConfig):
    n, S, P = cfg.n_samples, cfg.n_sites, cfg.n_populations
    frac = np.full(S, 1.0 / S) if cfg.site_fractions is None else np.asarray(cfg.site_fractions, float)
    if frac.shape != (S,) or np.any(frac < 0):
        raise ValueError(f"site_fractions must be {S} non-negative numbers")
    sizes = np.floor(frac / frac.sum() * n).astype(np.int64)
    sizes[: n - sizes.sum()] += 1
    mix = (
        default_site_mix(S, P)
        if cfg.site_population_mix is None
        else np.asarray(cfg.site_population_mix, dtype=np.float64)
    )
    if mix.shape != (S, P):
        raise ValueError(f"site_population_mix must have shape ({S}, {P}), got {mix.shape}")
    mix = mix / mix.sum(axis=1, keepdims=True)
    site = np.repeat(np.arange(S, dtype=np.int32), sizes)
    pop = np.empty(n, dtype=np.int32)
    for s in range(S):
        sel = site == s
        pop[sel] = rng.choice(P, size=int(sel.sum()), p=mix[s])
    return site, pop


def _draw_genotypes(rng: np.random.Generator, freq_per_sample_pop: np.ndarray, pop: np.ndarray,
                    chunk: int = 4096) -> np.ndarray:
    m = freq_per_sample_pop.shape[0]
    n = pop.size
    g = np.empty((m, n), dtype=np.int8)
    for a in range(0, m, chunk):
        p = freq_per_sample_pop[a : a + chunk][:, pop].astype(np.float32)
        u1 = rng.random(p.shape, dtype=np.float32)
        u2 = rng.random(p.shape, dtype=np.float32)
        g[a : a + chunk] = (u1 < p).astype(np.int8) + (u2 < p).astype(np.int8)
    return g


def simulate_study(config: SimConfig | None = None) -> Study:
    """Simulate a pooled multi-site study from ``config`` (default: the demo preset).

    Steps: ancestral frequencies (uniform common + a ``rare_fraction`` of rare
    variants) -> Balding-Nichols population frequencies -> samples to sites and
    populations -> genotypes -> planted het->hom call errors on a few variants (HWE
    failures) -> causal variants and phenotypes (genetic effect + population shift +
    covariate effects + noise; binary trait by liability threshold) -> missing calls
    (uniform ``missing_rate`` plus a few bad variants and bad samples) -> missing
    phenotype/covariate values.
    """
    cfg = config or demo_config()
    if cfg.n_samples < cfg.n_sites or cfg.n_variants < max(cfg.n_chromosomes, cfg.n_causal):
        raise ValueError("too few samples or variants for the requested layout")
    rng = np.random.default_rng(cfg.seed)
    m, n, P = cfg.n_variants, cfg.n_samples, cfg.n_populations

    chrom, pos, ids, ref, alt = _layout(rng, cfg)
    ancestral = _ancestral_freqs(rng, cfg)
    pop_freq = balding_nichols_freqs(rng, ancestral, cfg.fst, P)
    site, pop = _assign_samples(rng, cfg)
    true_g = _draw_genotypes(rng, pop_freq, pop)

    # planted genotyping errors: heterozygotes called homozygous -> HWE failures
    n_err = int(round(cfg.hwe_error_fraction * m))
    hwe_err = np.sort(rng.choice(m, size=n_err, replace=False)) if n_err else np.zeros(0, np.int64)
    called = true_g.copy()
    for j in hwe_err:
        het = np.flatnonzero(called[j] == 1)
        flip = het[rng.random(het.size) < 0.5]
        called[j, flip] = np.where(rng.random(flip.size) < 0.5, 0, 2).astype(np.int8)

    # causal variants: common in the pooled data, no planted call errors
    pooled_alt = true_g.mean(axis=1, dtype=np.float64) / 2.0
    maf = np.minimum(pooled_alt, 1 - pooled_alt)
    eligible = np.setdiff1d(np.flatnonzero(maf > 0.1), hwe_err)
    k = min(cfg.n_causal, eligible.size)
    causal = np.sort(rng.choice(eligible, size=k, replace=False)).astype(np.int64)
    pc = pooled_alt[causal]
    beta = np.sqrt(cfg.causal_h2 / (2 * pc * (1 - pc))) * rng.choice([-1.0, 1.0], size=k)
    genetic = ((true_g[causal].astype(np.float64) - 2 * pc[:, None]) * beta[:, None]).sum(axis=0)

    # covariates: age, sex, then continuous cov1..; population mean shift
    sex = rng.integers(1, 3, size=n).astype(np.int32)
    age = np.round(rng.normal(50, 10, size=n), 1)
    extra = rng.normal(size=(n, cfg.n_extra_covariates))
    covariates = np.column_stack([age, (sex == 2).astype(np.float64), extra])
    names = ("age", "sex") + tuple(f"cov{i + 1}" for i in range(cfg.n_extra_covariates))
    cov_effect = 0.03 * (age - 50) + 0.4 * (sex == 2) + extra @ np.full(cfg.n_extra_covariates, 0.2)
    shift = cfg.population_shift * (pop / max(P - 1, 1))
    noise_sd = np.sqrt(max(1.0 - cfg.causal_h2 * k, 0.25))
    quant = genetic + shift + cov_effect + rng.normal(0, noise_sd, size=n)
    liability = genetic + shift + cov_effect + rng.normal(0, noise_sd, size=n)
    thresh = np.quantile(liability, 1.0 - cfg.case_fraction)
    binary = (liability > thresh).astype(np.float64)

    # missing calls: uniform, plus a few bad variants and bad samples
    rate_v = np.full(m, cfg.missing_rate)
    bad_v = rng.random(m) < cfg.high_missing_variant_fraction
    rate_v[bad_v] = cfg.high_missing_variant_rate
    rate_s = np.zeros(n)
    bad_s = rng.random(n) < cfg.high_missing_sample_fraction
    rate_s[bad_s] = cfg.high_missing_sample_rate
    geno = called
    for a in range(0, m, 4096):
        r = 1.0 - (1.0 - rate_v[a : a + 4096, None]) * (1.0 - rate_s[None, :])
        miss = rng.random(r.shape) < r
        geno[a : a + 4096][miss] = -1

    # missing phenotype / covariate values
    if cfg.pheno_missing_rate > 0:
        quant[rng.random(n) < cfg.pheno_missing_rate] = np.nan
        binary[rng.random(n) < cfg.pheno_missing_rate] = np.nan
    if cfg.covar_missing_rate > 0:
        covariates[rng.random(covariates.shape) < cfg.covar_missing_rate] = np.nan

    iid = np.array([f"S{s + 1}_{i:05d}" for i, s in enumerate(site)])
    return Study(
        config=cfg,
        genotypes=geno,
        true_genotypes=true_g,
        chrom=chrom,
        pos=pos,
        variant_id=ids,
        ref=ref,
        alt=alt,
        fid=iid.copy(),
        iid=iid,
        site=site,
        population=pop,
        sex=sex,
        covariates=covariates,
        covariate_names=names,
        quant=quant,
        binary=binary,
        liability=liability,
        causal_index=causal,
        causal_beta=beta,
        ancestral_freq=ancestral,
        population_freq=pop_freq,
        hwe_error_index=hwe_err.astype(np.int64),
        contig_lengths={str(c): cfg.chromosome_length for c in range(1, cfg.n_chromosomes + 1)},
    )


def simulate_demo() -> Study:
    """The ``cipherome demo`` study (see :func:`demo_config`)."""
    return simulate_study(demo_config())


def write_ped(path: Path, study: Study) -> Path:
    """A PED file of unrelated individuals: FID IID 0 0 SEX PHENOTYPE, the binary trait as 2 case / 1 control / 0."""
    status = np.where(np.isnan(study.binary), 0, np.where(study.binary == 1, 2, 1))
    lines = [f"{f} {i} 0 0 {int(x)} {int(a)}\n" for f, i, x, a in zip(study.fid, study.iid, study.sex, status)]
    with writebed.atomic_path(path) as tmp:
        Path(tmp).write_text("".join(lines))
    return path


def _write_one(study: Study, prefix: Path, vcf: bool) -> dict[str, Path]:
    paths = writebed.write_bed(
        prefix,
        study.genotypes,
        writebed.Variants(study.chrom, study.pos, study.variant_id, study.ref, study.alt),
        study.fid,
        study.iid,
        sex=study.sex,
    )
    paths["pheno"] = prefix.with_name(prefix.name + ".pheno")
    writebed.write_pheno(
        paths["pheno"],
        study.fid,
        study.iid,
        {QUANT_PHENO: study.quant, BINARY_PHENO: study.binary},
        binary=[BINARY_PHENO],
    )
    paths["covar"] = prefix.with_name(prefix.name + ".covar")
    writebed.write_covar(paths["covar"], study.fid, study.iid, study.covariates, study.covariate_names)
    if vcf:
        paths["vcf"] = writebed.write_vcf(
            prefix.with_name(prefix.name + ".vcf.gz"),
            study.genotypes,
            writebed.Variants(study.chrom.astype(str), study.pos, study.variant_id, study.ref, study.alt),
            study.iid,
            contig_lengths=study.contig_lengths,
        )
        paths["ped"] = write_ped(prefix.with_name(prefix.name + ".ped"), study)
    return paths


def write_site_files(study: Study, s: int, prefix: str | Path, vcf: bool = True) -> dict[str, Path]:
    """Write site ``s`` (0-based) of the study as ``prefix.{bed,bim,fam,pheno,covar}`` (+ ``.vcf.gz``, ``.ped``)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return _write_one(study.site_study(s), prefix, vcf)


def write_study(
    study: Study,
    outdir: str | Path,
    prefix: str = "study",
    pooled: bool = True,
    sites: bool = True,
    vcf: bool = True,
) -> dict[str, dict[str, Path]]:
    """Write the study as PLINK 1 binary + pheno + covar (+ bgzipped, indexed VCF and a PED file).

    Pooled files are ``outdir/prefix.{bed,bim,fam,pheno,covar,vcf.gz}``; site ``s``
    (1-based in names) gets ``outdir/prefix.site{s}.*``.  Returns
    ``{"pooled": {ext: path}, "site1": {...}, ...}``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Path]] = {}
    if pooled:
        out["pooled"] = _write_one(study, outdir / prefix, vcf)
    if sites:
        for s in range(study.config.n_sites):
            out[f"site{s + 1}"] = write_site_files(study, s, outdir / f"{prefix}.site{s + 1}", vcf)
    return out
