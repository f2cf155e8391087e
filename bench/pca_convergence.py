"""How the pooled PCA's block Krylov iteration converges on a benchmark study, pass by pass.

Runs ``genomics.gwas.pca_pooled.pooled_pca_run`` (the real code path: 3 sites in process, fixed-point
openings) for a fixed number of passes with each block size asked for, and prints per pass the
largest relative residual |K v_i - theta_i v_i| / theta_i of the top-K Ritz pairs (what
``--pca-rtol`` stops on) and the largest relative error of the top-K Ritz values against a
reference run (the largest block size, ``--ref-passes`` passes). The PCA variants are those
passing --geno and --maf on the pooled counts (no --hwe: it needs the secure QC), with
PLINK 2's pairwise matrix. Example (the 10,000 x 100,000 GWAS benchmark study):

    python -m bench.pca_convergence --size 10000x100000 --blocks 20,40 --passes 30
"""
from __future__ import annotations

import argparse

import numpy as np

from bench.gwas_data import gwas_site_tables
from cipherome.genomics.gwas import pca_pooled
from cipherome.genomics.gwas.pca import PCAParams, pairwise_factors
from cipherome.genomics.io.bed import iter_bed
from cipherome.mpc.local import run_local


def site_genotypes(size: str, geno: float, maf: float) -> list[np.ndarray]:
    """Each site's (M, n_s) int8 calls of the variants passing --geno/--maf on the pooled counts."""
    n, m = (int(x) for x in size.split("x"))
    gs = [np.concatenate([blk.dosage for blk in iter_bed(t["bfile"])]) for t in gwas_site_tables(n, m)]
    counts = [pca_pooled.call_counts(g)[:2] for g in gs]  # per site (ALT sum, calls) per variant
    alt, called = sum(c[0] for c in counts), sum(c[1] for c in counts)
    p = alt / np.maximum(2.0 * called, 1.0)
    keep = (called >= (1.0 - geno) * n) & (np.minimum(p, 1.0 - p) >= maf)
    return [np.ascontiguousarray(g[keep]) for g in gs]


def krylov_history(gs: list[np.ndarray], k: int, b: int, passes: int) -> list[dict]:
    """The ``KrylovResult.history`` of ``passes`` fixed passes with block size ``b``."""
    ns = [g.shape[1] for g in gs]
    pp = PCAParams(k=k, oversample=b - k, passes=passes, mode="pooled")

    def site(ctx):
        g = gs[ctx.index].copy()  # pooled_pca_run consumes its calls (pca_operator turns them into G in place)
        alt, obs, missing = pca_pooled.call_counts(g)
        d, e = pairwise_factors(missing, g.shape[0], False)
        return pca_pooled.pooled_pca_run(ctx, g, (alt, obs), ns, b, pp, d, e, 24)[1].history

    return run_local(site, len(gs), frac=24, timeout=7200).results[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="10000x100000")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--blocks", default="20", help="block sizes b = K + oversampling, comma-separated")
    ap.add_argument("--passes", type=int, default=30)
    ap.add_argument("--ref-passes", type=int, default=30)
    ap.add_argument("--geno", type=float, default=0.1)
    ap.add_argument("--maf", type=float, default=0.01)
    a = ap.parse_args(argv)
    gs = site_genotypes(a.size, a.geno, a.maf)
    blocks = [int(x) for x in a.blocks.split(",")]
    print(f"{a.size}: {gs[0].shape[0]} PCA variants, sites {[g.shape[1] for g in gs]}", flush=True)
    ref = np.asarray(krylov_history(gs, a.k, max(blocks) * 2, a.ref_passes)[-1]["top"])
    print("reference eigenvalues", np.round(ref, 4).tolist(), flush=True)
    for b in blocks:
        for h in krylov_history(gs, a.k, b, a.passes):
            err = float(np.max(np.abs(np.asarray(h["top"]) / ref - 1.0)))
            print(f"b {b:3d} pass {h['pass']:3d} columns {h['pass'] * b:5d} max rel residual {h['rel_residual']:.2e} "
                  f"max eigenvalue error {err:.2e}", flush=True)


if __name__ == "__main__":
    main()
