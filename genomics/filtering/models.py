"""Secure operators of variant filtering: cohort rules, inheritance models across sites, and gene-level set operations.

Every rule is a conjunction of linear inequalities "form >= 0" in integer counts
(carriers, homozygotes, alleles), so that a whole table is decided by one batched
comparison: forms are summed over sites for free (each site adds its own counts)
and, in the hashed key space, over the lanes whose fingerprints match
(``filtering.align``). Anchors that must not count (empty lanes, variants already
held by an earlier site, a chromosome the model excludes) get a large negative
offset instead of a multiplication. Results are 0/1 shares; nothing is opened
here except the gene-level answers, which are the output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from cipherome.mpc.shares import Shared, concat, stack
from cipherome.protocols import compare
from cipherome.protocols.arith import mul
from cipherome.protocols.permute import PrivatePermutation, permute

from cipherome.genomics.filtering.align import OwnerTable, aligned_sums, match_tables
from cipherome.genomics.filtering.features import COUNTS, PCLASSES
from cipherome.genomics.io.ploidy import AUTOSOMAL, CHR_X

__all__ = [
    "Cohort",
    "LinearRule",
    "cohort_rule",
    "all_nonneg",
    "range_bits",
    "cohort_anchor_bits",
    "denovo_anchor_bits",
    "comphet_anchor_bits",
    "comphet_cuckoo_bits",
    "comphet_cuckoo_rounds",
    "rule_on_counts",
    "ltz_rounds",
    "cohort_rounds",
    "denovo_rounds",
    "comphet_rounds",
    "denovo_on_classes",
    "comphet_on_classes",
    "gene_max",
    "gene_top",
    "gene_all",
    "gene_diff",
    "release_counts",
]

_C = {name: j for j, name in enumerate(COUNTS)}


@dataclass
class Cohort:
    """Public cohort sizes: affected / unaffected / all individuals and alleles per chromosome class."""

    n_aff: int
    n_unaff: int
    n_all: int
    totals: dict = field(default_factory=dict)  # pclass -> alleles when no call is missing


@dataclass
class LinearRule:
    """A cohort rule: qualify iff every form counts @ coeff[:, c] + const[pclass][c] >= 0.

    coeff ``(8, C)`` int64 over :data:`COUNTS`; const: pclass -> ``(C,)`` int64,
    a class missing from ``const`` is excluded by the model; bound: the largest
    |form| of a counted anchor; kill = 2 bound + 1, the offset that fails one.
    """

    name: str
    coeff: np.ndarray
    const: dict
    bound: int
    release: tuple  # count columns (names) released with each candidate

    @property
    def forms(self) -> int:
        return int(self.coeff.shape[1])

    @property
    def kill(self) -> int:
        return 2 * self.bound + 1

    def constants(self, pclass: np.ndarray) -> np.ndarray:
        """``(r, C)`` int64 constants per row; excluded classes get -kill in form 0."""
        out = np.zeros((len(pclass), self.forms), np.int64)
        for pc in PCLASSES:
            sel = np.asarray(pclass) == pc
            if pc in self.const:
                out[sel] = self.const[pc]
            else:
                out[sel, 0] = -self.kill
        return out


def cohort_rule(model: str, cohort: Cohort, min_affected: int | None = None, max_unaffected: int = 0,
                max_cohort_af: str | float | None = None) -> LinearRule:
    """The linear forms of a cohort model (``carrier``, ``dominant``, ``recessive``, ``xlinked``).

    carrier:   affected carriers >= k (default 1), unaffected carriers <= u (default 0);
    dominant:  carrier with k = every affected individual, u = 0;
    recessive: affected homozygous ALT >= k (default all affected), no unaffected
               homozygote, autosomes only;
    xlinked:   affected males with ALT plus affected homozygous females >= k
               (default all affected), no such unaffected individual, X only.
    Every model optionally adds cohort AF = AC / AN <= t, written exactly as
    num * (TOT - miss) - den * ac >= 0 with t = num/den. With u = 0 the two count
    conditions fold into one form, x_aff - k - (N_aff + 1) x_unaff >= 0.
    """
    na = cohort.n_aff
    if na == 0:
        raise ValueError("the study has no affected individuals (PED phenotype 2); cohort models need some")
    if model == "carrier":
        k = 1 if min_affected is None else int(min_affected)
        a, u, classes = "ca", "cu", PCLASSES
    elif model == "dominant":
        k, max_unaffected = (na if min_affected is None else int(min_affected)), 0
        a, u, classes = "ca", "cu", PCLASSES
    elif model == "recessive":
        k = na if min_affected is None else int(min_affected)
        a, u, classes = "ha", "hu", (AUTOSOMAL,)
    elif model == "xlinked":
        k = na if min_affected is None else int(min_affected)
        a, u, classes = "xa", "xu", (CHR_X,)
    else:
        raise ValueError(f"unknown cohort model {model!r}")
    if k < 1:
        raise ValueError("min_affected must be at least 1")
    uu = int(max_unaffected or 0)
    cols, consts = [], []
    if uu == 0:
        c = np.zeros(len(COUNTS), np.int64)
        c[_C[a]], c[_C[u]] = 1, -(na + 1)
        cols.append(c)
        consts.append(-k)
    else:
        c = np.zeros(len(COUNTS), np.int64)
        c[_C[a]] = 1
        cols.append(c)
        consts.append(-k)
        c = np.zeros(len(COUNTS), np.int64)
        c[_C[u]] = -1
        cols.append(c)
        consts.append(uu)
    af = None
    if max_cohort_af is not None:
        t = Fraction(str(max_cohort_af)).limit_denominator(1 << 20)
        if not 0 <= t <= 1:
            raise ValueError("max_cohort_af must be in [0, 1]")
        if t < 1:
            af = t
            c = np.zeros(len(COUNTS), np.int64)
            c[_C["miss"]], c[_C["ac"]] = -t.numerator, -t.denominator
            cols.append(c)
            consts.append(None)
    coeff = np.stack(cols, axis=1)
    const = {}
    for pc in classes:
        const[pc] = np.array([t.numerator * cohort.totals.get(pc, 0) if v is None else v
                              for v in consts], np.int64)
    n = max(cohort.n_all, 1)
    maxima = np.array([n, n, n, n, n, n, 2 * n, 2 * n], np.int64)
    bound = 1
    for j in range(coeff.shape[1]):
        cmax = max((abs(int(v[j])) for v in const.values()), default=0)
        bound = max(bound, int(np.abs(coeff[:, j]) @ maxima) + cmax)
    release = (a, u, "ac", "an")
    del af
    return LinearRule(model, coeff, const, bound, release)


def range_bits(magnitude: int) -> int:
    """Comparison width for integers of absolute value <= magnitude (two's complement plus a spare bit)."""
    return min(64, max(3, int(magnitude).bit_length() + 2))


def all_nonneg(v: Shared, bits: int, kill: int) -> Shared:
    """q = AND_c [v[..., c] >= 0] as 0/1 shares of shape v.shape[:-1], without a multiplication.

    Math: b_c = [v_c >= 0] for c >= 1 (one batched ltz), then
    q = [v_0 - kill * sum_{c >= 1} (1 - b_c) >= 0] (a second ltz), which is the AND
    because kill exceeds the largest v_0 of a qualifying element. Rounds: one ltz
    (ceil(log2(bits - 1)) + 1) per step, one step if C = 1. Traffic: one comparison
    per form and element (8 bytes of masked value plus ~bits * 1.5 / 32 AND-layer
    words per peer), i.e. no Beaver product for the conjunction.
    """
    c = v.shape[-1]
    if c == 1:
        return 1 - compare.ltz(v[..., 0], bits)
    rest = 1 - compare.ltz(v[..., 1:], bits)
    v0 = v[..., 0] - ((c - 1) - rest.sum(axis=-1)) * kill
    return 1 - compare.ltz(v0, range_bits((1 << (bits - 2)) + kill * (c - 1)))


def ltz_rounds(bits: int) -> int:
    """Rounds of one ``compare.ltz`` on ``bits``: the opening, ceil(log2(bits - 1)) - 1 AND layers, the B2A."""
    return math.ceil(math.log2(max(bits - 1, 2))) + 1


EQ_ROUNDS = ltz_rounds(49)  # the 48-bit fingerprint equality of ``align.match_tables``: 7


def cohort_rounds(rule: LinearRule, n: int, lanes: int) -> int:
    """Rounds of one ``cohort_anchor_bits`` call (a chunk of slots): equality, products, the rule's comparisons."""
    bits = range_bits(rule.kill * (n * lanes + 2) + rule.bound)
    wide = ltz_rounds(bits) + (ltz_rounds(range_bits((1 << (bits - 2)) + rule.kill * (rule.forms - 1)))
                               if rule.forms > 1 else 0)
    return EQ_ROUNDS + 1 + wide + ltz_rounds(range_bits(n * lanes + 2))


def denovo_rounds(lanes: int) -> int:
    """Rounds of one ``denovo_anchor_bits`` call (a chunk of trios): equality and one small comparison."""
    return EQ_ROUNDS + ltz_rounds(range_bits(2 * lanes + 2))


def comphet_rounds(lanes: int, buckets: int) -> int:
    """Rounds of one ``comphet_anchor_bits`` call: equality, products, two comparisons, two multiplications."""
    return EQ_ROUNDS + 1 + ltz_rounds(range_bits(4 * lanes + 8)) + ltz_rounds(range_bits(buckets * lanes + 2)) + 2


def comphet_cuckoo_rounds(lanes: int, bins: int) -> int:
    """Rounds of one ``comphet_cuckoo_bits`` call: equality, carrier products, one comparison, two private
    permutations, one comparison, a multiplication, two permutations back, a multiplication."""
    return EQ_ROUNDS + 1 + ltz_rounds(range_bits(2 * lanes + 1)) + 2 + ltz_rounds(range_bits(2 * bins + 2)) + 1 + 2 + 1


def _penalty_column(pen: Shared, kill: int, forms: int) -> Shared:
    """(T, L, C) with kill * pen in form 0 and zeros elsewhere."""
    cols = [pen * kill] + [Shared.zeros(pen.ctx, pen.shape) for _ in range(forms - 1)]
    return stack(cols, axis=2)


def cohort_anchor_bits(ctx, anchors: list[OwnerTable], matched: list[OwnerTable], contrib: list[Shared],
                       own: list[Shared], last_ok: Shared, rule: LinearRule) -> list[Shared]:
    """Per site i a (T, La_i) 0/1 share: anchor lane (s, l) of site i holds a qualifying variant no earlier site holds.

    Each site has anchor lanes (``anchors[i]``) and lanes that other sites' anchors
    are matched against (``matched[i]``): either one hashed lane table for both
    (the same object; T slots x L lanes, T L^2 tests per pair of sites) or a cuckoo
    table of anchors (one lane per bin) against a simple-hashing table (every
    candidate bin, Ls lanes; B Ls tests per ordered pair). E_ij = match(anchor
    lanes of i, matched lanes of j). Math, for site i's anchor a with forms o_a
    (own counts and constants; -kill in form 0 if empty) and site j's per-lane
    contributions f_j (counts @ coeff, over matched lanes):
      V_a = o_a + sum_{j > i} (E_ij f_j)_a - kill * [sum_{j < i} (E_ij 1)_a] e_0,
      r_a = AND_c [V_a,c >= 0].
    Only later sites are added: if an earlier site holds the variant, its own
    anchor already sums every later site and this one is killed (counted once).
    The last site's anchors get no contribution, so that site decides
    ok_a = AND_c [o_a,c >= 0] in plaintext (``last_ok``) and only
    r_a = [ok_a - 1 - sum_{j < last} (E_last,j 1)_a >= 0] is compared (a few bits).
    With one table per site E_ji = E_ij^T is not matched again.
    Rounds: 7 (fingerprint equality) + 1 (E f products) + 2 ltz (1 if C = 1).
    Traffic per slot and party: the equality tests (~23 bytes per peer each),
    8 (j La Lm + Lm C) bytes per later site j and peer for the products (f_j masked once),
    (n - 1) La C wide comparisons (~15 bytes per peer each) and La narrow ones.
    """
    n = len(anchors)
    shared_tab = all(a is m for a, m in zip(anchors, matched))
    need = [(i, j) for i in range(n) for j in range(n) if i != j]
    direct = [(i, j) for i, j in need if not (shared_tab and j < i)]
    E = dict(zip(direct, match_tables(ctx, [(anchors[i], matched[j]) for i, j in direct])))
    for i, j in need:
        if (i, j) not in E:
            E[(i, j)] = E[(j, i)].transpose(0, 2, 1)
    later = [(i, j) for i in range(n - 1) for j in range(i + 1, n)]
    sums = dict(zip(later, aligned_sums([(E[p], contrib[p[1]]) for p in later])))
    C = rule.forms

    def penalty(i):
        pen = None
        for j in range(i):
            p = E[(i, j)].sum(axis=2)
            pen = p if pen is None else pen + p
        return pen

    vs = []
    for i in range(n - 1):
        v = own[i]
        for j in range(i + 1, n):
            v = v + sums[(i, j)]
        if i:
            v = v - _penalty_column(penalty(i), rule.kill, C)
        vs.append(v.reshape(-1, C))
    L = max(t.L for t in matched)
    bits = range_bits(rule.kill * (n * L + 2) + rule.bound)
    q = all_nonneg(concat(vs), bits, rule.kill)
    q_last = 1 - compare.ltz((last_ok - 1 - penalty(n - 1)).ravel(), range_bits(n * L + 2))
    q = concat([q, q_last])
    out, pos = [], 0
    for t in anchors:
        size = t.T * t.L
        out.append(q[pos:pos + size].reshape(t.T, t.L))
        pos += size
    return out


def denovo_anchor_bits(ctx, trios: list[tuple[OwnerTable, OwnerTable, OwnerTable]], own: list[Shared]) -> list[Shared]:
    """Per trio a (T, L) 0/1 share over the child's lanes: de novo = no lane of either parent matches.

    The child's table lists its heterozygous variants (a cuckoo table: one lane per
    bin), each parent's table the variants where the parent is not a called
    homozygous reference (ALT or missing; simple hashing: every candidate bin).
    own = -1 on empty child lanes, else 0. Math:
      r_a = [own_a - sum_l' E_cf[a, l'] - sum_l' E_cm[a, l'] >= 0].
    Rounds: 7 (equality) + ceil(log2(bits - 1)) + 1 with bits ~ log2(2L + 2) + 2.
    Traffic per trio and party: 2 T L_c L_p equality tests (2 B L_p with cuckoo tables) and T L_c small comparisons.
    """
    pairs = []
    for c, f, m in trios:
        pairs += [(c, f), (c, m)]
    E = match_tables(ctx, pairs)
    vs = []
    for k, (c, _f, _m) in enumerate(trios):
        v = own[k] - E[2 * k].sum(axis=2) - E[2 * k + 1].sum(axis=2)
        vs.append(v.ravel())
    L = max(max(f.L, m.L) for _c, f, m in trios)
    q = 1 - compare.ltz(concat(vs), range_bits(2 * L + 2))
    out, pos = [], 0
    for c, _f, _m in trios:
        size = c.T * c.L
        out.append(q[pos:pos + size].reshape(c.T, c.L))
        pos += size
    return out


def _parent_matches(ctx, trios: list[tuple], carriers: list[tuple]) -> list[tuple]:
    """Per trio (P_f, P_m, Cr_f, Cr_m), each (T, L_child): the father's and mother's lanes matching each child lane,
    and those of them that are ALT carriers (E @ carrier). All pairs in one equality test (7 rounds) and all
    carrier products in one Beaver round."""
    pairs = []
    for c, f, m in trios:
        pairs += [(c, f), (c, m)]
    E = match_tables(ctx, pairs)
    items = []
    for k, (cf, cm) in enumerate(carriers):
        items += [(E[2 * k], cf), (E[2 * k + 1], cm)]
    cr = aligned_sums(items)
    return [(E[2 * k].sum(axis=2), E[2 * k + 1].sum(axis=2), cr[2 * k].reshape(c.T, c.L),
             cr[2 * k + 1].reshape(c.T, c.L)) for k, (c, _f, _m) in enumerate(trios)]


def comphet_anchor_bits(ctx, trios: list[tuple], carriers: list[tuple], own: list[Shared], genes: int,
                        buckets: int) -> list[tuple]:
    """Per trio: (r, pat, mat), each (T, L) 0/1 over the child's gene-partitioned heterozygous lanes.

    Tables per trio (child, father, mother): the child's heterozygous variants, each
    parent's variants that are not a called homozygous reference, with a 0/1 lane
    value "ALT carrier" (``carriers``: father's and mother's (T, L, 1) shares);
    slot = gene * buckets + hash. For a child lane a, P = matched parent lanes and
    Cr = matched carrier lanes (E @ carrier), own = -(L + 2) on empty lanes:
      pat_a = [Cr_f - 1 - 2 P_m + own_a >= 0]   (father carries, mother called hom-ref),
      mat_a = [Cr_m - 1 - 2 P_f + own_a >= 0],
      comphet_g = [sum_{a in g} pat_a >= 1] * [sum_{a in g} mat_a >= 1],
      r_a = (pat_a + mat_a) * comphet_{g(a)}.
    Rounds: 7 (equality) + 1 (carrier products) + 2 comparisons (~5 rounds each) + 2
    multiplications. Traffic per trio: 2 T L^2 equality tests, 2 T (L^2 + L) product
    openings, 2 T L + 2 G small comparisons, G + T L products.
    """
    forms = []
    for k, (pf, pm, crf, crm) in enumerate(_parent_matches(ctx, trios, carriers)):
        forms += [(crf - 1 - pm * 2 + own[k]).ravel(), (crm - 1 - pf * 2 + own[k]).ravel()]
    L = max(t[0].L for t in trios)
    ge = 1 - compare.ltz(concat(forms), range_bits(4 * L + 8))
    pats, mats, pos = [], [], 0
    for c, _f, _m in trios:
        size = c.T * c.L
        pats.append(ge[pos:pos + size])
        mats.append(ge[pos + size:pos + 2 * size])
        pos += 2 * size
    width = buckets * L
    per_gene = []
    for p, m in zip(pats, mats):
        per_gene += [p.reshape(genes, width).sum(axis=1) - 1, m.reshape(genes, width).sum(axis=1) - 1]
    has = 1 - compare.ltz(concat(per_gene), range_bits(width + 2))
    nt = len(trios)
    comp = mul(stack([has[2 * k * genes:(2 * k + 1) * genes] for k in range(nt)]),
               stack([has[(2 * k + 1) * genes:(2 * k + 2) * genes] for k in range(nt)]))
    both = stack([(p + m).reshape(genes, width) for p, m in zip(pats, mats)])
    r = mul(both, comp.reshape(nt, genes, 1))
    out = []
    for k, (c, _f, _m) in enumerate(trios):
        out.append((r[k].reshape(c.T, c.L), pats[k].reshape(c.T, c.L), mats[k].reshape(c.T, c.L)))
    return out


def _prefix(x: Shared, lead_zero: bool) -> Shared:
    """Inclusive prefix sums over rows (local); with ``lead_zero`` a zero row first: [0, x0, x0 + x1, ...]."""
    s = np.cumsum(x.data, axis=0, dtype=np.uint64)
    if lead_zero:
        s = np.concatenate([np.zeros((1,) + s.shape[1:], np.uint64), s])
    return Shared(x.ctx, s, x.frac)


def comphet_cuckoo_bits(ctx, trios: list[tuple], carriers: list[tuple], sorts: list[tuple[PrivatePermutation, ...]],
                        groups: list[Shared]) -> list[Shared]:
    """Per trio a (B, 1) 0/1 share over the child's cuckoo bins: the bin holds a paternal-only or maternal-only
    heterozygous variant of a gene in which the child has both (compound heterozygous).

    Tables per trio (``trios``: child, father, mother): the child's cuckoo table of its
    heterozygous (variant, listed gene) entries, one per bin, and each parent's
    simple table of its entries not called hom-ref (Ls lanes), with a 0/1 lane value
    "ALT carrier" (``carriers``: (B, Ls, 1) shares). A variant of both sides meets
    itself in exactly one bin, so matching costs 2 B Ls equality tests per trio (not
    2 T L^2). For child bin b with matched parent lanes P and matched carrier lanes
    Cr = E @ carrier (an empty bin matches only empty parent lanes, whose carrier
    value is 0, so it fails both forms):
      pat_b = [Cr_f - 1 - 2 P_m >= 0],   mat_b = [Cr_m - 1 - 2 P_f >= 0].
    Per-gene sums without a public gene layout (the bin -> gene map is the child
    site's secret): ``sorts`` = (pi1, pi2), the child site's private permutations
    (``protocols.permute``). pi1 sorts the bins by gene (empty bins last), so the
    child's genes are contiguous runs starting at s_0 < s_1 < ... < s_{J-1}, s_J = K
    (occupied bins); with prefix sums S' = [0, cumsum(pat, mat)] (B + 1 rows), gene j
    sums to S'[s_{j+1}] - S'[s_j]. pi2 puts s_0, ..., s_J first (the other positions
    after), so D_j = Z_{j+1} - Z_j with Z = S'[pi2] is gene j's sum for j < J and
    garbage in [-B, B] after; ``groups`` (B,) is the child's 0/1 input u_j = [j < J], so
      has_j = [D_j - 1 - (B + 1)(1 - u_j) >= 0]  (pat and mat columns, one comparison),
      comp_j = has_pat_j has_mat_j                (one multiplication; 0 for j >= J).
    Back to the bins: Delta_j = comp_j - comp_{j-1} put at position s_j by pi2^-1
    (positions of j > J receive 0) and summed as a prefix gives comp of its gene at
    every sorted position (0 on empty bins); pi1^-1 returns it to bin order, and
      r_b = (pat_b + mat_b) comp_{g(b)}   (pat and mat exclude each other).
    Rounds: 7 + 1 + ltz + 2 + ltz + 1 + 2 + 1 (``comphet_cuckoo_rounds``). Traffic per
    trio and party: 2 B Ls equality tests and carrier-product openings, 2 B small
    and 2 B wider comparisons, O(B) for the four permutations and two products.
    """
    forms = []
    for pf, pm, crf, crm in _parent_matches(ctx, trios, carriers):
        forms += [(crf - 1 - pm * 2).ravel(), (crm - 1 - pf * 2).ravel()]
    Ls = max(max(f.L, m.L) for _c, f, m in trios)
    ge = 1 - compare.ltz(concat(forms), range_bits(2 * Ls + 1))
    B = [c.T for c, _f, _m in trios]
    pm, pos = [], 0
    for b in B:
        pm.append(stack([ge[pos:pos + b], ge[pos + b:pos + 2 * b]], axis=1))  # (B, 2): pat, mat
        pos += 2 * b
    xs = permute([(s[0], y) for s, y in zip(sorts, pm)], label="filter.comphet_sort", also=[s[1] for s in sorts])
    zs = permute([(s[1], _prefix(x, True)) for s, x in zip(sorts, xs)], label="filter.comphet_genes")
    ds = []
    for z, u, b in zip(zs, groups, B):
        d = z[1:] - z[:-1]
        ds.append((d - 1 - ((1 - u) * (b + 1)).reshape(b, 1)).ravel())
    has = 1 - compare.ltz(concat(ds), range_bits(2 * max(B) + 2))
    hp, hm, pos = [], [], 0
    for b in B:
        part = has[pos:pos + 2 * b].reshape(b, 2)
        hp.append(part[:, 0])
        hm.append(part[:, 1])
        pos += 2 * b
    comp = mul(concat(hp), concat(hm))
    deltas, pos = [], 0
    for b in B:
        cj = comp[pos:pos + b]
        zero = Shared.zeros(ctx, (1,))
        deltas.append(concat([cj, zero]) - concat([zero, cj]))
        pos += b
    vs = permute([(s[1], d) for s, d in zip(sorts, deltas)], inverse=True, label="filter.comphet_genes_back")
    ys = permute([(s[0], _prefix(v, False)[:b]) for s, v, b in zip(sorts, vs, B)], inverse=True,
                 label="filter.comphet_sort_back")
    r = mul(concat([x[:, 0] + x[:, 1] for x in pm]), concat(ys))
    out, pos = [], 0
    for b in B:
        out.append(r[pos:pos + b].reshape(b, 1))
        pos += b
    return out


# ----------------------------------------------------------------------------- exact (catalogue) evaluation
def rule_on_counts(counts: Shared, pclass: np.ndarray, rule: LinearRule) -> Shared:
    """Exact rule on study-wide counts of public keys: counts (K, 8) shared, pclass (K,) public -> (K,) 0/1.

    Forms are local (public coefficients); then ``all_nonneg``: one or two ltz.
    """
    cols = []
    const = rule.constants(pclass)
    for c in range(rule.forms):
        f = Shared.zeros(counts.ctx, (counts.shape[0],))
        for j in range(len(COUNTS)):
            w = int(rule.coeff[j, c])
            if w:
                f = f + counts[:, j] * w
        cols.append(f + const[:, c])
    return all_nonneg(stack(cols, axis=1), range_bits(rule.kill + rule.bound), rule.kill)


def denovo_on_classes(het: Shared, fpres: Shared, mpres: Shared) -> Shared:
    """Exact de novo bit per (trio, key): [het - 1 - fpres - mpres >= 0] (one small ltz)."""
    return 1 - compare.ltz(het - 1 - fpres - mpres, 4)


def comphet_on_classes(het: Shared, fc: Shared, fp: Shared, mc: Shared, mp: Shared) -> tuple[Shared, Shared]:
    """Exact paternal-only and maternal-only bits per (trio, key), from 0/1 classes (child het, parent ALT
    carrier, parent not called hom-ref): pat = [het + fc - 2 - 3 mp >= 0], mat = [het + mc - 2 - 3 fp >= 0]
    (one batched 6-bit ltz)."""
    pat = het + fc - 2 - mp * 3
    mat = het + mc - 2 - fp * 3
    n = het.size
    ge = 1 - compare.ltz(concat([pat.ravel(), mat.ravel()]), 6)
    return ge[:n].reshape(het.shape), ge[n:].reshape(het.shape)


# ----------------------------------------------------------------------------- gene level
def _open_bits(ctx, x: Shared, label: str) -> np.ndarray:
    return ctx.open(x, label).astype(bool)


def gene_max(ctx, counts: Shared, n_max: int, label: str = "filter.max_genes") -> tuple[np.ndarray, Shared]:
    """Genes with the largest count (ties included; none if every count is 0): (G,) bool opened, and the max (shared).

    Math: M = max_g x_g by a tournament (ceil(log2 G) levels of one comparison and
    one selection each), then q_g = [(N + 1)(x_g - M) + x_g - 1 >= 0], which is
    x_g = M >= 1 for counts in [0, N]. Rounds: ceil(log2 G) (ltz + 1) + ltz + 1
    (opening). Traffic: about G comparisons and G products in total, plus G bits opened.
    """
    bits = range_bits(2 * (n_max + 1) ** 2 + 2)
    m = compare.max(counts, axis=0, bits=range_bits(n_max + 2))
    q = 1 - compare.ltz((counts - m) * (n_max + 1) + counts - 1, bits)
    return _open_bits(ctx, q, label), m


def gene_top(ctx, counts: Shared, n_max: int, top: int) -> list[tuple[np.ndarray, Shared]]:
    """The top genes by count: repeated ``gene_max``, the genes found set to -1 (public positions), until at least
    ``top`` genes are out or no count >= 1 is left. Returns [(genes found (G,) bool, their count (shared)), ...].
    Rounds: (number of distinct counts released) x the rounds of ``gene_max``."""
    x = counts
    found = np.zeros(counts.shape[0], bool)
    out = []
    while found.sum() < top:
        q, m = gene_max(ctx, x, n_max, "filter.top_genes")
        if not q.any():
            break
        out.append((q, m))
        found |= q
        qi = q.astype(np.int64)
        x = x * (1 - qi) - qi
    return out


def gene_all(ctx, counts: Shared, n_required: int, label: str = "filter.intersect_genes") -> np.ndarray:
    """Intersection of gene sets: genes whose count equals ``n_required`` (every set has it): [x - n >= 0] opened.
    One ltz on bits ~ log2(n) + 2 (ceil(log2(bits - 1)) + 1 rounds) and one opening round."""
    q = 1 - compare.ltz(counts - n_required, range_bits(n_required + 2))
    return _open_bits(ctx, q, label)


def gene_diff(ctx, child: Shared, father: Shared, mother: Shared, label: str = "filter.diff_genes") -> np.ndarray:
    """Set difference per trio: genes in the child's set and in neither parent's: [c - f - m - 1 >= 0] opened.
    Inputs (trios, G) 0/1; one 4-bit ltz (3 rounds) and one opening round."""
    q = 1 - compare.ltz(child - father - mother - 1, 4)
    return _open_bits(ctx, q, label)


def release_counts(ctx, counts: Shared, min_cell: int, n_max: int, label: str) -> np.ndarray:
    """Open counts (int64) where the disclosure policy allows: c = 0 or c >= min_cell; -1 where suppressed.

    Math: s = 1 - [c - mc < 0] + [c - 1 < 0] (one batched ltz), v = s * c (one
    multiplication), then v and s are opened together (one round). With min_cell
    <= 1 the counts are opened as they are (one round).
    """
    if min_cell <= 1:
        return ctx.open(counts, label)
    bits = range_bits(max(n_max, min_cell) + 2)
    lt = compare.ltz(concat([(counts - min_cell).ravel(), (counts - 1).ravel()]), bits)
    n = counts.size
    s = (1 - lt[:n] + lt[n:]).reshape(counts.shape)
    v = mul(s, counts)
    got = ctx.disclose([v.data, s.data], label)
    vals, ok = got[0].view(np.int64), got[1].view(np.int64)
    return np.where(ok == 1, vals, -1)
