"""``mpc.memory.tune_malloc``: a party thread's large arrays stay in the process after they are freed."""
import subprocess
import sys

import pytest

_PROBE = """
import threading, numpy as np
import cipherome.mpc  # applies the tuning
def job():
    a = np.ones(200 << 20, dtype=np.uint8)  # a job's large array, in a server thread
    del a
t = threading.Thread(target=job); t.start(); t.join()
rss = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
print(rss >> 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning")
def test_a_threads_freed_large_array_stays_in_the_process():
    kept = int(subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout)
    plain = int(subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                               env={**__import__("os").environ, "CIPHEROME_NO_MALLOC_TUNING": "1"}).stdout)
    assert kept >= plain + 150, (kept, plain)  # MB resident after the free: kept for reuse, not returned


_PREFAULT = """
import resource, numpy as np
import cipherome.mpc  # applies the tuning
from cipherome.mpc.memory import Prefault
def rss():
    return [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")][0] >> 10
base = rss()
p = Prefault([150 << 20, 150 << 20, 2 << 30])  # the 2 GiB block is above the mmap threshold: skipped
p.release()
after = rss()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
g, gt = np.empty(150 << 20, dtype=np.uint8), np.empty(150 << 20, dtype=np.uint8)
g[:] = 1
gt[:] = 2
print(base, after, rss(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning")
def test_prefaulted_pages_are_kept_and_reused_by_the_next_arrays():
    """``Prefault`` leaves its touched pages in the process after ``release``; arrays of that size
    allocated next live in them (resident memory does not grow, few page faults), and a block above
    the mmap threshold is not touched at all."""
    out = subprocess.run([sys.executable, "-c", _PREFAULT], capture_output=True, text=True, check=True).stdout
    base, after, used, faults = (int(v) for v in out.split())
    assert 280 <= after - base < 1000, (base, after)  # 300 MB faulted in and kept, not the 2 GiB block
    assert used - after < 30, (after, used)  # the next 300 MB of arrays reuse them
    assert faults < 2000, faults  # a fresh 300 MB is 76,800 small pages (or 150 huge ones, see the RSS)
