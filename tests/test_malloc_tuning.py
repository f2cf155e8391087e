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
