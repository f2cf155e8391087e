"""Leakage tests for every filtering model family: what any party or the dealer receives depends only on the outputs.

For each family (cohort: carrier; inheritance: denovo and comphet; gene level:
max-gene and gene-diff) two runs differ only in data that must stay private at
site p2: the genotypes of an individual who is in no trio and not a candidate
(here an unaffected singleton), and PED rows in no trio (that individual renamed;
an affected singleton given parents who are genotyped nowhere, i.e. a trio with
missing parents, which is skipped with a note in p2's log). Every message that
every compute party and the dealer receives is recorded. Then: the released
answer is the same, the message structure (sender, label, dtype, shape, in
order) is the same at every receiver, every disclosed opening is equal value for
value, and the trio-link messages (``filter.trio_requests``: fresh random padding
and keyed tags in a random order; ``filter.trio_answers``; ``filter.trios``) carry
the same content up to that order. The job key is pinned so both runs use the
same slots (it is fresh per job in real runs).
"""
import hashlib
import json
import threading

import numpy as np
import pytest

from cipherome.genomics.filtering import job as filtering
from cipherome.genomics.filtering.job import run_filter
from cipherome.genomics.filtering.local import Pedigree, SiteVariants
from cipherome.genomics.filtering.params import FilterParams
from cipherome.mpc import inproc, runtime
from cipherome.mpc.local import run_local
from cipherome.mpc.runtime import Context
from tests.filter_sim import GENES, simulate, site_variants

LINKS = ("filter.trio_requests", "filter.trio_answers", "filter.trios")


@pytest.fixture()
def recorder(monkeypatch):
    log = {"msgs": {}, "opened": {}}
    recv, disclose, agree = inproc.InProcTransport.recv, Context.disclose, filtering.agree_job_key

    def rec_recv(self, frm, tag, timeout=None):
        data = recv(self, frm, tag, timeout)
        log["msgs"].setdefault(self.me, []).append((frm, tag, np.array(data, copy=True)))
        return data

    def rec_open(self, shares, label, *, to=None, bits=64):
        out = disclose(self, shares, label, to=to, bits=bits)
        if out is not None:
            log["opened"].setdefault(self.me, []).append((label, [np.array(o, copy=True) for o in out]))
        return out

    def fixed_key(ctx):
        agree(ctx)
        return b"\x3c" * 32

    counters = {}

    def det_seed():  # randomness as a function of (party thread, call number): the owners' private
        name = threading.current_thread().name  # shuffles of their cuckoo tables repeat from run to run
        counters[name] = counters.get(name, 0) + 1
        return hashlib.sha256(f"{name}/{counters[name]}".encode()).digest()[:16]

    def fresh_counters(*a, **k):
        counters.clear()

    log["reset"] = fresh_counters
    monkeypatch.setattr(runtime, "new_seed", det_seed)
    monkeypatch.setattr(filtering, "agree_job_key", fixed_key)
    monkeypatch.setattr(inproc.InProcTransport, "recv", rec_recv)
    monkeypatch.setattr(Context, "disclose", rec_open)
    return log


def _label(tag: str) -> str:
    return tag.split("/", 1)[1] if "/" in tag else tag


def _rows(sv: SiteVariants) -> list:
    return [(k, c, p, r, a, g, cons, d.copy()) for k, c, p, r, a, g, cons, d in
            zip(sv.keys, sv.chrom, sv.pos, sv.ref, sv.alt, sv.genes, sv.consequence, sv.dosage)]


def _private_change(sv: SiteVariants, seed: int) -> SiteVariants:
    """Same site, different private data: the unaffected singleton's genotypes (het and hom ALT swapped, new rows
    only it carries) and name; the affected singleton's PED row names parents that no site genotypes."""
    rng = np.random.default_rng(seed)
    ped = sv.ped.rows()
    iids = [r[1] for r in ped]
    lone_u, lone_a = iids.index("U2b"), iids.index("U2a")
    ped[lone_u][0], ped[lone_u][1] = "RENAMED", "RENAMED7"
    ped[lone_a][2], ped[lone_a][3] = "NOWHERE1", "NOWHERE2"
    rows = _rows(sv)
    flips = 0
    for r in rows:  # het <-> hom ALT: it stays an unaffected carrier, so no released count can change
        if r[1] != "X" and r[7][lone_u] in (1, 2) and rng.random() < 0.7:
            r[7][lone_u] = 3 - r[7][lone_u]
            flips += 1
    assert flips
    for i in range(12):
        d = np.zeros(len(ped), np.int8)
        d[lone_u] = 1 + i % 2
        pos = 6_000_000 + 23 * i
        rows.append((f"2:{pos}:C:T", "2", pos, "C", "T", (GENES[i % len(GENES)],), "missense_variant", d))
    return SiteVariants.from_rows(Pedigree.from_rows(ped), rows)


def _run(svs, params, log):
    log["msgs"].clear()
    log["opened"].clear()
    log["reset"]()
    p = FilterParams.from_dict(dict(params))
    run = run_local(lambda ctx, i: run_filter(ctx, p, svs[i], {"min_cell_size": 2}), 3, args=lambda i: {"i": i})
    return run, {k: list(v) for k, v in log["msgs"].items()}, {k: list(v) for k, v in log["opened"].items()}


def _links_equal(label: str, a: np.ndarray, b: np.ndarray) -> bool:
    if label == "filter.trio_requests":
        return a.shape == b.shape  # random padding and keyed tags in a random order
    if label == "filter.trio_answers":
        return a.shape == b.shape and int(a.sum()) == int(b.sum())
    rows = lambda x: sorted(map(tuple, x.reshape(-1, x.shape[-1] if x.ndim > 1 else 7).tolist()))  # noqa: E731
    return a.shape == b.shape and rows(a) == rows(b)


def _shape(frm: str, tag: str, a: np.ndarray):
    """A message's structure: sender, label, dtype and shape; a dealer request by its content without
    its object key (a process-wide counter whose digits grow from one run to the next, not data)."""
    if tag.startswith("dealer/") and a.dtype == np.uint8:
        req = json.loads(a.tobytes().decode())
        req.get("args", {}).pop("key", None)
        return frm, _label(tag), json.dumps(req, sort_keys=True)
    return frm, _label(tag), a.dtype, a.shape


CASES = [
    {"model": "carrier", "max_cohort_af": "0.3", "table_size": 32, "lanes": 14},
    {"model": "dominant", "max_variants": 100},
    {"model": "denovo", "table_size": 48, "lanes": 14},
    {"model": "comphet", "genes": GENES, "lanes": 12},
    {"model": "comphet", "genes": GENES, "table_size": 40, "lanes": 14},
    {"model": "max-gene", "genes": GENES},
    {"model": "gene-diff", "genes": GENES},
]


@pytest.mark.parametrize("params", CASES, ids=lambda p: "-".join(str(v) for k, v in p.items() if k != "genes"))
def test_private_data_changes_nothing_anyone_receives(recorder, params):
    st = simulate(23, n_positions=50)
    base = [site_variants(st, s) for s in range(3)]
    changed = [base[0], base[1], _private_change(base[2], 5)]
    assert changed[2].ped.rows() != base[2].ped.rows() and len(changed[2]) > len(base[2])
    run_a, msgs_a, open_a = _run(base, params, recorder)
    run_b, msgs_b, open_b = _run(changed, params, recorder)

    key = "rows" if "rows" in run_a.results[0] else "genes"
    assert run_a.results[0][key] == run_b.results[0][key]
    if params["model"] in ("denovo", "comphet", "max-gene", "carrier", "dominant"):
        assert run_a.results[0][key]
    assert run_a.results[0]["trios"] == run_b.results[0]["trios"]
    assert set(msgs_a) == set(msgs_b) and "dealer" in msgs_a
    for who in msgs_a:
        sa = [_shape(f, t, a) for f, t, a in msgs_a[who]]
        sb = [_shape(f, t, a) for f, t, a in msgs_b[who]]
        assert sa == sb, f"message structure differs at {who}"
        for (f, t, a), (_, _, b) in zip(msgs_a[who], msgs_b[who]):
            lab = _label(t)
            if lab in LINKS:
                assert _links_equal(lab, a, b), f"{lab} from {f} to {who}"
            elif lab == "filter.study_metadata":
                assert np.array_equal(a, b)
    for who in open_a:
        assert [lab for lab, _ in open_a[who]] == [lab for lab, _ in open_b[who]]
        for (lab, xs), (_, ys) in zip(open_a[who], open_b[who]):
            assert all(np.array_equal(x, y) for x, y in zip(xs, ys)), f"{lab} opened to {who}"
    # no ledger entry of kind 'public' carries individual-level data
    for rep in run_b.reports.values():
        public = {e["label"] for e in rep["ledger"] if e["kind"] == "public"}
        assert public <= {"filter.study_metadata", "filter.job_key_contribution", "input.shapes"}, public


def test_renamed_ids_never_travel_in_clear(recorder):
    st = simulate(23, n_positions=50)
    svs = [site_variants(st, s) for s in range(3)]
    svs[2] = _private_change(svs[2], 5)
    _, msgs, _ = _run(svs, {"model": "denovo", "table_size": 48, "lanes": 14}, recorder)
    for who, lst in msgs.items():
        for f, t, a in lst:
            raw = a.tobytes()
            for secret in (b"RENAMED7", b"NOWHERE1", b"NOWHERE2"):  # long enough not to occur in random bytes
                assert secret not in raw, f"{secret!r} in {_label(t)} from {f} to {who}"
