"""The secure variant intersection: each site gets exactly the common variants, in the lead's order and orientation."""
import numpy as np
import pytest

from cipherome.genomics.errors import InputError
from cipherome.genomics.gwas.variants import common_variants, orientation_free_keys
from cipherome.genomics.io.blocks import VariantTable
from cipherome.mpc.local import run_local


def _table(rows):
    chrom, pos, ref, alt = zip(*rows)
    ids = [f"v{c}_{p}" for c, p in zip(chrom, pos)]
    return VariantTable.from_columns(np.array(chrom, dtype=object), np.array(pos), np.array(ids, dtype=object),
                                     np.array(ref, dtype=object), np.array(alt, dtype=object))


def _sites(seed: int, n_sites: int, m: int = 300):
    rng = np.random.default_rng(seed)
    universe = [("1" if i % 2 else "2", 1000 + 7 * i, "A", "G") for i in range(m)]
    shared = set(rng.choice(m, size=m // 2, replace=False).tolist())
    sites = []
    for s in range(n_sites):
        own = sorted(shared | set(rng.choice(m, size=m // 4, replace=False).tolist()))
        rows = []
        for i in own:
            c, p, r, a = universe[i]
            if s and rng.random() < 0.3:  # REF/ALT swapped at this site
                r, a = a, r
            rows.append((f"chr{c}" if s == 1 else c, p, r, a))
        if s == 2:
            rows.append(rows[0])  # a duplicated record: dropped at this site, so never common
        perm = rng.permutation(len(rows)) if s else np.arange(len(rows))
        sites.append(_table([rows[i] for i in perm]))
    return sites


@pytest.mark.parametrize("n_sites", [2, 3, 4])
def test_each_site_gets_exactly_the_common_variants(n_sites):
    sites = _sites(5, n_sites)
    run = run_local(lambda ctx: common_variants(ctx, sites[ctx.index], None, f"site{ctx.index}"), n_sites)
    keys = [orientation_free_keys(t) for t in sites]
    counts = [dict(zip(*np.unique(k.astype(str), return_counts=True))) for k, _ in keys]
    expect = [i for i, k in enumerate(keys[0][0]) if all(c.get(k) == 1 for c in counts)]
    assert len(expect) > 100
    lead = run.results[0]
    np.testing.assert_array_equal(lead.local_index, expect)
    np.testing.assert_array_equal(lead.lead_index, expect)
    for s, sv in enumerate(run.results):
        k, larger = keys[s]
        assert list(k[sv.local_index]) == list(keys[0][0][expect])
        np.testing.assert_array_equal(sv.flip, larger[sv.local_index] != keys[0][1][expect])
    assert run.results[2 if n_sites > 2 else 1].dropped_duplicates == (1 if n_sites > 2 else 0)
    # what each site received: its own common lanes, the order from the lead, the bound; nothing in clear
    for name, rep in run.reports.items():
        disclosed = {e["label"] for e in rep["ledger"] if e["kind"] == "disclosed"}
        assert disclosed <= {"gwas.variant_bound", "gwas.common_variants", "gwas.variant_order"}, name
    assert run.reports["dealer"]["ledger"] == []


def test_a_site_above_the_public_bound_is_refused():
    sites = _sites(6, 2)
    with pytest.raises(InputError, match="public bound"):
        run_local(lambda ctx: common_variants(ctx, sites[ctx.index], 64, f"site{ctx.index}"), 2)


@pytest.mark.parametrize("n_sites", [2, 3])
def test_consented_shared_lists_give_the_same_answer(n_sites):
    """share_variant_list at every site: keyed hashes exchanged, the same common variants, order and flips."""
    sites = _sites(7, n_sites)
    secure = run_local(lambda ctx: common_variants(ctx, sites[ctx.index], None, "s"), n_sites).results
    shared = run_local(lambda ctx: common_variants(ctx, sites[ctx.index], None, "s", shared_lists=True), n_sites)
    for a, b in zip(secure, shared.results):
        np.testing.assert_array_equal(a.local_index, b.local_index)
        np.testing.assert_array_equal(a.flip, b.flip)
        np.testing.assert_array_equal(a.lead_index, b.lead_index)
    labels = {e["label"] for e in shared.reports["p1"]["ledger"]}
    assert labels == {"gwas.study_key_contribution", "gwas.variant_list"}
