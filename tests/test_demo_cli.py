"""The README's first command, run as a user runs it: the installed ``cipherome`` executable in a fresh folder.

``cipherome demo`` simulates three sites, starts real party daemons (mutual TLS on
127.0.0.1) and runs the secure GWAS; these tests start it as a subprocess from a
new temporary working directory, with the default ``--out`` and with a relative
one, and check the files a user keeps: PLINK 2 tables, plots, eigenvalues and the
run report. A failed run must say truthfully what it left behind.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

GLM_LINEAR = "#CHROM POS ID REF ALT A1 TEST OBS_CT BETA SE T_STAT P ERRCODE".split()
GLM_LOGISTIC = "#CHROM POS ID REF ALT A1 FIRTH? TEST OBS_CT OR LOG(OR)_SE Z_STAT P ERRCODE".split()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cipherome_exe() -> str:
    """The ``cipherome`` console script of the interpreter running the tests (the venv's bin), else PATH's."""
    here = Path(sys.executable).parent / "cipherome"
    exe = str(here) if here.exists() else shutil.which("cipherome")
    assert exe, "the cipherome executable is not installed (pip install -e .)"
    return exe


def run_cli(args: list[str], cwd: Path, timeout: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, as a user has it
    t0 = time.perf_counter()
    r = subprocess.run([cipherome_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return r, time.perf_counter() - t0


def check_outputs(out: Path) -> None:
    for prefix, pheno, suffix, header in (("demo.nopca", "quant_trait", "glm.linear", GLM_LINEAR),
                                          ("demo", "quant_trait", "glm.linear", GLM_LINEAR),
                                          ("demo", "disease", "glm.logistic.hybrid", GLM_LOGISTIC)):
        base = out / f"{prefix}.{pheno}"
        lines = Path(f"{base}.{suffix}").read_text().splitlines()
        assert lines[0].split("\t") == header
        assert len(lines) > 1000  # thousands of variants pass QC
        assert all(len(r.split("\t")) == len(header) for r in lines[1:])
        for plot in ("manhattan", "qq"):
            assert Path(f"{base}.{plot}.png").read_bytes()[:8] == PNG_MAGIC
        run = json.loads(Path(f"{base}.run.json").read_text())
        assert set(run["parties"]) == {"p0", "p1", "p2", "dealer"}
        assert all(p["bytes_sent"] > 0 for p in run["parties"].values())
        assert all(run["parties"][s]["stages"] and run["parties"][s]["ledger"] for s in ("p0", "p1", "p2"))
        qc = json.loads(Path(f"{base}.qc.json").read_text())
        assert qc["passed"] == len(lines) - 1
        if prefix == "demo":  # with secure PCs: one eigenvalue file per trait, never overwritten
            assert len(Path(f"{base}.eigenval").read_text().split()) == 2
    assert not (out / "demo.eigenval").exists()


def test_demo_default_from_fresh_folder(tmp_path):
    r, secs = run_cli(["demo"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    check_outputs(tmp_path / "cipherome-demo")
    assert "*" in r.stdout  # top hits printed beside the planted truth
    cfg = (tmp_path / "cipherome-demo" / "cluster" / "p0.toml").read_text()
    assert "cluster/keys" not in cfg or str(tmp_path) in cfg  # the default --out is relative: absolute paths
    print(f"cipherome demo from a fresh folder: {secs:.1f} s\n{r.stdout}")


@pytest.mark.slow
@pytest.mark.long_e2e  # 71 s on a Zen 1 host; the default run's demo test covers a relative default --out
def test_demo_relative_out(tmp_path):
    r, _ = run_cli(["demo", "--out", "rel/dir"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    check_outputs(tmp_path / "rel" / "dir")
    cfg = (tmp_path / "rel" / "dir" / "cluster" / "p0.toml").read_text()
    assert "cluster/keys" not in cfg or str(tmp_path) in cfg  # the daemons got absolute paths


def test_demo_failure_says_what_was_written(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cluster").write_text("not a folder")  # the daemons' folder cannot be made
    r, _ = run_cli(["demo", "--out", "out"], tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "No results were written" in r.stderr and "out/data" in r.stderr
    assert not list((tmp_path / "out").glob("demo.*"))
    assert list((tmp_path / "out" / "data").glob("demo.site1.*"))  # what it says it kept
