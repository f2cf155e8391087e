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


def _run(svs, params, gb, monkeypatch, sequential=False, force=None):
    """Run with every site's budget ``gb``; ``sequential``: the plan without pipelining (chunk_items, window 1);
    ``force``: this (items per chunk, window) plan."""
    plans = []

    def plan(items, per_item, fixed, budget, site, change, rounds, products=False):
        if force:
            plans.append(force)
        elif sequential:
            plans.append((fb.chunk_items(items, per_item, fixed, budget, site, change), 1))
        else:
            plans.append(fb.pipeline_plan(items, per_item, fixed, budget, site, change, rounds, products))
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
    """A small budget: several chunks; the pipelined plan (as many or more chunks, several in flight) gives the
    sequential plan's, the unchunked run's and the twin's answer exactly, in plan_rounds(chunks, window, R)
    rounds, fewer than the sequential chunks x R."""
    svs = {"sim": _study, "trios": lambda: _trio_study(20000), "trios200": lambda: _trio_study(200)}[study]()
    want = reference_filter(svs, params, 0)
    key = "rows" if "rows" in want else "genes"
    whole, per, (c_whole, _) = _run(svs, params, 64, monkeypatch)
    seq, r_seq, (c_seq, _) = _run(svs, params, gb, monkeypatch, sequential=True)
    pipe, r_pipe, (c_pipe, w_pipe) = _run(svs, params, gb, monkeypatch)
    assert whole[key] == seq[key] == pipe[key] == want[key] and want[key]
    assert c_whole == items and w_pipe > 1  # unchunked: one chunk of per rounds
    k_seq, k_pipe = -(-items // c_seq), -(-items // c_pipe)
    assert k_pipe >= k_seq > 1
    assert r_seq == k_seq * per
    assert r_pipe == fb.plan_rounds(k_pipe, min(w_pipe, k_pipe), per) < r_seq


def test_many_chunks_cost_chunks_plus_a_constant(monkeypatch):
    """One slot per chunk, all in flight: 64 chunks pipelined in 64 + R - 1 rounds, where one after the other
    they would cost 64 R; the carrier answer is the twin's."""
    svs = _study()
    params = {"model": "carrier", "max_cohort_af": "0.2", "table_size": 64, "lanes": 8}
    whole, per, _ = _run(svs, params, 64, monkeypatch)
    pipe, rounds, _ = _run(svs, params, 64, monkeypatch, force=(1, 64))
    assert pipe["rows"] == whole["rows"] == reference_filter(svs, params, 0)["rows"]
    assert rounds == 64 + per - 1


# ----------------------------------------------------------------------------- memory per round
def _held(rec, label0: str) -> tuple[float, list[float]]:
    """(peak, held at each opening) above the memory traced at the opening labelled ``label0``, from it on."""
    k = [r[1] for r in rec].index(label0)
    base, rows = rec[k][2], rec[k + 1:]
    return max(r[3] for r in rows) - base, [r[2] - base for r in rows]


@pytest.mark.parametrize("fn,label", [(compare.eqz, "eqz"), (compare.ltz, "ltz")])
def test_comparison_state_lasts_about_one_round(fn, label):
    """tracemalloc at every opening (``bench.filter_round_memory.record_openings``) of one 48-bit equality test
    (or comparison) on 200,000 values: its peak comes with its opening and first level; it holds under 0.6 of
    it at its second AND round and under a third from its third on, under 3 peaks over its 7 rounds
    (measured: eqz 0.18, 0.40, 0.34, 0.19, 0.07, 0.06, 0.17; ltz 0.26, 0.77, 0.42, 0.20, 0.07, 0.06, 0.17,
    and in a loaded CI run, where the three parties' threads reach an opening at other moments, ltz 0.64,
    0.82, 0.47, 0.22, 0.14, 0.05, ...: sum 2.54).
    Before the test dropped its state early (all AND material and daBits fetched up front; x, r, c and the
    bit rows kept to the end) this failed: eqz 0.39, 0.91, 0.91, 0.79, 0.77, 0.74, ...; ltz 0.11, 0.80, 0.82,
    0.75, 0.69, 0.68, ..."""
    from bench.filter_round_memory import record_openings

    n = 200_000
    x = np.random.default_rng(3).integers(-2, 3, n)

    def job(ctx):
        s = ctx.input(ctx.parties[0], x if ctx.is_lead else None, shape=(n,), frac=0)
        fn(s[:64], bits=48)  # compile and import outside the measurement
        ctx.open(s[:1], "test.start")
        got = fn(s, bits=48)
        return ctx.open(got, "test.result")

    run, rec = record_openings(lambda: run_local(job, 3))
    want = (x == 0) if fn is compare.eqz else (x < 0)
    np.testing.assert_array_equal(run.results[0], want.astype(np.int64))
    peak, held = _held(rec, "test.start")
    labels = [r[1] for r in rec[[r[1] for r in rec].index("test.start") + 1:]]
    assert labels == [label] + [label + ".and"] * 5 + [label + ".b2a", "test.result"]
    frac = [h / peak for h in held[:7]]  # the test's 7 rounds: the opening, 5 AND layers, the B2A
    assert peak > 40 * n  # the state of 3 parties and the dealer (bytes per value, all parties)
    assert frac[2] < 0.6 and max(frac[3:]) < 0.34, frac
    assert sum(frac) < 3.0, frac


def test_chunk_profile_is_within_the_budget_model():
    """The planner's per-round model (``budget.held_profile``) bounds what a de novo chunk holds at each of its
    rounds (``bench.filter_round_memory.chunk_profile``: medians over chunks run one after the other), and
    chunks in flight at distinct rounds fit ``in_flight``: the peak lasts about one round, so the planner takes
    few large chunks."""
    from bench.filter_round_memory import chunk_profile, profile_job

    got = profile_job("denovo", 24, 2000, 0.04)
    chunk, window, rounds, products = got["plan"]
    assert window == 1 and -(-24 // chunk) >= 4  # sequential, four or more chunks
    peak, frac = chunk_profile(got["records"], rounds)
    model = fb.held_profile(rounds, products)
    assert len(frac) == rounds == 11
    assert all(f <= m + 0.05 for f, m in zip(frac, model)), (frac, model)
    assert max(frac[2:]) < 0.35, frac  # before: 0.85, 0.82, 0.75, 0.73, 0.54 at rounds 2-6
    assert 1 + sum(sorted(frac, reverse=True)[: rounds - 1]) <= fb.in_flight(rounds, rounds, products)


def test_planner_takes_fewer_larger_chunks_and_weighs_each_chunk():
    """At the scale benchmark's de novo sizes (500 trios, 762 bins x 16 lanes, R = 11) and 0.25 GB, the old model
    (a chunk at its peak for all 7 rounds of the equality test, 0.15 after) planned 125 chunks of 4 trios in 135
    rounds; the measured profile plans 56 chunks of 9 in 66 rounds, within the budget. A plan costs its rounds and
    its chunks (``plan_seconds``): the planner takes the cheapest plan that fits, which need not be the one with
    the fewest rounds (a carrier-like chunk of 24 rounds, 2,048 slots, a budget of 50 slots' peak)."""
    per, fixed, budget, R = 2 * 762 * 16 * fb.BYTES_PER_TEST, 500 * 762 * 64 + 762 * 96, int(0.25 * fb.GB), 11

    def old_in_flight(w):
        return min(w, 7) + 0.15 * max(0, w - 7)

    old = min((fb.plan_rounds(-(-500 // c), min(w, -(-500 // c)), R), w, c)
              for w in range(1, R + 1) for c in [min(500, int((budget - fixed) // (per * old_in_flight(w))))] if c)
    c, w = fb.pipeline_plan(500, per, fixed, budget, "s", "x", R)
    k = -(-500 // c)
    assert fixed + c * per * fb.in_flight(w, R) <= budget
    assert (k, fb.plan_rounds(k, min(w, k), R)) == (56, 66) and (-(-500 // old[2]), old[0]) == (125, 135)

    def candidates(items, per, budget, R, products):
        out = []
        for ww in range(1, R + 1):
            for cc in range(1, items + 1):
                if cc * per * fb.in_flight(ww, R, products) <= budget:
                    kk = -(-items // cc)
                    out.append((fb.plan_seconds(kk, min(ww, kk), R), fb.plan_rounds(kk, min(ww, kk), R), kk))
        return out

    cands = candidates(2048, 10**6, 50 * 10**6, 24, True)
    c, w = fb.pipeline_plan(2048, 10**6, 0, 50 * 10**6, "s", "x", 24, products=True)
    k = -(-2048 // c)
    assert fb.plan_seconds(k, min(w, k), 24) == min(cands)[0]
    fewest = min(cands, key=lambda t: (t[1], t[0]))
    assert fewest[1] < fb.plan_rounds(k, min(w, k), 24) and fewest[2] > k  # more, smaller chunks: not taken
