"""Staggered tasks (``mpc.pipeline.stagger``) and rotating dealer corrections (``correlated.recipe(rotate=True)``).

In process, 3 parties and the dealer: staggered parts give the values of the whole batch, in the
rounds of one part (a cycle of parts is one round), with the bytes of the parts run one by one;
corrections of rotating recipes reach every compute party; a rotating recipe may not use the
lead-only primitives.
"""
import gc
import weakref

import numpy as np
import pytest

from cipherome import protocols as P
from cipherome.mpc.correlated import DealerGen, corrected_party
from cipherome.mpc.pipeline import contiguous_parts, pipeline, stagger
from cipherome.mpc.prg import PRG
from cipherome.mpc.shares import concat
from tests.mpc_helpers import run_shared

X = np.linspace(-3.0, 3.0, 4000)


def _chain(a):
    """Beaver products, truncations and a comparison: openings and dealer waits at every step."""
    y = P.mul(a, a) - a
    return P.mul(y, P.ltz(a, 40)) + y


def test_contiguous_parts():
    assert contiguous_parts(10, 4) == [slice(0, 2), slice(2, 5), slice(5, 7), slice(7, 10)]
    assert contiguous_parts(3, 4) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert contiguous_parts(0, 4) == [slice(0, 0)]


@pytest.mark.parametrize("parts", [2, 4])
def test_stagger_gives_the_batch_values_in_the_rounds_of_one_part(parts):
    whole, run1 = run_shared(lambda ctx, a: _chain(a), [X])

    def staggered(ctx, a):
        outs = stagger(ctx, [lambda sl=sl: _chain(a[sl]) for sl in contiguous_parts(a.shape[0], parts)])
        return concat(outs)

    got, run = run_shared(staggered, [X])
    expect = np.where(X < 0, 2 * (X * X - X), X * X - X)
    np.testing.assert_allclose(whole, expect, atol=1e-4)
    np.testing.assert_allclose(got, expect, atol=1e-4)
    rep, rep1 = run.reports["p0"], run1.reports["p0"]
    assert rep["rounds"] == rep1["rounds"]  # one round per cycle of parts
    assert abs(rep["bytes_sent"] - rep1["bytes_sent"]) < 0.01 * rep1["bytes_sent"] + 200 * parts


@pytest.mark.parametrize("runner", ["stagger", "pipeline"])
def test_finished_tasks_release_their_arrays_without_a_garbage_collection(runner):
    """A task and its scheduler reference each other; what a task's closure holds (a site's calls, say)
    and the results it returned must still be freed when the call returns, not at the next cyclic GC
    (which numeric code may not trigger for a whole job stage)."""
    class Big:
        pass

    refs = []

    def job(ctx, a):
        def task(k):
            held = Big()
            refs.append(weakref.ref(held))
            return lambda: (held, P.mul(a, a) + float(k))[1]

        run = stagger if runner == "stagger" else (lambda c, t: pipeline(c, t, 2))
        outs = run(ctx, [task(k) for k in range(3)])
        return concat(outs)

    gc.disable()
    try:
        got, _ = run_shared(job, [X[:10]])
        assert refs and all(r() is None for r in refs)
    finally:
        gc.enable()
    np.testing.assert_allclose(got, np.concatenate([X[:10] ** 2 + k for k in range(3)]), atol=1e-4)


def test_stagger_inside_a_task_runs_in_turn():
    def nested(ctx, a):
        inner = lambda: stagger(ctx, [lambda: P.mul(a, a), lambda: a + 1.0])  # noqa: E731
        outs = stagger(ctx, [inner, lambda: [P.mul(a, a), a]])
        return concat([outs[0][0], outs[0][1], outs[1][0], outs[1][1]])

    got, _ = run_shared(nested, [X[:10]])
    np.testing.assert_allclose(got, np.concatenate([X[:10] ** 2, X[:10] + 1, X[:10] ** 2, X[:10]]), atol=1e-4)


def test_rotating_corrections_reach_every_party():
    assert [corrected_party("triple", s, 3) for s in range(4)] == [0, 1, 2, 0]
    assert corrected_party("psi_pair", 4, 3) == 0  # uses for_lead: always the lead
    _, run = run_shared(lambda ctx, a: _chain(a), [X])
    sent = run.reports["dealer"]["sent_to"]
    # without rotation the dealer would send to the lead only; here each party gets a fair share
    assert set(sent) == {"p0", "p1", "p2"}
    assert min(sent.values()) > 0.2 * sum(sent.values())


def test_rotating_recipe_may_not_use_lead_only_values():
    gen = DealerGen([PRG(bytes(16)), PRG(bytes([1]) * 16), PRG(bytes([2]) * 16)], 1, PRG(bytes([3]) * 16))
    with pytest.raises(ValueError, match="rotating recipe"):
        gen.for_lead((2,), lambda: np.zeros(2, np.uint64))
    with pytest.raises(ValueError, match="rotating recipe"):
        gen.random_among((2,), [0])
