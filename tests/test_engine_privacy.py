"""What a single party sees: no secret in clear in any received message, and uniform shares.

Every message each party receives (from peers and from the dealer) is recorded
during a computation on distinctive secrets; none may contain the encoding of
a secret input or of the (unopened) product. Shares of two different secrets
must be indistinguishable (both uniform in their top bits).
"""
import numpy as np
import pytest
from scipy import stats

from cipherome import protocols as P
from cipherome.mpc import inproc
from cipherome.mpc.local import run_local
from cipherome.mpc.ring import encode


@pytest.fixture()
def recorded(monkeypatch):
    """Record (receiver, sender, tag, array) of every message delivered in-process."""
    log = []
    orig = inproc.InProcTransport.recv

    def recv(self, frm, tag, timeout=None):
        data = orig(self, frm, tag, timeout)
        log.append((self.me, frm, tag, np.array(data, copy=True)))
        return data

    monkeypatch.setattr(inproc.InProcTransport, "recv", recv)
    return log


def _contains_any(messages, values: np.ndarray) -> bool:
    wanted = set(np.asarray(values, dtype=np.uint64).ravel().tolist())
    for arr in messages:
        if arr.dtype == np.uint64 and wanted.intersection(arr.ravel().tolist()):
            return True
        if arr.dtype == np.uint8 and arr.size % 8 == 0 and wanted.intersection(arr.view(np.uint64).tolist()):
            return True
    return False


@pytest.mark.parametrize("n", [2, 3])
def test_no_secret_in_clear_in_any_received_message(recorded, n):
    rng = np.random.default_rng(11)
    x = rng.uniform(-1000, 1000, 500)
    y = rng.uniform(-1000, 1000, 500)
    m = rng.uniform(-5, 5, (20, 30))

    def job(ctx):
        a = ctx.input(ctx.parties[0], x if ctx.me == ctx.parties[0] else None, shape=x.shape, frac=ctx.frac)
        b = ctx.input(ctx.parties[1], y if ctx.me == ctx.parties[1] else None, shape=y.shape, frac=ctx.frac)
        c = ctx.input(ctx.parties[-1], m if ctx.me == ctx.parties[-1] else None, shape=m.shape, frac=ctx.frac)
        P.mul(a, b)
        P.matmul(c, c.T)
        P.square(b)
        return None

    run = run_local(job, n)
    assert run.results == [None] * n
    f = 20
    secret_inputs = {"x": (encode(x, f), "p0"), "y": (encode(y, f), "p1"), "m": (encode(m, f), f"p{n-1}")}
    prod = encode(x * y, f).view(np.int64)
    gram = encode(m @ m.T, f).view(np.int64)
    near = lambda v: np.concatenate([v - 1, v, v + 1]).view(np.uint64)  # truncation is +-1 ulp
    received = {}
    for me, frm, tag, arr in recorded:
        received.setdefault(me, []).append(arr)
    assert set(received) == {f"p{i}" for i in range(n)} | {"dealer"}
    for me, msgs in received.items():
        for name, (enc, owner) in secret_inputs.items():
            if me != owner:
                assert not _contains_any(msgs, enc), f"{me} received secret {name} in clear"
        assert not _contains_any(msgs, near(prod)), f"{me} received the product in clear"
        assert not _contains_any(msgs, near(gram)), f"{me} received the matrix product in clear"


def _shares_of(secret: np.ndarray, party: str, op: str, n: int = 3) -> np.ndarray:
    """The share that ``party`` holds of ``secret`` (as input) or of secret*secret (op='mul')."""

    def job(ctx):
        a = ctx.input("p0", secret if ctx.is_lead else None, shape=secret.shape, frac=ctx.frac)
        z = P.mul(a, a) if op == "mul" else a
        return z.data.copy() if ctx.me == party else None

    return run_local(job, n).results[int(party[1:])]


@pytest.mark.parametrize("party,op", [("p0", "input"), ("p2", "input"), ("p1", "mul"), ("p0", "mul")])
def test_share_distribution_does_not_depend_on_secret(party, op):
    size = 20_000
    small = np.zeros(size)
    large = np.full(size, 1000.0)
    top = lambda s: (s >> np.uint64(56)).astype(np.int64)  # top byte of each share
    a, b = top(_shares_of(small, party, op)), top(_shares_of(large, party, op))
    # each is uniform over 256 values ...
    for t in (a, b):
        counts = np.bincount(t, minlength=256)
        assert stats.chisquare(counts).pvalue > 1e-4
    # ... and the two are indistinguishable
    assert stats.ks_2samp(a, b).pvalue > 1e-4
    # shares are not correlated with the secret across elements either
    mixed = np.where(np.arange(size) % 2 == 0, 0.0, 1000.0)
    s = top(_shares_of(mixed, party, op)).astype(float)
    assert abs(np.corrcoef(s, mixed)[0, 1]) < 0.05
