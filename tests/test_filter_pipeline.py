"""Pipelined chunks (``mpc.pipeline``, ``filtering.budget.pipeline_plan``): the same answers, rounds that add up.

The wavefront runs chunk i's round t - i at step t with all openings of a step in
one round, so k chunks of R rounds cost k + R - 1 rounds, not k R. Checked on a
bare protocol (equality and comparison tasks) and on the filtering models, where
a tiny memory budget forces many chunks: the pipelined answer equals the
sequential one (window 1) and the plaintext twin exactly.
"""
import numpy as np
import pytest

from cipherome.genomics.filtering import budget as fb
from cipherome.genomics.filtering import job as fj
from cipherome.genomics.filtering.job import run_filter
from cipherome.genomics.filtering.params import FilterParams
from cipherome.genomics.reference.filtering import reference_filter
from cipherome.mpc.local import run_local
from cipherome.mpc.pipeline import pipeline
from cipherome.protocols import compare
from tests.filter_sim import GENES, simulate, site_variants


def _tasks(ctx, k: int, n: int):
    rng = np.random.default_rng(7)
    xs = [rng.integers(-3, 4, n) for _ in range(k)]

    def task(x):
        def run():
            s = ctx.input(ctx.parties[0], x if ctx.is_lead else None, shape=x.shape, frac=0)
            e = compare.eqz(s, bits=8)
            return ctx.open(compare.ltz(s - 1, bits=8) + e, "test.bits")
        return run

    return xs, [task(x) for x in xs]


@pytest.mark.parametrize("window", [1, 3, 50])
def test_pipeline_results_and_rounds(window):
    k, n = 12, 40

    def job(ctx):
        xs, tasks = _tasks(ctx, k, n)
        r0 = ctx.rounds
        got = pipeline(ctx, tasks, window)
        return got, ctx.rounds - r0, [(x < 1).astype(int) + (x == 0) for x in xs]

    run = run_local(job, 3)
    got, rounds, want = run.results[0]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    per = 4 + 4 + 1  # eqz and ltz on 8 bits, then the opening
    assert rounds == {1: k * per, 3: fb.plan_rounds(k, 3, per), 50: k + per - 1}[window]
    labels = [e["label"] for e in run.reports["p1"]["ledger"]]
    assert "test.bits" in labels and "eqz" in labels  # each opening keeps its own ledger label


def test_a_failing_task_fails_the_pipeline_without_hanging():
    def job(ctx):
        def bad():
            compare.eqz(ctx.input(ctx.parties[0], np.zeros(4, np.int64) if ctx.is_lead else None, shape=(4,),
                                  frac=0), bits=8)
            raise ValueError("task failed")

        _, tasks = _tasks(ctx, 3, 8)
        return pipeline(ctx, [tasks[0], bad, tasks[1]], 3)

    with pytest.raises(ValueError, match="task failed"):
        run_local(job, 3, timeout=30)


def _study():
    st = simulate(11, n_positions=70)
    return [site_variants(st, s) for s in range(3)]


def _trio_study(genes: int):
    """24 trios split across the sites (the benchmark's generator at a small size), ``genes`` genes."""
    from bench.filter_bench_jobs import synthetic_trio_site

    return [synthetic_trio_site(3, s, 3, 24, 400, carried=30, genes=genes) for s in range(3)]


def _run(svs, params, gb, monkeypatch, sequential=False):
    """Run with every site's budget ``gb``; ``sequential``: the plan without pipelining (chunk_items, window 1)."""
    plans = []

    def plan(items, per_item, fixed, budget, site, change, rounds):
        if sequential:
            plans.append((fb.chunk_items(items, per_item, fixed, budget, site, change), 1))
        else:
            plans.append(fb.pipeline_plan(items, per_item, fixed, budget, site, change, rounds))
        return plans[-1]

    monkeypatch.setattr(fj, "pipeline_plan", plan)
    p = FilterParams.from_dict(dict(params))
    pol = [{"max_job_memory_gb": gb}] * 3
    run = run_local(lambda ctx, i: run_filter(ctx, p, svs[i], pol[i]), 3, args=lambda i: {"i": i})
    st = {s["stage"]: s["rounds"] for s in run.reports["p0"]["stages"]}
    nested = params["model"] not in ("denovo", "comphet")  # cohort models reveal inside secure_filter
    return run.results[0], st["secure_filter"] - (st["reveal"] if nested else 0), plans[0]


@pytest.mark.parametrize("study,params,gb,items", [
    ("sim", {"model": "carrier", "max_cohort_af": "0.2", "table_size": 64, "lanes": 8}, 0.0015, 64),
    ("sim", {"model": "recessive", "min_affected": 1, "table_size": 64, "lanes": 8}, 0.001, 64),
    ("trios", {"model": "denovo", "max_member_variants": 60}, 0.02, 24),
    ("trios200", {"model": "comphet", "genes": [f"G{i}" for i in range(200)], "lanes": 3}, 0.015, 24),
], ids=lambda x: x["model"] if isinstance(x, dict) else str(x))
def test_pipelined_equals_sequential_and_rounds_add_up(monkeypatch, study, params, gb, items):
    """A small budget: many chunks; the pipelined plan (more, smaller chunks in flight) gives the sequential
    plan's, the unchunked run's and the twin's answer exactly, in plan_rounds(chunks, window, R) rounds, fewer
    than the sequential chunks x R."""
    svs = {"sim": _study, "trios": lambda: _trio_study(20000), "trios200": lambda: _trio_study(200)}[study]()
    want = reference_filter(svs, params, 0)
    key = "rows" if "rows" in want else "genes"
    whole, per, (c_whole, _) = _run(svs, params, 64, monkeypatch)
    seq, r_seq, (c_seq, _) = _run(svs, params, gb, monkeypatch, sequential=True)
    pipe, r_pipe, (c_pipe, w_pipe) = _run(svs, params, gb, monkeypatch)
    assert whole[key] == seq[key] == pipe[key] == want[key] and want[key]
    assert c_whole == items and w_pipe > 1  # unchunked: one chunk of per rounds
    k_seq, k_pipe = -(-items // c_seq), -(-items // c_pipe)
    assert k_pipe > k_seq > 1
    assert r_seq == k_seq * per
    assert r_pipe == fb.plan_rounds(k_pipe, min(w_pipe, k_pipe), per) < r_seq


def test_many_chunks_cost_chunks_plus_a_constant(monkeypatch):
    """A budget that fits one slot per chunk: 64 chunks, pipelined in 64 + R - 1 rounds, where one after the
    other the 64 chunks would cost 64 R; the carrier answer is the twin's."""
    svs = _study()
    params = {"model": "carrier", "max_cohort_af": "0.2", "table_size": 64, "lanes": 8}
    whole, per, _ = _run(svs, params, 64, monkeypatch)
    pipe, rounds, (c, w) = _run(svs, params, 0.001, monkeypatch)
    assert pipe["rows"] == whole["rows"] == reference_filter(svs, params, 0)["rows"]
    assert c == 1 and w >= per and rounds == 64 + per - 1
