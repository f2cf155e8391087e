"""What a site sees during a filtering job depends on the other sites' variants only through the released candidates.

Two runs differ only in site p2's non-candidate variants (p2 gains variants that
only its unaffected individuals carry). Site p1 records every message it
receives (peers and dealer) and every value opened to it. Then: the message
structure is identical, the disclosed values are identical, the masked values
are uniform in both runs and indistinguishable between them, and no message
holds p2's fingerprints or the text of its non-candidate variants in clear.
Both runs use the same job key (normally fresh per job), so that the opened
per-slot candidate counts, a function of the released candidates and the key,
can be compared value for value.
"""
import numpy as np
import pytest
from scipy import stats

from cipherome.genomics.filtering import job as filtering
from cipherome.genomics.filtering.local import SiteVariants
from cipherome.genomics.filtering.params import FilterParams
from cipherome.genomics.filtering.reveal import encode_text
from cipherome.genomics.filtering.job import run_filter
from cipherome.mpc import inproc
from cipherome.mpc.local import run_local
from cipherome.mpc.runtime import Context
from tests.filter_sim import simulate, site_variants

PARAMS = {"model": "carrier", "max_cohort_af": "0.3", "table_size": 32, "lanes": 14}
WATCH = "p1"


@pytest.fixture()
def recorder(monkeypatch):
    log = {"msgs": [], "opened": [], "fps": []}
    recv, disclose, lane_table = inproc.InProcTransport.recv, Context.disclose, filtering.lane_table
    agree = filtering.agree_job_key

    def rec_recv(self, frm, tag, timeout=None):
        data = recv(self, frm, tag, timeout)
        if self.me == WATCH:
            log["msgs"].append((frm, tag, np.array(data, copy=True)))
        return data

    def rec_open(self, shares, label, *, to=None, bits=64):
        out = disclose(self, shares, label, to=to, bits=bits)
        if out is not None and self.me == WATCH:
            log["opened"].append((label, [np.array(o, copy=True) for o in out]))
        return out

    def rec_lanes(slots, fps, T, L, owner):
        fp, rows = lane_table(slots, fps, T, L, owner)
        if owner == "site p2":
            log["fps"].append(fp[fp > 0].copy())
        return fp, rows

    def fixed_key(ctx):  # the exchange still happens; the key is pinned so both runs use the same slots
        agree(ctx)
        return b"\x5a" * 32

    monkeypatch.setattr(filtering, "agree_job_key", fixed_key)
    monkeypatch.setattr(inproc.InProcTransport, "recv", rec_recv)
    monkeypatch.setattr(Context, "disclose", rec_open)
    monkeypatch.setattr(filtering, "lane_table", rec_lanes)
    return log


def _with_extra_unaffected_variants(sv: SiteVariants, n: int, seed: int) -> SiteVariants:
    rng = np.random.default_rng(seed)
    unaff = np.flatnonzero(sv.ped.affected != 1)
    rows = [(k, c, p, r, a, g, cons, d) for k, c, p, r, a, g, cons, d in
            zip(sv.keys, sv.chrom, sv.pos, sv.ref, sv.alt, sv.genes, sv.consequence, sv.dosage)]
    for i in range(n):
        d = np.zeros(len(sv.ped), np.int8)
        d[rng.choice(unaff, size=1 + i % len(unaff), replace=False)] = 1 + i % 2
        pos = 5_000_000 + 17 * i
        rows.append((f"2:{pos}:C:T", "2", pos, "C", "T", ("GENE9",), "missense_variant", d))
    return SiteVariants.from_rows(sv.ped, rows)


def _run(svs, log):
    log["msgs"].clear()
    log["opened"].clear()
    log["fps"].clear()
    p = FilterParams.from_dict(dict(PARAMS))
    run = run_local(lambda ctx, i: run_filter(ctx, p, svs[i], {"min_cell_size": 2}), 3, args=lambda i: {"i": i})
    return run.results[0], list(log["msgs"]), list(log["opened"]), np.concatenate(log["fps"])


def _label(tag: str) -> str:
    return tag.split("/", 1)[1] if "/" in tag else tag


def _full_ring(msgs) -> np.ndarray:
    """Masked openings of ring values (Beaver and comparison masks): uniform over Z_2^64."""
    parts = [a for frm, tag, a in msgs if frm != "dealer" and a.dtype == np.uint64
             and _label(tag) in ("eqz", "ltz", "matmul", "mul")]
    return np.concatenate(parts)


def _lane_words(msgs) -> np.ndarray:
    parts = [a for frm, tag, a in msgs if frm != "dealer" and a.dtype == np.uint64
             and _label(tag).endswith((".and", ".b2a"))]
    return np.concatenate(parts)


def test_received_messages_do_not_depend_on_other_sites_non_candidates(recorder):
    st = simulate(21, n_positions=60)
    base = [site_variants(st, s) for s in range(3)]
    changed = [base[0], base[1], _with_extra_unaffected_variants(base[2], 40, 1)]
    assert len(changed[2]) == len(base[2]) + 40
    res_a, msgs_a, open_a, fps_a = _run(base, recorder)
    res_b, msgs_b, open_b, fps_b = _run(changed, recorder)

    # same released answer, same disclosures, value for value
    assert res_a["rows"] == res_b["rows"] and res_a["rows"]
    assert [lab for lab, _ in open_a] == [lab for lab, _ in open_b]
    for (lab, xs), (_, ys) in zip(open_a, open_b):
        assert all(np.array_equal(x, y) for x, y in zip(xs, ys)), lab

    # same message structure: senders, tags, types and sizes, in order
    assert [(f, t, a.dtype, a.shape) for f, t, a in msgs_a] == [(f, t, a.dtype, a.shape) for f, t, a in msgs_b]

    # public metadata identical (sizes of p2's cohort did not change); key contributions are fresh randomness
    for (f, t, a), (_, _, b) in zip(msgs_a, msgs_b):
        if _label(t) == "filter.study_metadata":
            assert np.array_equal(a, b)

    # masked ring openings: uniform top bytes in both runs, and indistinguishable between runs
    top_a = (_full_ring(msgs_a) >> np.uint64(56)).astype(np.int64)
    top_b = (_full_ring(msgs_b) >> np.uint64(56)).astype(np.int64)
    assert top_a.size > 10_000
    for t in (top_a, top_b):
        assert stats.chisquare(np.bincount(t, minlength=256)).pvalue > 1e-4
    assert stats.ks_2samp(top_a, top_b).pvalue > 1e-4
    # boolean-circuit openings: the same lane bits set, each with frequency 1/2 in both runs
    bits = np.arange(64, dtype=np.uint64)
    fa = ((_lane_words(msgs_a)[:, None] >> bits) & np.uint64(1)).mean(axis=0)
    fb = ((_lane_words(msgs_b)[:, None] >> bits) & np.uint64(1)).mean(axis=0)
    lanes = fa > 0.1
    assert np.array_equal(lanes, fb > 0.1) and lanes.sum() >= 21
    assert np.all(np.abs(fa[lanes] - 0.5) < 0.05) and np.all(np.abs(fa - fb) < 0.05)

    # nothing of p2 in clear: its fingerprints, or the text of its variants that were not released
    released = {f"{r['chrom']}:{r['pos']}:{r['ref']}:{r['alt']}" for r in res_b["rows"]}
    secret_words = set()
    for k, g, c in zip(changed[2].keys, changed[2].genes, changed[2].consequence):
        if k not in released:
            secret_words.add(int(encode_text([f"{k}\t{','.join(g)}\t{c}"], 2)[0, 0]))
    for fps, msgs in ((fps_a, msgs_a), (fps_b, msgs_b)):
        wanted = set(fps.tolist())
        assert len(wanted) > 50
        for frm, tag, a in msgs:
            if a.dtype == np.uint64:
                vals = set(a.ravel().tolist())
                assert not vals & wanted, f"p2 fingerprint in clear in {tag} from {frm}"
                assert not vals & secret_words, f"p2 variant text in clear in {tag} from {frm}"
            elif a.dtype == np.uint8:
                assert b"2:5000" not in a.tobytes()
