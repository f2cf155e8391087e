"""The README's "Your first real study", run command by command as a new user would.

The commands are read from the README itself (its ``bash`` blocks in that
section), so the walkthrough and this test cannot drift apart: ``cipherome
simulate``, ``cipherome keys init`` per party, the study file edited as the
README says (each fingerprint placeholder replaced by the printed fingerprint),
three sites and the dealer started as separate ``cipherome party serve``
processes, ``party status``, then ``cipherome gwas`` and ``cipherome filter``.
Their outputs must match an in-process run of the same jobs on the same site
configs. The only change to the README's commands: ``--first-port`` so that the
daemons get free ports.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_demo_cli import cipherome_exe

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough_commands() -> list[list[str]]:
    """Every ``cipherome ...`` command of the README's walkthrough, in order (continuation lines joined)."""
    text = README.read_text()
    start = text.index("## Your first real study")
    section = text[start:text.index("\n## ", start + 5)]
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("cipherome "):
                cmds.append(shlex.split(line.strip()))
    return cmds


def free_port_run(n: int) -> int:
    """A first port such that it and the next n - 1 ports are free on 127.0.0.1."""
    for base in np.random.default_rng().integers(20000, 60000, 200):
        socks = []
        try:
            for p in range(int(base), int(base) + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return int(base)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def read_glm(path: Path) -> dict:
    lines = [ln.split("\t") for ln in path.read_text().splitlines()]
    cols = {name: [r[i] for r in lines[1:]] for i, name in enumerate(lines[0])}
    return cols


@pytest.mark.slow
@pytest.mark.long_e2e  # 41 s on a Zen 1 host; .ci/run runs it after the default run
def test_readme_walkthrough(tmp_path):
    cmds = walkthrough_commands()
    verbs = [" ".join(c[1:3]) for c in cmds]
    assert verbs[0].startswith("simulate") and verbs.count("party serve") == 4
    assert "gwas" in [c[1] for c in cmds] and "filter" in [c[1] for c in cmds]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    exe = cipherome_exe()
    fingerprints: dict[str, str] = {}
    daemons: list[subprocess.Popen] = []
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    def run(cmd, timeout=300):
        t0 = time.perf_counter()
        r = subprocess.run([exe, *cmd[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        times[" ".join(cmd[1:3])] = times.get(" ".join(cmd[1:3]), 0) + time.perf_counter() - t0
        assert r.returncode == 0, f"{shlex.join(cmd)}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stderr
        return r

    try:
        for cmd in cmds:
            if cmd[1] == "simulate":
                cmd = [*cmd, "--first-port", str(free_port_run(4))]
            if cmd[1:3] == ["party", "serve"]:
                if not daemons:  # step 3 of the README: the study owner pastes the fingerprints
                    study = tmp_path / "study1" / "study.toml"
                    text = study.read_text()
                    for name, fp in fingerprints.items():
                        text = text.replace(f"PASTE-FINGERPRINT-OF-{name}", fp)
                    assert "PASTE-FINGERPRINT" not in text
                    study.write_text(text)
                log = open(tmp_path / f"daemon{len(daemons)}.out", "wb")
                daemons.append(subprocess.Popen([exe, *cmd[1:]], cwd=tmp_path, env=env, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
                log.close()
                continue
            if cmd[1:3] == ["party", "status"]:  # the daemons may still be starting: retry as a user would
                deadline = time.monotonic() + 120
                while True:
                    r = subprocess.run([exe, *cmd[1:]], cwd=tmp_path, env=env, capture_output=True, text=True)
                    if r.returncode == 0:
                        break
                    assert all(d.poll() is None for d in daemons), r.stderr
                    assert time.monotonic() < deadline, r.stderr
                    time.sleep(1)
                assert "studies: first-study" in r.stdout
                # every daemon answers before the jobs go out
                for s in ("site2", "site3"):
                    run(["cipherome", "party", "status", "--config", f"study1/{s}/{s}.toml"])
                times["daemons healthy"] = time.perf_counter() - t_all
                continue
            r = run(cmd)
            if cmd[1:3] == ["keys", "init"]:
                fingerprints[cmd[cmd.index("--party") + 1]] = re.search(r"fingerprint: (\w+)", r.stdout).group(1)
            if cmd[1] == "gwas":
                assert re.search(r"QC: \d+ of 1000 common variants tested", r.stderr), r.stderr
                assert "withheld by the sites' policy (min_cell_size = 5" in r.stderr
        names = run(["cipherome", "job", "list-names", "--config", "study1/site1/site1.toml"]).stdout
        assert re.search(r"^gwas +runs", names, re.M) and re.search(r"^bench.mul +refused", names, re.M)
    finally:
        for d in daemons:
            d.terminate()
        for d in daemons:
            try:
                d.wait(10)
            except subprocess.TimeoutExpired:
                d.kill()
    print("walkthrough seconds:", {k: round(v, 1) for k, v in times.items()},
          "total", round(time.perf_counter() - t_all, 1))
    _compare_with_inprocess(tmp_path, cmds)


def _compare_with_inprocess(d: Path, cmds: list[list[str]]) -> None:
    """The same jobs, in-process on the same site configs: the same released results."""
    from cipherome.cli.filter import filter_cmd, filter_params_from_cli
    from cipherome.cli.gwas import gwas, gwas_params_from_cli
    from cipherome.genomics.filtering.output import write_filter_outputs
    from cipherome.genomics.gwas.output import result_table
    from cipherome.mpc.jobs import get_job
    from cipherome.mpc.local import run_local
    from cipherome.mpc.study import load_site_config

    configs = [load_site_config(d / f"study1/site{i}/site{i}.toml").site for i in (1, 2, 3)]
    gcmd = next(c for c in cmds if c[1] == "gwas")
    gp = gwas.make_context("gwas", [*gcmd[2:]], resilient_parsing=True).params
    params = gwas_params_from_cli(gp["pheno_name"], gp["covar_names"], gp["mind"], gp["geno"], gp["maf"],
                                  gp["hwe"], gp["glm"], gp["ci"], gp["pca"], gp["block"])
    run = run_local(lambda ctx, i: get_job("gwas")(ctx, params.to_dict(), configs[i]), 3,
                    args=lambda i: {"i": i}, frac=params.frac)
    table, suffix = result_table(run.results[0])
    got = read_glm(d / f"{gp['prefix']}.{params.pheno_name}.{suffix}")
    assert list(got["ID"]) == [str(v) for v in table.vid]
    assert list(map(int, got["OBS_CT"])) == [int(v) for v in table.obs_ct]
    assert list(got["A1"]) == [str(v) for v in table.a1]
    p_daemon = np.array(got["P"], dtype=float)
    # two secure runs differ by their masks and their PCA's secret start: PCs agree to the Krylov stop
    # (sine of the subspace angle <= 0.02), so PC-adjusted p-values to issue 15's 0.05 (0.019 seen under load)
    np.testing.assert_allclose(-np.log10(p_daemon), -np.log10(table.stats["P"]), atol=0.05)
    np.testing.assert_allclose(np.array(got["BETA"], dtype=float), table.stats["BETA"], atol=2e-3, rtol=1e-3)
    eig = np.array((d / f"{gp['prefix']}.{params.pheno_name}.eigenval").read_text().split(), dtype=float)
    np.testing.assert_allclose(eig, run.results[0]["pca"]["eigenvalues"], rtol=1e-3)

    fcmd = next(c for c in cmds if c[1] == "filter")
    fp = filter_cmd.make_context("filter", [*fcmd[2:]], resilient_parsing=True).params
    fparams = filter_params_from_cli(fp["model"], fp["min_affected"], fp["max_unaffected"], fp["max_cohort_af"],
                                     fp["top"], fp["pass_only"], fp["min_gq"], fp["min_dp"], fp["max_pop_af"],
                                     fp["af_field"], fp["consequences"], fp["genes"], fp["table_size"],
                                     fp["lanes"], fp["max_variants"], fp["gene_buckets"])
    frun = run_local(lambda ctx, i: get_job("filter")(ctx, fparams.to_dict(), configs[i]), 3,
                     args=lambda i: {"i": i})
    paths = write_filter_outputs(d / "inproc", frun.results[0], frun.reports)
    daemon_tsv = (d / f"{fp['prefix']}.filter.tsv").read_text()
    assert paths["tsv"].read_text() == daemon_tsv
    assert len(daemon_tsv.splitlines()) > 1  # some variants were released
