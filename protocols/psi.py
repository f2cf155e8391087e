"""Multi-party set intersection per hash bin: the lead learns which of its elements every site holds.

Setting: compute parties 0 (the lead) .. n-1 (the sites) each hold a hashed table of
T bins of field elements (tags, see :mod:`protocols.field`); the lead holds one
element a_s per bin (cuckoo hashing), every other site j a list of at most L per
bin (simple hashing: each element in every bin the lead might have put it in).
The lead learns, for each of its bins, only whether a_s lies in bin s of *every*
other site; the sites learn nothing; the dealer learns T, L and n (public).

Protocol (oblivious polynomial evaluation, with the dealer's correlations instead of
homomorphic encryption; Freedman, Nissim and Pinkas 2004; the zero test of a random
combination as in Kissner and Song 2005):

1. Site j forms Q_js(X) = rho_js prod_l (X - b_jsl) = sum_{k=0..L} q_jsk X^k over the
   d_js <= L elements of its bin s (q_jsk = 0 for k > d_js), rho_js uniform non-zero and
   known to j only: Q_js(a) = 0 iff a is in j's bin, else uniform non-zero. The degree
   stays private: q leaves j only masked (step 3), and Q_js(a_s) is rho_js times a
   non-zero value, so padding the bin with dummy roots would change nothing the others
   see (and cost L^2 / 2 products per bin instead of d_js^2 / 2).
2. The dealer gives the lead u_js in F_p^L, site j v_js in F_p^L and zeta_js, and the
   lead zeta'_js = u_js . v_js - zeta_js (recipe ``psi_pair``; uniform to the lead).
3. One round (``{label}.operands``, masked): the lead sends j e_js = pi_s - u_js with
   pi_s = (a_s, a_s^2, .., a_s^L); j sends the lead f_js = q_js[1..L] - v_js.
   Then Q_js(a_s) = pi_s . f_js + zeta'_js  (the lead's share alpha_js)
                  + e_js . v_js + zeta_js + q_js0  (j's share beta_js),
   since pi.q = pi.f + (e + u).v.
4. One round (``{label}``, disclosed to the lead): each site j sends beta_js + z_js,
   where the z_js are a sharing of zero among the sites 1..n-1 (pairwise seeds the
   lead does not have), so the lead learns sum_j beta_js and nothing per site, and
   S_s = sum_j (alpha_js + beta_js) = sum_j Q_js(a_s): zero iff a_s is in every
   site's bin s (else uniform non-zero, up to probability (n-1)/p).
Cost: 2 rounds; per other site 8 T L bytes each way; the dealer sends the lead
8 T (n - 1) bytes. Local work: about sum_s d_js^2 / 2 field products per site (about 8 T when
every site holds B elements: bin loads of mean 3 B / T), T L (n - 1) at the lead.
"""
from __future__ import annotations

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.ledger import DISCLOSED, MASKED

from . import field

__all__ = ["TAG_BITS", "common_bins"]

#: tags are below 2^TAG_BITS; the lead's empty bins hold dummies drawn from [2^TAG_BITS, p)
TAG_BITS = 60
_DUMMY_SPAN = int(field.P) - (1 << TAG_BITS)


@recipe("psi_pair")
def _psi_pair(gen, bins, lanes, site):
    """u (lead) and v (site ``site``) uniform (bins, lanes) in F_p, zeta (the site) uniform (bins,),
    zeta' = u.v - zeta (rows) sent to the lead. Cost: ``bins`` elements from the dealer."""
    u = gen.random_among((bins, lanes), [0])
    v = gen.random_among((bins, lanes), [int(site)])
    z = gen.random_among((bins,), [int(site)])
    lead = gen.for_lead((bins,), lambda: field.sub(field.row_dot(field.to_field(u), field.to_field(v)),
                                                   field.to_field(z)))
    return u, v, z, lead


def _dummies(ctx, shape) -> np.ndarray:
    """Private random field elements in [2^TAG_BITS, p): never equal to a tag."""
    return np.uint64(1 << TAG_BITS) + ctx.private_random(shape) % np.uint64(_DUMMY_SPAN)


def common_bins(ctx, table: np.ndarray, lanes: int, label: str) -> np.ndarray | None:
    """Run the protocol of the module docstring; returns at the lead a (T,) bool: bin s holds a
    lead tag that every other site holds in its bin s; None at the other sites.

    table: at the lead (T,) uint64, elsewhere (T, lanes) uint64; tags in [1, 2^TAG_BITS),
    0 marks an empty place. T and ``lanes`` are public (every party passes the same).
    """
    table = np.asarray(table, np.uint64)
    T, L = int(table.shape[0]), int(lanes)
    if ctx.is_lead and table.shape != (T,) or not ctx.is_lead and table.shape != (T, L):
        raise ValueError(f"psi: table of shape {table.shape} for {T} bins and {L} lanes")
    if np.any(table >> np.uint64(TAG_BITS)):
        raise ValueError(f"psi: tags must be below 2^{TAG_BITS}")
    sites = ctx.parties[1:]
    bundles = [ctx.provider.fetch("psi_pair", bins=T, lanes=L, site=j) for j in range(1, ctx.n)]
    if ctx.is_lead:
        a = np.where(table > 0, table, _dummies(ctx, (T,)))
        pw = field.powers(a, L)
        out = {p: field.sub(pw, field.to_field(b[0])) for p, b in zip(sites, bundles)}
        got = ctx.exchange(out, {p: (T, L) for p in sites}, f"{label}.operands", kind=MASKED)
        alpha = np.zeros(T, np.uint64)
        for p, b in zip(sites, bundles):
            alpha = field.add(alpha, field.add(field.row_dot(pw, field.to_field(got[p])), b[3]))
        got = ctx.exchange({}, {p: (T,) for p in sites}, label, kind=DISCLOSED)
        total = alpha
        for p in sites:
            total = field.add(total, field.to_field(got[p]))
        return (total == 0) & (table > 0)
    mine = bundles[ctx.index - 1]
    v, z = field.to_field(mine[1]), field.to_field(mine[2])
    rho = np.uint64(1) + ctx.private_random((T,)) % (field.P - np.uint64(1))
    q = field.poly_from_roots(table, rho)  # over the bin's elements: 0 marks an empty place
    got = ctx.exchange({ctx.lead: field.sub(q[:, 1:], v)}, {ctx.lead: (T, L)}, f"{label}.operands", kind=MASKED)
    beta = field.add(field.add(field.row_dot(field.to_field(got[ctx.lead]), v), z), q[:, 0])
    for p in sites:  # z_j: a sharing of zero among the sites, from their pairwise seeds
        if p != ctx.me:
            r = field.to_field(ctx.common_random(p, (T,)))
            beta = field.add(beta, r) if ctx.parties.index(p) > ctx.index else field.sub(beta, r)
    ctx.exchange({ctx.lead: beta}, {}, label, kind=DISCLOSED)
    return None
