"""One BLAS thread per party process: the plaintext linear algebra of a job is small, the cores are shared.

A party's heavy local work runs in numba kernels with their own thread pool; what goes
through BLAS/LAPACK (numpy, scipy) inside a job is small dense algebra on public or
opened values: Krylov Rayleigh-Ritz problems of a few hundred rows, k x k covariate
systems, batched q x q Newton steps. OpenBLAS splits even these across all cores and
its threads spin while they wait, so when the cores are shared -- with the numba pool,
with the other parties of a study on one machine (``LocalCluster``, ``cipherome demo``,
the tests) or with other jobs -- each call waits for threads that are not running.
Measured on a 2-core machine at load 8-9: ``scipy.linalg.eigh`` of a 192 x 192 pair
0.25 s with 2 BLAS threads against 0.014 s with one; the secure PCA stage of the demo
study (three parties as threads) 15-20 s against 8.5-9 s.

:func:`limit_blas_threads` sets the process-wide BLAS pool size through ``threadpoolctl``
(the library scikit-learn uses for this; environment variables such as
``OPENBLAS_NUM_THREADS`` only act before numpy is first imported). The daemon sets it
once at start, :func:`cipherome.mpc.local.run_local` for the duration of a run.
"""
from __future__ import annotations

from threadpoolctl import threadpool_limits

__all__ = ["JOB_BLAS_THREADS", "limit_blas_threads"]

#: BLAS threads a party process uses while it runs jobs
JOB_BLAS_THREADS = 1


def limit_blas_threads(threads: int = JOB_BLAS_THREADS) -> threadpool_limits:
    """Limit every loaded BLAS library to ``threads`` threads now; the result restores the old sizes
    (``.restore_original_limits()``, or use it as a context manager)."""
    return threadpool_limits(limits=int(threads), user_api="blas")
