"""``cipherome simulate``: example per-site data and ready-to-edit config files for a first multi-site study.

It runs the demo's simulator (population structure, planted causal variants,
1% missing calls) and writes, in folder OUT, one folder per party as a site's
IT would lay it out, plus the study file that the study owner sends to every site::

    OUT/study.toml                 the study: parties, addresses, fingerprints (to fill in), submitters
    OUT/site1/site1.toml           site1's config: [party] (key, listen, studies), [data], [policy]
    OUT/site1/data/site1.bed .bim .fam .pheno .covar .vcf.gz .vcf.gz.tbi .ped
    OUT/dealer/dealer.toml         the dealer's config (no [data]: it never sees data)

Paths inside the TOML files are relative to the file itself. The fingerprints
are placeholders until the keys exist: README "Your first real study" walks through it.
"""
from __future__ import annotations

from pathlib import Path

import click

__all__ = ["simulate", "write_kit", "FINGERPRINT_PLACEHOLDER"]

#: text standing for a party's fingerprint in the written study file (``{name}``: the party)
FINGERPRINT_PLACEHOLDER = "PASTE-FINGERPRINT-OF-{name}"

_SITE = '''# Site config of {name}. `cipherome party serve --config {name}.toml` reads it once, at start:
# restart the daemon after editing it. Relative paths are relative to this file.
[party]
name = "{name}"                      # as in the study file's [[party]] list
key = "keys/{name}.key"              # made by `cipherome keys init --party {name} --out {rel}/keys`
cert = "keys/{name}.crt"
listen = "{host}:{port}"          # use "0.0.0.0:{port}" to accept peers on other machines
studies = ["../study.toml"]          # the study files this site approved
log = "{name}.log"                   # job lifecycle and refusals; never data, shares or keys

[data]                               # this site's own files: read here, never sent anywhere
bfile = "data/{name}"                # PLINK .bed/.bim/.fam prefix for the GWAS (or: vcf = "...")
pheno = "data/{name}.pheno"          # #FID IID quant_trait disease
covar = "data/{name}.covar"          # #FID IID age sex cov1 cov2
vcf = "data/{name}.vcf.gz"           # variant filtering reads the VCF ...
ped = "data/{name}.ped"              # ... and the PED file (affected = the disease trait)

[policy]                             # what this site allows (README "Site policy")
workloads = ["gwas", "filter"]       # job families this daemon runs (add "bench" for benchmarks)
min_cell_size = 5                    # GWAS: withhold variants with minor allele count or OBS_CT < 5;
                                     # filter: counts below 5 are not released
pca_own_scores = true                # GWAS --pca: this site receives its own samples' PC scores
max_concurrent_jobs = 4
'''

_DEALER = '''# Config of the dealer: the helper party that makes correlated randomness (Beaver triples,
# truncation pairs). It never sees data or results and needs no [data]. Run it on a machine
# that no site controls (e.g. the coordinating centre's). Read once at start; restart after edits.
[party]
name = "dealer"
key = "keys/dealer.key"              # made by `cipherome keys init --party dealer --out {rel}/keys`
cert = "keys/dealer.crt"
listen = "{host}:{port}"
studies = ["../study.toml"]
log = "dealer.log"

[policy]
workloads = ["gwas", "filter"]
'''

_STUDY_HEAD = '''# The study file: identical at every site (compare its digest), written by the study owner.
# Each fingerprint is the one `cipherome keys init` printed for that party
# (or `cipherome keys fingerprint PARTY.crt`). Paths are relative to this file.
[study]
id = "{study_id}"
round_timeout = 300.0                # seconds a party waits for one message (the first job after a
                                     # fresh install compiles kernels: allow for it; 60 is plenty later)
workloads = ["gwas", "filter"]       # job families this study covers

'''

_PARTY = '''[[party]]                            # {what}
name = "{name}"
role = "{role}"
address = "{host}:{port}"
fingerprint = "{fp}"
cert = "{cert}"

'''

_SUBMITTER = '''[[submitter]]                        # who may submit jobs (its certificate)
name = "{name}"
fingerprint = "{fp}"
cert = "{name}/{name}.crt"
'''


def write_kit(out: Path, n_sites: int, samples: int, variants: int, seed: int, host: str, first_port: int,
              submitter: str = "alice", study_id: str = "first-study") -> dict:
    """Simulate a study and write every party's folder and the study file; returns {party: config path}."""
    from cipherome.genomics.simulate import demo_config, simulate_study, write_site_files

    cfg = demo_config().replace(n_sites=n_sites, n_samples=samples, n_variants=variants, seed=seed)
    study = simulate_study(cfg)
    sites = [f"site{s + 1}" for s in range(n_sites)]
    ports = {name: first_port + i for i, name in enumerate(sites + ["dealer"])}
    configs = {}
    text = _STUDY_HEAD.format(study_id=study_id)
    for s, name in enumerate(sites):
        write_site_files(study, s, out / name / "data" / name, vcf=True)
        configs[name] = out / name / f"{name}.toml"
        configs[name].write_text(_SITE.format(name=name, rel=f"{out}/{name}", host=host, port=ports[name]))
        text += _PARTY.format(what="the first site is the lead" if s == 0 else "a site", name=name, role="site",
                              host=host, port=ports[name], fp=FINGERPRINT_PLACEHOLDER.format(name=name),
                              cert=f"{name}/keys/{name}.crt")
    (out / "dealer").mkdir(parents=True, exist_ok=True)
    configs["dealer"] = out / "dealer" / "dealer.toml"
    configs["dealer"].write_text(_DEALER.format(rel=f"{out}/dealer", host=host, port=ports["dealer"]))
    text += _PARTY.format(what="exactly one dealer", name="dealer", role="dealer", host=host, port=ports["dealer"],
                          fp=FINGERPRINT_PLACEHOLDER.format(name="dealer"), cert="dealer/keys/dealer.crt")
    text += _SUBMITTER.format(name=submitter, fp=FINGERPRINT_PLACEHOLDER.format(name=submitter))
    (out / "study.toml").write_text(text)
    return {"configs": configs, "study": study}


@click.command("simulate")
@click.option("--sites", default=3, show_default=True, type=click.IntRange(min=2), help="Number of sites.")
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder to create (a folder, not a prefix): one sub-folder per party and study.toml.")
@click.option("--samples", default=1500, show_default=True, type=click.IntRange(min=50),
              help="Individuals in the whole study (split unevenly over the sites).")
@click.option("--variants", default=3000, show_default=True, type=click.IntRange(min=50), help="Variants.")
@click.option("--seed", default=2026, show_default=True, help="Random seed (the same seed gives the same files).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address written into the configs (every party on this machine by default).")
@click.option("--first-port", default=7301, show_default=True, type=click.IntRange(1, 65535 - 64),
              help="Port of site1; the next sites and the dealer take the following ports.")
def simulate(sites, outdir, samples, variants, seed, host, first_port) -> None:
    """Write example per-site data (PLINK, VCF, phenotypes, covariates, PED) and ready-to-edit TOML files."""
    out = Path(outdir)
    if (out / "study.toml").exists():
        raise click.ClickException(f"{out}/study.toml exists; choose another --out folder or remove it")
    kit = write_kit(out, sites, samples, variants, seed, host, first_port)
    st = kit["study"]
    click.echo(f"simulated {st.n_samples} individuals x {st.n_variants} variants at {sites} sites "
               f"({len(st.causal_index)} planted causal variants)")
    for name, path in kit["configs"].items():
        click.echo(f"  {name:<8} {path}")
    click.echo(f"  study    {out / 'study.toml'}  (fill in the fingerprints after `cipherome keys init`)")
