"""The ``bench.*`` jobs' ``ok`` checks the opened result against plaintext: a wrong product must fail it."""
import numpy as np

from cipherome.mpc.local import run_local
from cipherome.protocols import arith
from cipherome.cli.bench_jobs import close_to, measure, random_inputs as _inputs


def _prepare(wrong: bool):
    def prepare(ctx, size):
        x, y, xv, yv = _inputs(ctx, (size,))
        zero = x * 0 if wrong else y  # a "mul" whose result is all zeros, or the real one
        return (lambda: arith.mul(x, zero)), (lambda z: close_to(ctx, z, xv * yv, 1e-4))

    return prepare


def test_bench_ok_is_true_for_the_right_product():
    run = run_local(lambda ctx: measure(ctx, _prepare(False), 50, 1), 3)
    assert all(r["ok"] is True for r in run.results)


def test_bench_ok_is_false_for_a_zero_product():
    run = run_local(lambda ctx: measure(ctx, _prepare(True), 50, 1), 3)
    assert all(r["ok"] is False for r in run.results)
    assert np.all([r["rounds"] >= 1 for r in run.results])
