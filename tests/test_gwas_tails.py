"""The tail probabilities of ``genomics.gwas.tails`` equal scipy.stats' (which the daemons no longer import)."""
import numpy as np
import pytest
from scipy import stats

from cipherome.genomics.gwas import tails

X = np.array([np.nan, -1.0, 0.0, 1e-12, 0.5, 3.84, 50.0, 1000.0])


def test_chi_square_tails_match_scipy_stats():
    with np.errstate(all="ignore"):
        for df in (1, 2, 7):
            np.testing.assert_allclose(tails.chi2_sf(X, df), stats.chi2.sf(X, df), rtol=1e-14)
        np.testing.assert_allclose(tails.chi2_1df_logsf(X), stats.chi2.logsf(X, 1), rtol=1e-12, atol=1e-11)
        p = np.array([np.nan, 0.0, 1e-300, 1e-6, 0.05, 0.5, 1.0])
        np.testing.assert_allclose(tails.chi2_isf(p, 1), stats.chi2.isf(p, 1), rtol=1e-14)


def test_log_tail_of_one_df_chi_square_stays_finite_beyond_double_range():
    """At x = 2,000 (p ~ 1e-437) scipy.stats' log(sf) is -inf; log 2 + log Phi(-sqrt x) is finite."""
    got = tails.chi2_1df_logsf(np.array([2000.0]))[0]
    assert np.isfinite(got) and got / np.log(10) == pytest.approx(-436.05, abs=0.01)
    assert stats.chi2.logsf(2000.0, 1) == -np.inf


def test_t_and_normal_tails_match_scipy_stats():
    t = np.array([np.nan, 0.0, 1.5, 40.0])
    df = np.array([1, 5, 10, 1000])
    np.testing.assert_allclose(tails.t_sf(t, df), stats.t.sf(t, df), rtol=1e-14)
    z = np.array([np.nan, 0.0, 5.0, 40.0])
    np.testing.assert_allclose(tails.norm_logsf(z), stats.norm.logsf(z), rtol=1e-14)
    assert float(tails.norm_isf(0.025)) == pytest.approx(stats.norm.isf(0.025), rel=1e-15)


def test_daemon_side_modules_do_not_import_scipy_stats():
    """Importing the daemon and its workloads leaves scipy.stats out (1.5 s per daemon at start)."""
    import subprocess
    import sys

    code = ("import sys, cipherome.mpc.daemon, cipherome.genomics.jobs, cipherome.cli.bench_jobs\n"
            "print(any(m == 'scipy.stats' or m.startswith('scipy.stats.') for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr
