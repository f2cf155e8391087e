"""A simulated study with dosage uncertainty, written by plink2 itself in every input format a site may bring.

Genotype probabilities blur each true call towards the Hardy-Weinberg prior by a
per-variant imputation quality (r2-like, 0.3-1) and a per-call amount, as imputation
servers' output does; the dosage is P(het) + 2 P(hom ALT), missing where the call is
missing. The pooled dosages go into a VCF (``DS``) that ``plink2 --vcf dosage=DS``
turns into the pooled .pgen (PLINK 2's 1/16384 steps, hard calls at its 0.1
threshold); every site file is then cut from it by plink2: ``--make-pgen`` (dosages),
``--export bgen-1.2 bits=8|16``, ``--export vcf vcf-dosage=DS``. Site 1 holds hard
calls only (whole-number dosages), so its ``--make-bed`` .bed and a ``--make-pgen`` of
that .bed hold exactly its share of the pooled data: sites of one study can then mix
a .bed, a .pgen and a BGEN against one pooled reference.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from cipherome.genomics.simulate import SimConfig, simulate_study, write_study

__all__ = ["dosages_from_calls", "write_dosage_study", "site_data"]


def dosages_from_calls(genotypes: np.ndarray, seed: int, exact: np.ndarray | None = None) -> np.ndarray:
    """``(m, n)`` float64 dosages in [0, 2] (NaN where the call is missing) blurred from int8 calls.

    Per variant a quality q ~ U(0.3, 1); a call is uncertain with probability 0.15 (1 - q)
    and then moves a fraction U(0.1, 1) of the way to the HWE prior's probabilities.
    Samples in ``exact`` ((n,) bool) keep their calls as whole-number dosages.
    """
    rng = np.random.default_rng(seed)
    g = np.asarray(genotypes)
    m, n = g.shape
    called = g >= 0
    p = np.where(called, g, 0).sum(1) / np.maximum(2 * called.sum(1), 1)
    prior = np.stack([(1 - p) ** 2, 2 * p * (1 - p), p * p], axis=1)  # (m, 3)
    quality = rng.uniform(0.3, 1.0, size=(m, 1))
    uncertain = rng.random((m, n)) < 0.15 * (1 - quality)
    blur = np.where(uncertain, rng.uniform(0.1, 1.0, size=(m, n)), 0.0)
    if exact is not None:
        blur[:, np.asarray(exact, bool)] = 0.0
    onehot = np.stack([g == 0, g == 1, g == 2], axis=2).astype(float)
    probs = (1 - blur[..., None]) * onehot + blur[..., None] * prior[:, None, :]
    d = probs[..., 1] + 2 * probs[..., 2]
    return np.where(called, d, np.nan)


def _write_ds_vcf(path: Path, study, dos: np.ndarray) -> None:
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write("##fileformat=VCFv4.2\n")
        for c in sorted(set(study.chrom.tolist())):
            fh.write(f"##contig=<ID={c}>\n")
        fh.write('##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">\n')
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(study.iid) + "\n")
        for j in range(dos.shape[0]):
            cells = np.char.mod("%.4f", np.nan_to_num(dos[j], nan=-1.0)).astype(object)
            cells[np.isnan(dos[j])] = "."
            fh.write(f"{study.chrom[j]}\t{study.pos[j]}\t{study.variant_id[j]}\t{study.ref[j]}\t{study.alt[j]}"
                     "\t.\t.\t.\tDS\t" + "\t".join(cells) + "\n")


def _psam(path: Path, study, idx: np.ndarray) -> None:
    path.write_text("#FID\tIID\tSEX\n" + "".join(f"{study.fid[i]}\t{study.iid[i]}\t{study.sex[i]}\n" for i in idx))


def write_dosage_study(cfg: SimConfig, outdir: Path, plink2) -> dict:
    """Simulate, write and convert; returns paths: pooled pfile, pheno, covar; per site every format.

    ``plink2(cwd, *args)`` runs plink2. Returns {"study", "dosages", "pooled": {...},
    "site1": {"pfile", "hard_pfile", "bfile", "bgen8", "bgen16", "sample", "vcf", "pheno", "covar"}, ...}.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    study = simulate_study(cfg)
    exact = np.zeros(len(study.iid), dtype=bool)
    exact[study.site_samples(0)] = True
    dos = dosages_from_calls(study.genotypes, cfg.seed + 1, exact)
    files = write_study(study, outdir, prefix="s", pooled=True, sites=True, vcf=False)
    _write_ds_vcf(outdir / "pooled_ds.vcf.gz", study, dos)
    plink2(outdir, "--vcf", "pooled_ds.vcf.gz", "dosage=DS", "--make-pgen", "--out", "pooled")
    _psam(outdir / "pooled.psam", study, np.arange(len(study.iid)))  # FID IID SEX, as the .fam
    out = {"study": study, "dosages": dos,
           "pooled": {"pfile": outdir / "pooled", "pheno": files["pooled"]["pheno"],
                      "covar": files["pooled"]["covar"], "bfile": files["pooled"]["bed"].with_suffix("")}}
    for s in range(cfg.n_sites):
        name = f"site{s + 1}"
        idx = study.site_samples(s)
        keep = outdir / f"{name}.keep"
        keep.write_text("".join(f"{study.fid[i]}\t{study.iid[i]}\n" for i in idx))
        plink2(outdir, "--pfile", "pooled", "--keep", keep.name, "--make-pgen", "--out", f"{name}_dos")
        plink2(outdir, "--pfile", f"{name}_dos", "--export", "bgen-1.2", "bits=8", "--out", f"{name}_b8")
        plink2(outdir, "--pfile", f"{name}_dos", "--export", "bgen-1.2", "bits=16", "--out", f"{name}_b16")
        plink2(outdir, "--pfile", f"{name}_dos", "--export", "vcf", "vcf-dosage=DS", "id-paste=iid", "bgz", "--out", f"{name}_ds")
        bfile = outdir / f"{name}_bed"
        plink2(outdir, "--pfile", f"{name}_dos", "--make-bed", "--out", bfile.name)
        plink2(outdir, "--bfile", bfile.name, "--make-pgen", "--out", f"{name}_hard")
        out[name] = {"pfile": outdir / f"{name}_dos", "hard_pfile": outdir / f"{name}_hard", "bfile": bfile,
                     "bgen8": outdir / f"{name}_b8.bgen", "bgen16": outdir / f"{name}_b16.bgen",
                     "sample8": outdir / f"{name}_b8.sample", "sample16": outdir / f"{name}_b16.sample",
                     "vcf": outdir / f"{name}_ds.vcf.gz", "pheno": files[name]["pheno"], "covar": files[name]["covar"]}
    return out


def site_data(ds: dict, s: int, kind: str) -> dict:
    """The ``[data]`` table of site ``s`` (0-based) of a ``write_dosage_study`` that brings the file of ``kind``:
    pgen (dosages), pgen_hard, bed, vcf (DS), bgen8 or bgen16; with its pheno and covar files."""
    f = ds[f"site{s + 1}"]
    data = {"pheno": str(f["pheno"]), "covar": str(f["covar"])}
    if kind == "pgen":
        data["pfile"] = str(f["pfile"])
    elif kind == "pgen_hard":
        data["pfile"] = str(f["hard_pfile"])
    elif kind == "bed":
        data["bfile"] = str(f["bfile"])
    elif kind == "vcf":
        data["vcf"] = str(f["vcf"])
        data["vcf_dosage"] = "DS"
    elif kind in ("bgen8", "bgen16"):
        data["bgen"] = str(f[kind])
        data["sample"] = str(f["sample" + kind[4:]])
    else:
        raise ValueError(kind)
    return data
