"""A site's .bed changing under a job: reads fail the job with a clear error, never the process (no SIGBUS).

Each read runs in a forked child, so that a memory-mapped reader (which faults with
SIGBUS on a truncated file) fails this test instead of killing the test run.
"""
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.io.bed import CHANGED_KIND
from cipherome.genomics.io.site_files import load_genotypes
from cipherome.mpc.study import Site
from tests.site_study import small_study

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _child(prefix: str, change: str, q) -> None:
    try:
        samples, variants, read, _ = load_genotypes(Site("p", {"bfile": prefix}))
        mask = np.ones(len(samples), bool)
        first = read(np.arange(10), mask)
        bed = Path(prefix + ".bed")
        size = bed.stat().st_size
        if change == "truncate":
            os.truncate(bed, 3 + (size - 3) // 4)
        elif change == "rewrite":
            bed.write_bytes(bed.read_bytes()[:3] + bytes(size - 3))
        elif change == "replace":
            tmp = bed.with_name("new.bed")
            tmp.write_bytes(bed.read_bytes()[:3] + bytes(size - 3))
            os.replace(tmp, bed)
        again = read(np.arange(len(variants) - 10, len(variants)), mask)
        q.put(("ok", bool(np.array_equal(read(np.arange(10), mask), first)), again.shape))
    except InputError as exc:
        q.put(("InputError", exc.kind, str(exc)))


def _run(tmp_path, change):
    study, files, data = small_study(tmp_path / "d", n_variants=400, n_samples=120)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(data[0]["bfile"], change, q))
    p.start()
    p.join(60)
    assert p.exitcode == 0, f"the reader process died (exit code {p.exitcode}: -7 is SIGBUS)"
    return q.get(timeout=5)


@pytest.mark.parametrize("change", ["truncate", "rewrite"])
def test_changed_bed_fails_with_a_clear_error(tmp_path, change):
    got = _run(tmp_path, change)
    assert got[0] == "InputError" and got[1] == CHANGED_KIND, got
    assert "changed while a job read it" in got[2]


def test_bed_replaced_by_rename_is_read_consistently(tmp_path):
    got = _run(tmp_path, "replace")
    assert got[0] == "ok" and got[1] is True, got


def test_a_change_after_the_last_read_is_caught_by_the_job_check(tmp_path):
    """``SiteData.check_inputs`` (run by the GWAS before its last collective steps) sees an in-place change
    made after every read; a rename keeps the opened version and passes."""
    study, files, data = small_study(tmp_path / "d", n_variants=200, n_samples=60)
    samples, _, read, _ = load_genotypes(Site("p", {"bfile": data[0]["bfile"]}))
    read(np.arange(200), np.ones(len(samples), bool))
    read.check()  # unchanged: passes
    bed = Path(data[0]["bfile"] + ".bed")
    saved = bed.read_bytes()
    tmp = bed.with_name("new.bed")
    tmp.write_bytes(saved)
    os.replace(tmp, bed)
    read.check()  # replaced by rename: the opened version is still whole
    samples, _, read, _ = load_genotypes(Site("p", {"bfile": data[0]["bfile"]}))
    read(np.arange(200), np.ones(len(samples), bool))
    os.truncate(bed, len(saved) - 1)
    with pytest.raises(InputError) as err:
        read.check()
    assert err.value.kind == CHANGED_KIND
