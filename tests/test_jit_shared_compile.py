"""``cipherome.mpc.jit``: processes of one machine compile a cached kernel once between them; a failed compile
releases its lock."""
import os
import subprocess
import sys
import textwrap
import time

KERNEL = textwrap.dedent('''
    import numpy as np
    from cipherome.mpc.jit import njit

    @njit(cache=True, nogil=True)
    def kernel(x):
        s = 0.0
        for i in range(x.size):
            v = x[i]
            if v > 3:
                s += np.sqrt(v) * np.log1p(v)
            elif v > 2:
                s -= np.exp(-v) * np.cos(v)
            elif v > 1:
                s += np.tanh(v) / (1 + v * v)
            else:
                s += np.arctan2(v, 1.0 + s * s)
        return s
''')

RUN = textwrap.dedent('''
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    while not os.path.exists(sys.argv[2]):  # start together
        time.sleep(0.005)
    import numpy as np
    import shared_kernel
    shared_kernel.kernel(np.arange(10.0))
    st = shared_kernel.kernel.stats
    print(sum(st.cache_misses.values()), sum(st.cache_hits.values()))
''')


def _env(tmp_path):
    return dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))


def test_three_processes_compile_a_new_kernel_once(tmp_path):
    (tmp_path / "shared_kernel.py").write_text(KERNEL)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(tmp_path)) for _ in range(3)]
    time.sleep(3.0)  # all three have imported numba and wait for the start
    go.write_text("")
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    counts = [tuple(map(int, o[0].split())) for o in outs]
    assert sorted(counts) == [(0, 1), (0, 1), (1, 0)], counts  # one compile, two loads of its result


FAIL_THEN_HOLD = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import shared_kernel
    try:
        shared_kernel.kernel("not an array")  # a typing error inside the locked compile
    except Exception as exc:
        print(type(exc).__name__, flush=True)
    time.sleep(30)
''')


def test_a_failed_compile_releases_the_lock(tmp_path):
    """After a compile raised in one (still running) process, another compiles the kernel without waiting."""
    (tmp_path / "shared_kernel.py").write_text(KERNEL)
    holder = subprocess.Popen([sys.executable, "-c", FAIL_THEN_HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "TypingError"
        go = tmp_path / "go"
        go.write_text("")
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-c", RUN, str(tmp_path), str(go)], capture_output=True, text=True,
                           env=_env(tmp_path), timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == ["1", "0"]
        assert time.monotonic() - t < 25  # not the holder's 30 s, nor the 300 s wait limit
    finally:
        holder.kill()
        holder.wait()
