"""Engine benchmarks (in-process transport, all parties and the dealer share this machine).

Each MPC benchmark times the whole job (thread start, seed set-up, input sharing
and the protocol) and attaches bytes sent per compute party and rounds as
``extra_info``; plaintext numpy baselines for the same sizes sit beside them.
Targets (issue 2, 2-core machine): mul of 10^6 fixed-point values < 0.15 s,
1000x1000 matrix product < 2.5 s, PRG >= 500 MB/s.
"""
import numpy as np
import pytest

from cipherome import protocols as P
from cipherome.mpc.kernels import ring_matmul
from cipherome.mpc.local import run_local
from cipherome.mpc.prg import PRG, new_seed


def _mpc(benchmark, op, shape, n=3):
    rng = np.random.default_rng(0)
    xv, yv = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    timings = {}

    def job(ctx):
        x = ctx.input("p0", xv if ctx.me == "p0" else None, shape=shape, frac=ctx.frac)
        y = ctx.input("p1", yv if ctx.me == "p1" else None, shape=shape, frac=ctx.frac)
        st, r0 = ctx.transport.stats, ctx.rounds
        b0 = st.bytes_sent
        z = op(x, y)
        timings[ctx.me] = (st.bytes_sent - b0, ctx.rounds - r0)
        return z.data

    runs = []
    benchmark.pedantic(lambda: runs.append(run_local(job, n)), rounds=5, warmup_rounds=1, iterations=1)
    sent = np.mean([timings[p][0] for p in timings if p != "dealer"])
    benchmark.extra_info.update(
        parties=n,
        mb_sent_per_party=sent / 1e6,
        dealer_mb_sent=runs[-1].reports["dealer"]["bytes_sent"] / 1e6,
        rounds=max(t[1] for t in timings.values()),
    )
    return runs[-1]


@pytest.mark.benchmark(group="mul 1e6")
def test_mpc_mul_1e6(benchmark):
    _mpc(benchmark, P.mul, (10**6,))


@pytest.mark.benchmark(group="mul 1e6")
def test_numpy_mul_1e6(benchmark):
    x, y = np.random.rand(10**6), np.random.rand(10**6)
    benchmark(np.multiply, x, y)


@pytest.mark.benchmark(group="matmul 1000")
def test_mpc_matmul_1000(benchmark):
    _mpc(benchmark, P.matmul, (1000, 1000))


@pytest.mark.benchmark(group="matmul 1000")
def test_numba_ring_matmul_1000(benchmark):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**64, (1000, 1000), dtype=np.uint64)
    b = rng.integers(0, 2**64, (1000, 1000), dtype=np.uint64)
    ring_matmul(a[:2, :2], b[:2, :2])
    benchmark.pedantic(ring_matmul, args=(a, b), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="matmul 1000")
def test_numpy_uint64_matmul_1000(benchmark):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**64, (1000, 1000), dtype=np.uint64)
    b = rng.integers(0, 2**64, (1000, 1000), dtype=np.uint64)
    benchmark.pedantic(np.matmul, args=(a, b), rounds=3)


@pytest.mark.benchmark(group="matmul 1000")
def test_numpy_float64_blas_matmul_1000(benchmark):
    a, b = np.random.rand(1000, 1000), np.random.rand(1000, 1000)
    benchmark(np.matmul, a, b)


@pytest.mark.benchmark(group="prg")
def test_prg_10m_ring_elements(benchmark):
    prg = PRG(new_seed())
    prg.ring(10**7)
    benchmark.pedantic(prg.ring, args=(10**7,), rounds=10, warmup_rounds=1)
    benchmark.extra_info["mb_per_s"] = 80.0 / benchmark.stats.stats.mean
