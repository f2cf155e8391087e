"""What every party and the dealer receive in a GWAS depends on private data only through the documented outputs.

For each GWAS variant (linear, linear with --pca, logistic) three runs on a 3-site
study: the base study; the same with site p2 (and, separately, the lead p0) holding 40
variants no other site has; the same with one individual's phenotype changed at site p1. Every message
received by every party (the dealer included) is recorded at the in-process
transport, and every disclosure's opened value at its recipient. All randomness
is made a function of (party, call number) and the study key is pinned, so that
two runs on the same data would be identical message for message; then:

* the message structure (sender, tag, dtype, shape, in order) is identical for
  every party, and the dealer's requests (kind and shapes) are identical;
* public metadata is identical (the key contributions are fresh randomness);
* every disclosed value is identical, except the outputs that depend on the
  changed data: nothing at all for p2's non-shared variants, and only the
  phenotype-dependent outputs of ``PHENOTYPE_OUTPUTS`` for the phenotype change;
* every label of every run is documented in docs/threat_model.md.
"""
import hashlib
import json
import re
import threading

import numpy as np
import pytest

from cipherome.genomics.gwas import variants as gwas_variants
from cipherome.genomics.gwas.job import run_gwas
from cipherome.genomics.gwas.params import GwasParams
from cipherome.genomics.io.blocks import VariantTable
from cipherome.genomics.simulate import demo_config, simulate_study
from cipherome.genomics.site import SiteData
from cipherome.mpc import inproc
from cipherome.mpc import runtime
from cipherome.mpc.local import run_local
from cipherome.mpc.runtime import Context
from tests.threat_model_doc import documented_labels

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: disclosed outputs that are functions of the phenotype (docs/threat_model.md)
PHENOTYPE_OUTPUTS = {"gwas.covariate_moments", "gwas.beta_t_stat", "gwas.chisq", "logistic.null_beta",
                     "logistic.null_info", "logistic.score", "logistic.wald_step", "logistic.wald_var",
                     # each site's Neumann bound under the null model's weights (a per-site disclosure)
                     "logistic.missing_bound"}
#: labels whose content is fresh randomness in every run
RANDOM = {"gwas.study_key_contribution"}

MODES = {
    "linear": (dict(glm="linear"), "quant"),
    "pca": (dict(glm="linear", pca=2, pca_variants=250), "quant"),
    "logistic": (dict(glm="logistic", logistic_top=5), "binary"),
}


@pytest.fixture(scope="module")
def study():
    return simulate_study(demo_config().replace(n_samples=450, n_variants=300, seed=5))


def _sites(st, trait: str, extra: int = 0, extra_site: int = 2, pheno_change: bool = False) -> list[SiteData]:
    vt = VariantTable.from_columns(st.chrom.astype(str), st.pos, st.variant_id, st.ref, st.alt)
    sites = []
    for s in range(3):
        idx = st.site_samples(s)
        y = np.array((st.quant if trait == "quant" else st.binary)[idx], dtype=float)
        g = st.genotypes[:, idx]
        v = vt
        if s == 1 and pheno_change:
            i = int(np.flatnonzero(np.isfinite(y))[3])
            y[i] = 1.0 - y[i] if trait == "binary" else y[i] + 1.7
        if s == extra_site and extra:
            rng = np.random.default_rng(9)
            k = extra
            pos = 10**9 + 11 * np.arange(k)
            v = VariantTable.from_columns(np.concatenate([vt.chrom, np.full(k, "1", dtype=object)]),
                                          np.concatenate([vt.pos, pos]),
                                          np.concatenate([vt.id, [f"only_p2_{i}" for i in range(k)]]),
                                          np.concatenate([vt.ref, np.full(k, "A", dtype=object)]),
                                          np.concatenate([vt.alt, np.full(k, "C", dtype=object)]))
            g = np.concatenate([g, rng.integers(0, 3, size=(k, len(idx))).astype(g.dtype)])
        sites.append(SiteData.from_arrays(st.iid[idx], y, st.covariates[idx], list(st.covariate_names), v, g,
                                          name=f"site{s + 1}"))
    return sites


@pytest.fixture()
def recorder(monkeypatch):
    log = {"recv": {}, "disclosed": {}}
    counters: dict[str, int] = {}
    recv, disclose, agree = inproc.InProcTransport.recv, Context.disclose, gwas_variants.agree_job_key

    def rec_recv(self, frm, tag, timeout=None):
        data = recv(self, frm, tag, timeout)
        log["recv"].setdefault(self.me, []).append((frm, tag, np.array(data, copy=True)))
        return data

    def rec_disclose(self, shares, label, *, to=None, bits=64):
        out = disclose(self, shares, label, to=to, bits=bits)
        if out is not None:
            log["disclosed"].setdefault(self.me, []).append((label, [np.array(o, copy=True) for o in out]))
        return out

    def det_seed():  # randomness as a function of (party thread, call number): runs are reproducible
        name = threading.current_thread().name
        counters[name] = counters.get(name, 0) + 1
        return hashlib.sha256(f"{name}/{counters[name]}".encode()).digest()[:16]

    def fixed_key(ctx, label):  # the exchange still happens; the key is pinned
        agree(ctx, label)
        return b"\x5a" * 32

    monkeypatch.setattr(inproc.InProcTransport, "recv", rec_recv)
    monkeypatch.setattr(Context, "disclose", rec_disclose)
    monkeypatch.setattr(runtime, "new_seed", det_seed)
    monkeypatch.setattr(gwas_variants, "agree_job_key", fixed_key)

    def run(sites, params: GwasParams):
        log["recv"], log["disclosed"] = {}, {}
        counters.clear()
        r = run_local(lambda ctx: run_gwas(ctx, params, sites[ctx.index]), 3, frac=params.frac, timeout=600)
        return r, log["recv"], log["disclosed"]

    return run


def _label(tag: str) -> str:
    """The opening's label from a message tag ``seq/label``; a round that merges several openings
    (``mpc.pipeline``) is tagged ``seq/first+more`` and per wire width ``#bytes``: the first label."""
    label = tag.split("/", 1)[1] if "/" in tag else tag
    return re.sub(r"(\+\d+)?(#\d+)?$", "", label)


def _request(a: np.ndarray) -> dict:
    """A dealer request without its object key (a process-wide counter, not data)."""
    req = json.loads(a.tobytes().decode())
    req["args"].pop("key", None)
    return req


def _structure(msgs):
    return [(frm, t, _request(a)) if t.startswith("dealer/") and a.dtype == np.uint8
            else (frm, _label(t), a.dtype.str, a.shape) for frm, t, a in msgs]


def _compare(a, b, own_changes: dict[str, set], changed_labels: set) -> set:
    """Assert runs a and b agree (module docstring); returns the labels whose disclosed values differed."""
    (run_a, recv_a, disc_a), (run_b, recv_b, disc_b) = a, b
    assert set(recv_a) == set(recv_b) == {"p0", "p1", "p2", "dealer"}
    for party in recv_a:
        assert _structure(recv_a[party]) == _structure(recv_b[party]), party
    # (the dealer's requests, kind and shapes, are part of its structure above)
    # public metadata identical (shares of masked openings and disclosures may travel as their
    # low bytes, uint8, when only their low bits are needed: those are shares, not metadata)
    shares = {e["label"] for rep in run_a.reports.values() for e in rep["ledger"] if e["kind"] != "public"}
    for party, msgs in recv_a.items():
        for (frm, t, x), (_, _, y) in zip(msgs, recv_b[party]):
            if (x.dtype != np.uint64 and not t.startswith("dealer/") and _label(t) not in RANDOM | changed_labels
                    and _label(t) not in shares):
                assert np.array_equal(x, y), f"public {t} from {frm} to {party} differs"
    moved = set()
    for party in disc_a:
        assert [lab for lab, _ in disc_a[party]] == [lab for lab, _ in disc_b[party]], party
        for (lab, xs), (_, ys) in zip(disc_a[party], disc_b[party]):
            if all(np.array_equal(x, y) for x, y in zip(xs, ys)):
                continue
            moved.add(lab)
            assert lab in changed_labels | own_changes.get(party, set()), f"{lab} to {party} depends on private data"
    # every label of both runs documented
    documented = documented_labels()
    for run in (run_a, run_b):
        for name, rep in run.reports.items():
            labels = {e["label"] for e in rep["ledger"]}
            assert labels <= documented, (name, labels - documented)
    return moved


@pytest.mark.parametrize("mode", list(MODES))
def test_gwas_receives_nothing_of_private_data_beyond_the_outputs(study, recorder, mode):
    kw, trait = MODES[mode]
    params = GwasParams(pheno_name="quant_trait" if trait == "quant" else "disease", maf=0.02, block=128, **kw)
    base = recorder(_sites(study, trait), params)
    more = recorder(_sites(study, trait, extra=40), params)
    lead_more = recorder(_sites(study, trait, extra=40, extra_site=0), params)
    pheno = recorder(_sites(study, trait, pheno_change=True), params)

    # same study answer where the private change must not matter
    ra, rb = base[0].results[0], more[0].results[0]
    assert ra["n_variants"] == rb["n_variants"] == study.n_variants
    np.testing.assert_array_equal(ra["tested"], rb["tested"])

    # p2's non-shared variants: nothing moves at all (the intersection's messages have public shapes)
    assert _compare(base, more, {}, set()) == set()
    # the same at the lead, whose cuckoo placement they change: still nothing moves
    assert _compare(base, lead_more, {}, set()) == set()
    # one phenotype value: only phenotype-dependent outputs move, and they do move
    moved = _compare(base, pheno, {}, PHENOTYPE_OUTPUTS)
    assert moved and moved <= PHENOTYPE_OUTPUTS
    assert PHENOTYPE_OUTPUTS <= documented_labels()


def test_the_same_data_gives_identical_messages(study, recorder):
    """The recorder's premise: with the randomness pinned, two runs on the same data are identical."""
    params = GwasParams(pheno_name="quant_trait", maf=0.02, block=128)
    a = recorder(_sites(study, "quant"), params)
    b = recorder(_sites(study, "quant"), params)
    assert _compare(a, b, {}, set()) == set()
    for party in a[1]:
        for (frm, t, x), (_, _, y) in zip(a[1][party], b[1][party]):
            if _label(t) not in RANDOM and party != "dealer":  # the dealer's requests: compared above
                assert np.array_equal(x, y), (party, t)
