"""The dealer answers a request made ahead after the ordinary requests that follow it, and every
party's shares stay consistent: each request draws from its own keystream (``PRG.stream``)."""
import threading

import numpy as np

from cipherome.mpc.inproc import InProcNetwork
from cipherome.mpc.local import DEALER, party_names
from cipherome.mpc.prg import PRG
from cipherome.mpc.runtime import Context, next_request
from cipherome.mpc.shares import Shared


def test_streams_are_reproducible_and_distinct():
    seed = b"q" * 16
    base = PRG(seed).ring(64)
    s3 = PRG(seed).stream(3).ring(64)
    np.testing.assert_array_equal(s3, PRG(seed).stream(3).ring(64))  # the other holder draws the same
    assert not np.array_equal(s3, PRG(seed).stream(4).ring(64))
    assert not np.array_equal(s3, base)
    assert not np.array_equal(PRG(seed).stream(0).ring(64), base)
    a = PRG(seed)
    a.ring(10)  # a stream does not depend on how far its parent has drawn
    np.testing.assert_array_equal(a.stream(3).ring(64), s3)


def test_next_request_takes_the_first_ordinary_one():
    assert next_request([(0, "lut", {}, True), (1, "triple", {}, False), (2, "triple", {}, False)]) == 1
    assert next_request([(0, "triple", {}, False), (1, "lut", {}, True)]) == 0
    assert next_request([(4, "lut", {}, True), (5, "lut", {}, True)]) == 0


class _HeldDealer:
    """The dealer's transport: request 0 is read only once request ``last`` has arrived (so that all are
    pending at once); the order of the dealer's replies is recorded."""

    def __init__(self, inner, last: int):
        self.inner, self.last, self.replies = inner, last, []
        self.stats = inner.stats

    def send(self, to, tag, array):
        if tag.startswith("dealer/"):
            self.replies.append(int(tag.split("/")[1]))
        self.inner.send(to, tag, array)

    def recv(self, frm, tag, timeout=None):
        if tag == "dealer/0":
            while not self.inner.ready(frm, f"dealer/{self.last}"):
                threading.Event().wait(0.001)
        return self.inner.recv(frm, tag, timeout)

    def ready(self, frm, tag):
        return self.inner.ready(frm, tag)

    def abort(self, reason):
        self.inner.abort(reason)


def test_a_request_made_ahead_is_answered_after_later_ones_and_its_shares_are_consistent():
    names = party_names(3)
    net = InProcNetwork(names + [DEALER], timeout=60.0)
    dealer_tp = _HeldDealer(net.transport(DEALER), last=3)
    opened, errors = {}, []
    shape = (5, 4)

    def body(name):
        tp = dealer_tp if name == DEALER else net.transport(name)
        ctx = Context(name, names, DEALER, tp, frac=0, timeout=60.0)
        try:
            ctx.setup()
            if name == DEALER:
                ctx.serve_dealer()
                return
            bundles = [ctx.provider.fetch_ahead("triple", shape=shape)]
            bundles += [ctx.provider.fetch("triple", shape=shape) for _ in range(3)]
            got = []
            for b in reversed(bundles):  # the one made ahead is used last
                a, bb, c = (Shared(ctx, np.asarray(b[i]), 0) for i in range(3))
                got.append([ctx.open(v, "t") for v in (a, bb, c)])
            opened[name] = got
            ctx.finish()
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)
            net.abort(f"{name} failed")

    threads = [threading.Thread(target=body, args=(nm,)) for nm in names + [DEALER]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert dealer_tp.replies == [1, 2, 3, 0]
    for got in opened.values():
        for a, b, c in got:
            np.testing.assert_array_equal(c, a * b)  # int64 ring products wrap like the ring
        np.testing.assert_array_equal(np.array(got), np.array(opened[names[0]]))
