"""Site-local statistics at PLINK speed: 10,000 samples x 100,000 variants, .bed and BCF, beside plink2.

Run: ``python -m pytest bench/test_bench_localstats.py --benchmark-only -p no:cacheprovider -o addopts=''``
(add ``-s`` to see the summary table). The data set is generated once, deterministically,
under ``$CIPHEROME_BENCH_DATA`` (default: the system temp folder), never in the repository:

* ``bench.bed/.bim/.fam``: 10,000 samples x 100,000 SNPs on chromosomes 1-22, ALT
  frequencies uniform in [0.01, 0.5], genotypes in Hardy-Weinberg proportions, 1%
  missing calls, written straight from numpy (packed codes);
* ``bench.pgen/.pvar/.psam``: the same data made by ``plink2 --bfile bench --make-pgen``
  (hard calls: 55% plain 2-bit records, 37% 1-bit + difflist, 8% difflist-only), decoded
  by ``genomics/io/pgen_records.py`` straight to the form a block is asked for (int8 calls
  for ``test_read``, packed codes for the statistics): the .pgen target is "at least as
  fast as the .bed";
* ``bench2k_b8.bgen/.sample``: the first 2,000 variants exported by ``plink2 --export
  bgen-1.2 bits=8`` (zlib), read through cbgen as dosages: the stated BGEN figure;
* ``bench10k.bcf``: the first 10,000 variants exported by ``plink2 --export bcf``. It is
  10x smaller than the .bed because reading BCF through pysam costs about 0.3 ms per
  10,000-sample record (htslib's text formatting of the record), i.e. about 30 s for the
  full file per round; the per-variant rate is what the comparison needs.

Timed: reading + all local statistics (case/control genotype counts, and the regression
sums with 12 covariates incl. intercept and the per-variant missing-sample corrections)
for the .bed and the BCF; counts only for the .bed (the work ``cipherome local-stats``
does); and ``plink2 --freq --missing --hardy --threads 2`` on the same .bed (subprocess).
Peak memory is the peak RSS (VmHWM) of a child process running the block loop, next to
that of a child that only imports the modules; plink2's is measured by ``/usr/bin/time``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

N_SAMPLES = 10_000
N_VARIANTS = 100_000
N_BCF_VARIANTS = 10_000
N_BGEN_VARIANTS = 2_000
N_COVARIATES = 12
SEED = 20240611
DATA_VERSION = "v1"

PLINK2 = shutil.which("plink2")


def data_dir() -> Path:
    root = Path(os.environ.get("CIPHEROME_BENCH_DATA", Path(tempfile.gettempdir()) / "cipherome-bench"))
    return root / f"localstats-{DATA_VERSION}"


def _generate_bed(prefix: Path) -> None:
    from cipherome.genomics.io.packed import pack_dosage

    rng = np.random.default_rng(SEED)
    tmp = prefix.with_name(prefix.name + ".partial")
    with open(tmp.with_suffix(".bed"), "wb") as fh:
        fh.write(b"\x6c\x1b\x01")
        for s in range(0, N_VARIANTS, 5000):
            mb = min(5000, N_VARIANTS - s)
            p = rng.uniform(0.01, 0.5, size=(mb, 1))
            u = rng.random((mb, N_SAMPLES))
            g = (u < p * p).astype(np.int8) + (u < 1 - (1 - p) ** 2).astype(np.int8)
            g[rng.random((mb, N_SAMPLES)) < 0.01] = -1
            fh.write(pack_dosage(g).tobytes())
    chrom = 1 + np.arange(N_VARIANTS) * 22 // N_VARIANTS
    bases = np.array(list("ACGT"))
    ref = bases[rng.integers(0, 4, N_VARIANTS)]
    alt = bases[(np.searchsorted(bases, ref) + rng.integers(1, 4, N_VARIANTS)) % 4]
    pos = 10_000 + np.arange(N_VARIANTS) % (N_VARIANTS // 22 + 1) * 100
    tmp.with_suffix(".bim").write_text("".join(
        f"{c}\trs{i}\t0\t{p}\t{a}\t{r}\n" for i, (c, p, r, a) in enumerate(zip(chrom, pos, ref, alt))))
    tmp.with_suffix(".fam").write_text("".join(
        f"F{i}\tI{i}\t0\t0\t{1 + i % 2}\t-9\n" for i in range(N_SAMPLES)))
    for ext in ("bim", "fam", "bed"):  # .bed last: its presence marks a complete set
        os.replace(tmp.with_suffix("." + ext), prefix.with_suffix("." + ext))


def ensure_data() -> dict[str, Path]:
    """Generate (once) and return the benchmark files."""
    d = data_dir()
    d.mkdir(parents=True, exist_ok=True)
    prefix = d / "bench"
    if not prefix.with_suffix(".bed").exists():
        _generate_bed(prefix)
    if PLINK2 and not prefix.with_suffix(".pgen").exists():
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            subprocess.run([PLINK2, "--bfile", str(prefix), "--threads", "2", "--make-pgen", "--out", f"{tmp}/p"],
                           check=True, capture_output=True)
            for ext in ("pvar", "psam", "pgen"):  # .pgen last: its presence marks a complete set
                os.replace(f"{tmp}/p.{ext}", prefix.with_suffix("." + ext))
    bgen = d / "bench2k_b8.bgen"
    if PLINK2 and not bgen.exists():
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            Path(tmp, "first.snplist").write_text("".join(f"rs{i}\n" for i in range(N_BGEN_VARIANTS)))
            subprocess.run([PLINK2, "--bfile", str(prefix), "--threads", "2", "--extract", f"{tmp}/first.snplist",
                            "--export", "bgen-1.2", "bits=8", "--out", f"{tmp}/b"], check=True, capture_output=True)
            os.replace(f"{tmp}/b.sample", bgen.with_suffix(".sample"))
            os.replace(f"{tmp}/b.bgen", bgen)
    bcf = d / "bench10k.bcf"
    if PLINK2 and not bcf.exists():
        with tempfile.TemporaryDirectory(dir=d) as tmp:
            Path(tmp, "first.snplist").write_text("".join(f"rs{i}\n" for i in range(N_BCF_VARIANTS)))
            subprocess.run([PLINK2, "--bfile", str(prefix), "--threads", "2", "--extract", f"{tmp}/first.snplist",
                            "--export", "bcf", "--out", f"{tmp}/b"], check=True, capture_output=True)
            os.replace(f"{tmp}/b.bcf", bcf)
    covar = d / "covar.npz"
    if not covar.exists():
        rng = np.random.default_rng(SEED + 1)
        X = np.column_stack([np.ones(N_SAMPLES), rng.normal(size=(N_SAMPLES, N_COVARIATES - 1))])
        y = rng.normal(size=N_SAMPLES)
        case = rng.random(N_SAMPLES) < 0.3
        mask = rng.random(N_SAMPLES) > 0.01  # 1% without phenotype
        np.savez(covar.with_suffix(".tmp.npz"), X=X, y=y, case=case, mask=mask)
        os.replace(covar.with_suffix(".tmp.npz"), covar)
    return {"bfile": prefix, "bcf": bcf, "bgen": bgen, "covar": covar}


def site_statistics(reader, covar: Path, regression: bool = True) -> int:
    """The block loop a site runs: genotype counts split by status, plus the regression sums."""
    from cipherome.genomics.local.stats import SiteDesign, case_control_counts, variant_sums

    z = np.load(covar)
    mask, case = z["mask"], z["case"]
    design = SiteDesign(z["X"], z["y"], mask) if regression else None
    m = 0
    for block in reader.blocks():
        cc = case_control_counts(block, case, mask)
        if regression:
            variant_sums(block, design, counts=cc.sum(axis=1))
        m += len(block)
    return m


def _child(kind: str, files: dict, block_size: int | None = None) -> dict:
    """Run one loop in a fresh interpreter; return its wall time and peak RSS (MB)."""
    code = (
        "import sys, time, json, resource\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_bench_localstats import site_statistics\n"
        "from cipherome.genomics.io.bed import BedReader\n"
        "from cipherome.genomics.io.vcf import VcfReader\n"
        "from cipherome.genomics.io.pgen import PgenReader\n"
        f"kind = {kind!r}\n"
        "t = time.perf_counter(); m = 0\n"
        f"if kind == 'bed': m = site_statistics(BedReader({str(files['bfile'])!r}, block_size={block_size!r}),"
        f" {str(files['covar'])!r})\n"
        f"if kind == 'pgen': m = site_statistics(PgenReader({str(files['bfile'])!r}, block_size={block_size!r}),"
        f" {str(files['covar'])!r})\n"
        f"if kind == 'bcf': m = site_statistics(VcfReader({str(files['bcf'])!r}), {str(files['covar'])!r})\n"
        "dt = time.perf_counter() - t\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0].split()[1]\n"
        "print(json.dumps({'variants': m, 'seconds': dt, 'peak_mb': int(hwm) / 1024}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files():
    return ensure_data()


def _report(benchmark, **info):
    benchmark.extra_info.update(info)
    print("\n" + "  ".join(f"{k}={v}" for k, v in info.items()))


def _reader(kind: str):
    from cipherome.genomics.io.bed import BedReader
    from cipherome.genomics.io.pgen import PgenReader

    return {"bed": BedReader, "pgen": PgenReader}[kind]


def _loop(benchmark, files, kind: str, work) -> None:
    """Time ``work(reader)`` over the whole .bed or .pgen (same data), after a warm-up on small blocks."""
    if kind == "pgen" and PLINK2 is None:
        pytest.skip("plink2 not installed (it makes the .pgen)")
    cls = _reader(kind)
    work(cls(files["bfile"], block_size=64))  # JIT / cache warm-up
    m = benchmark.pedantic(lambda: work(cls(files["bfile"])), rounds=3, warmup_rounds=0, iterations=1)
    assert m == N_VARIANTS
    _report(benchmark, variants=N_VARIANTS, samples=N_SAMPLES, source=kind)


@pytest.mark.parametrize("kind", ["bed", "pgen"])
def test_all_local_stats(benchmark, files, kind):
    _loop(benchmark, files, kind, lambda r: site_statistics(r, files["covar"]))


@pytest.mark.parametrize("kind", ["bed", "pgen"])
def test_counts_only(benchmark, files, kind):
    _loop(benchmark, files, kind, lambda r: site_statistics(r, files["covar"], regression=False))


def read_all(reader) -> int:
    """Read every block and touch its int8 hard calls (the reading a site's statistics start from)."""
    m = 0
    for block in reader.blocks():
        m += block.dosage.shape[0]
    return m


@pytest.mark.parametrize("kind", ["bed", "pgen"])
def test_read(benchmark, files, kind):
    """Reading alone: every block's int8 hard calls (.bed: packed codes decoded; .pgen: records decoded to int8)."""
    _loop(benchmark, files, kind, read_all)


def dosage_statistics(reader, covar: Path) -> int:
    """The dosage block loop: dosage counts split by status and the regression sums on dosages."""
    from cipherome.genomics.local.stats import SiteDesign, dosage_sums, variant_sums

    z = np.load(covar)
    groups = np.where(z["mask"], z["case"].astype(np.int64), -1)
    design = SiteDesign(z["X"], z["y"], z["mask"])
    m = 0
    for block in reader.blocks():
        dosage_sums(block.float_dosage, groups, 2)
        variant_sums(block.float_dosage, design)
        m += len(block)
    return m


@pytest.mark.skipif(PLINK2 is None, reason="plink2 not installed")
def test_bgen8_dosage_local_stats(benchmark, files):
    """BGEN 8-bit dosages (10,000 samples x 2,000 variants): read through cbgen + all dosage statistics."""
    from cipherome.genomics.io.bgen import BgenReader

    bgen, sample = files["bgen"], files["bgen"].with_suffix(".sample")
    m = benchmark.pedantic(lambda: dosage_statistics(BgenReader(bgen, sample), files["covar"]),
                           rounds=2, warmup_rounds=0, iterations=1)
    assert m == N_BGEN_VARIANTS
    _report(benchmark, variants=N_BGEN_VARIANTS, samples=N_SAMPLES, note="50x fewer variants than the .bed")


@pytest.mark.skipif(PLINK2 is None, reason="plink2 not installed")
def test_bcf_all_local_stats(benchmark, files):
    from cipherome.genomics.io.vcf import VcfReader

    site_statistics(VcfReader(files["bcf"], block_size=64), files["covar"])
    m = benchmark.pedantic(lambda: site_statistics(VcfReader(files["bcf"]), files["covar"]),
                           rounds=2, warmup_rounds=0, iterations=1)
    assert m == N_BCF_VARIANTS
    _report(benchmark, variants=N_BCF_VARIANTS, samples=N_SAMPLES, note="10x fewer variants than the .bed")


@pytest.mark.skipif(PLINK2 is None, reason="plink2 not installed")
def test_plink2_freq_missing_hardy(benchmark, files, tmp_path):
    cmd = [PLINK2, "--bfile", str(files["bfile"]), "--freq", "--missing", "--hardy", "--threads", "2",
           "--out", str(tmp_path / "p")]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    benchmark.pedantic(lambda: subprocess.run(cmd, check=True, capture_output=True),
                       rounds=3, warmup_rounds=0, iterations=1)
    if Path("/usr/bin/time").exists():
        r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], check=True, capture_output=True, text=True)
        _report(benchmark, plink2_peak_mb=round(int(r.stderr.strip().splitlines()[-1]) / 1024, 1))


@pytest.mark.skipif(PLINK2 is None, reason="plink2 not installed")
def test_local_stats_cli(benchmark, files, tmp_path):
    """End to end ``cipherome local-stats --bfile`` (interpreter start-up and writing included)."""
    cmd = [sys.executable, "-m", "cipherome.cli.main", "local-stats", "--bfile", str(files["bfile"]),
           "--out", str(tmp_path / "c")]
    subprocess.run(cmd, check=True, capture_output=True)
    benchmark.pedantic(lambda: subprocess.run(cmd, check=True, capture_output=True),
                       rounds=3, warmup_rounds=0, iterations=1)


def test_peak_memory(benchmark, files):
    """Peak RSS of the block loop in a fresh process, against a process that only imports."""
    rows = {}

    def run():
        rows["imports"] = _child("none", files)
        rows["bed"] = _child("bed", files)
        rows["bed_blocks_of_500"] = _child("bed", files, block_size=500)
        if files["bcf"].exists():
            rows["bcf"] = _child("bcf", files)

    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    base = rows["imports"]["peak_mb"]
    info = {f"{k}_peak_mb": round(v["peak_mb"], 1) for k, v in rows.items()}
    info.update({f"{k}_seconds": round(v["seconds"], 3) for k, v in rows.items() if k != "imports"})
    _report(benchmark, **info)
    # bounded by the block (default about 8 MB of packed genotypes, decoded never; plus
    # per-site tables), not by the 250 MB file
    assert rows["bed"]["peak_mb"] - base < 200
    assert rows["bed_blocks_of_500"]["peak_mb"] <= rows["bed"]["peak_mb"] + 5


if __name__ == "__main__":  # pragma: no cover - quick manual run
    f = ensure_data()
    t = time.perf_counter()
    print(_child("bed", f), time.perf_counter() - t)
