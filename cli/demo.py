"""``cipherome demo``: a real secure GWAS among three sites and a dealer on this machine.

It simulates a study with population structure and planted causal variants
(deterministic, a few MB), writes each site's PLINK files, makes keys and a
study, starts one daemon per party on 127.0.0.1 with mutual TLS, and runs the
secure GWAS through them: a quantitative trait without and with secure PCA
(lambda_GC before and after), and a binary trait by logistic regression with the
PCs. It prints the top hits beside the planted truth and writes results and plots.
"""
from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["demo"]


def _runs(pcs: int):
    from cipherome.genomics.gwas.params import GwasParams

    qc = dict(geno=0.05, maf=0.01, hwe=1e-6)
    # the PCs from 700 evenly thinned QC-passing variants (as --pca-thin-count 700): the demo's two
    # populations are as clear on them as on all 2,789 (lambda_GC 0.99), and the secure PCA, whose ring
    # products grow with the variants, costs less (in process: 3.5-4.0 s against 4.8-5.9 s at 1,000
    # variants). A site's PCA variants must outnumber its samples
    # (500 here), or its own PC scores would reveal the loadings (docs/threat_model.md).
    thin = dict(pca=pcs, pca_variants=700)
    return [
        ("quant_trait", "demo.nopca", GwasParams(pheno_name="quant_trait", **qc)),
        ("quant_trait", "demo", GwasParams(pheno_name="quant_trait", **thin, **qc)),
        ("disease", "demo", GwasParams(pheno_name="disease", **thin, **qc)),
    ]


@click.command("demo")
@click.option("--out", "outdir", default="cipherome-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder (not a prefix; relative to the current directory or absolute) for the results "
                   "(demo.PHENO.*), the simulated site files (data/) and the daemons' keys, configs and logs "
                   "(cluster/).")
@click.option("--sites", default=3, show_default=True, type=click.IntRange(min=2),
              help="Number of sites (compute parties); a dealer is added.")
@click.option("--pca", "pcs", default=2, show_default=True, type=click.IntRange(min=1),
              help="Principal components computed securely and adjusted for (as cipherome gwas --pca).")
@click.option("--pcs", "pcs_alias", type=int, default=None, hidden=True)  # old spelling of --pca
@click.option("--inproc", is_flag=True,
              help="Run the parties as threads in this process instead of TLS daemons (default: daemons).")
def demo(outdir: str, sites: int, pcs: int, pcs_alias: int | None, inproc: bool) -> None:
    """Run a secure GWAS on built-in example data and print the hits beside the planted truth.

    Writes into the folder --out: demo.PHENO.glm.linear/.glm.logistic.hybrid, .qc.json, .manhattan.png, .qq.png,
    .run.json and .eigenval for quant_trait (with secure PCs; demo.nopca.* without) and disease.
    """
    import numpy as np

    from cipherome.genomics.gwas.output import result_table, write_gwas_outputs
    from cipherome.genomics.gwas.gc import lambda_gc
    from cipherome.genomics.simulate import demo_config, simulate_study, write_study

    from .gwas import print_top_hits

    pcs = pcs_alias or pcs
    t0 = time.perf_counter()
    out = Path(outdir)
    cfg = demo_config().replace(n_sites=sites)
    study = simulate_study(cfg)
    try:
        files = write_study(study, out / "data", prefix="demo", pooled=False, sites=True, vcf=False)
    except OSError as exc:
        raise click.ClickException(f"cannot write the simulated site files into {out / 'data'}: "
                                   f"{exc.strerror}; choose another --out folder") from None
    click.echo(f"simulated {study.n_samples} individuals x {study.n_variants} variants at {sites} sites, "
               f"{cfg.n_populations} populations mixed unevenly, {len(study.causal_index)} planted causal variants")
    data = [{"bfile": str(files[f"site{s + 1}"]["bed"].with_suffix("").resolve()),
             "pheno": str(files[f"site{s + 1}"]["pheno"].resolve()),
             "covar": str(files[f"site{s + 1}"]["covar"].resolve())} for s in range(sites)]
    runs = _runs(pcs)
    # a two-site demo: every site consents explicitly (policy min_sites, default 3; docs/threat_model.md)
    policy = {"min_sites": min(sites, 3)}
    results = []
    if inproc:
        from cipherome.genomics.gwas.job import run_gwas
        from cipherome.genomics.io.site_files import site_from_config
        from cipherome.mpc.local import run_local
        from cipherome.mpc.study import Site

        for _, _, params in runs:
            site_objs = [site_from_config(Site(f"p{s}", data[s], dict(policy)), params) for s in range(sites)]
            run = run_local(lambda ctx: run_gwas(ctx, params, site_objs[ctx.index]), sites, frac=params.frac)
            results.append((run.results[0], run.reports))
        how = "threads (in-process)"
    else:
        from cipherome.mpc.client import ClientError
        from cipherome.mpc.launcher import LocalCluster

        click.echo("starting daemons (mutual TLS on 127.0.0.1) ...")
        try:
            with LocalCluster(sites, workdir=out / "cluster", data=data, policy=policy,
                              log_level="WARNING") as cluster:
                click.echo(f"  {sites} sites + dealer healthy after {time.perf_counter() - t0:.1f} s; "
                           f"{len(runs)} jobs submitted at once (the daemons run them concurrently)")
                # concurrent jobs fill the cores while each one waits on its rounds
                t1 = time.perf_counter()
                job_ids = [cluster.client.submit("gwas", params.to_dict()) for _, _, params in runs]
                for (pheno, _, params), job_id in zip(runs, job_ids):
                    res = cluster.client.result(job_id)
                    click.echo(f"  secure GWAS of {pheno} ({'PCA ' + str(params.pca) + ', ' if params.pca else ''}"
                               f"{res.results[0]['glm']}): done {time.perf_counter() - t1:.1f} s after submission")
                    results.append((res.results[0], res.reports))
        except (ClientError, RuntimeError, OSError) as exc:
            why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise click.ClickException(
                f"the secure GWAS failed: {why}\nNo results were written. Kept for inspection: the simulated site "
                f"files in {out / 'data'} and the daemons' keys, configs and logs in {out / 'cluster'} "
                "(logs/*.out, logs/*.log).") from None
        how = "gRPC daemons with mutual TLS"

    truth = set(map(str, np.asarray(study.variant_id)[study.causal_index]))
    p_nopca = result_table(results[0][0])[0].stats["P"]
    written = []
    try:
        for (pheno, prefix, _), (result, reports) in zip(runs, results):
            before = p_nopca if (pheno == "quant_trait" and prefix == "demo") else None
            paths = write_gwas_outputs(out / prefix, pheno, result, reports, highlight_ids=truth, p_before=before)
            written += [str(p) for p in paths.values()]
    except OSError as exc:
        raise click.ClickException(f"cannot write the results into {out}: {exc.strerror}; written before the "
                                   f"error: {', '.join(written) or 'none'}") from None
    lam0 = lambda_gc(p=p_nopca)
    table, _ = result_table(results[1][0])
    click.echo(f"\nsecure GWAS ({how}): {len(table)} variants passed QC of {results[1][0]['n_variants']}")
    click.echo(f"quant_trait lambda_GC: {lam0:.3f} without PCs, {lambda_gc(p=table.stats['P']):.3f} with "
               f"{pcs} secure PCs; top hits with PCs (* = planted causal variant):")
    print_top_hits(table, 10, truth)
    btable, _ = result_table(results[2][0])
    click.echo(f"\ndisease (logistic, {pcs} PCs), lambda_GC {lambda_gc(p=btable.stats['P']):.3f}; top hits:")
    print_top_hits(btable, 5, truth)
    sent = {p: r["bytes_sent"] / 1e6 for p, r in results[1][1].items()}
    click.echo("\nMB sent per party (quant_trait with PCA): " + ", ".join(f"{p} {v:.1f}" for p, v in sent.items()))
    click.echo(f"total {time.perf_counter() - t0:.1f} s; wrote {len(written)} files to {out}/ "
               "(demo.PHENO.glm.*, .qc.json, .manhattan.png, .qq.png, .run.json, .eigenval; demo.nopca.* without PCs)")
