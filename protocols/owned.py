"""Products of a site-owned private matrix with secret-shared operands, the matrix masked once.

A site knows its matrix M in the clear; it sends E = M - A once to the other compute
parties, for a mask A that only the site and the dealer know (drawn from their common
PRG stream), and every later product op(M) @ Y with a shared Y then costs one masked
message of |Y| elements from each other party to the site: O(n + m), not O(n m).
"""
from __future__ import annotations

import itertools

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.kernels import ring_matmul_tn
from cipherome.mpc.ledger import MASKED
from cipherome.mpc.shares import Shared

from .beaver import MATMUL, MATMUL_TN, apply, combine

__all__ = ["OwnedMatrix", "mask_owned", "owned_products", "ring_matmul_tn"]

U64 = np.uint64
_keys = itertools.count()


def _op(transpose: bool) -> str:
    return MATMUL_TN if transpose else MATMUL


def _out_shape(m_shape, y_shape, transpose: bool) -> tuple[int, int]:
    return (int(m_shape[1 if transpose else 0]), int(y_shape[1]))


@recipe("owned_mask")
def _owned_mask(gen, key, shape, owner):
    """Mask A of a site-owned matrix: the owner's own PRG stream with the dealer. Cost: 0.

    Only the owner and the dealer draw it; the dealer keeps A under ``key``.
    """
    a = gen.random_among(tuple(int(s) for s in shape), [int(owner)])
    if gen.dealer_side:
        gen.state[key] = a
        return ()
    return () if a is None else (a,)


@recipe("owned_product")
def _owned_product(gen, key, m_shape, y_shape, transpose, owner):
    """For op(M) @ Y: B = sum of the non-owners' draws b_p (each knows its own, the dealer all)
    and C = op(A) @ B shared. Cost: |op(M) Y| elements from the dealer."""
    y_shape = tuple(int(s) for s in y_shape)
    b = gen.random_among(y_shape, [i for i in range(gen.n) if i != int(owner)])
    a = gen.state[key] if gen.dealer_side else None
    c = gen.derived(_out_shape(m_shape, y_shape, transpose), lambda: apply(_op(transpose), a, b))
    return b, c


@recipe("owned_free")
def _owned_free(gen, key):
    """Forget a stored mask (the dealer frees its memory). Cost: 0."""
    if gen.dealer_side:
        gen.state.pop(key, None)
    return ()


class OwnedMatrix:
    """One site's integer (or ring) matrix M, masked once; every compute party holds this object.

    owner: the site that knows M; ``m`` (owner only) and ``e`` = M - A (every other
    party) uint64; ``shape`` public. Build with :func:`mask_owned`.
    """

    def __init__(self, ctx, owner: str, shape, key: str):
        self.ctx, self.owner, self.shape, self.key = ctx, owner, tuple(int(s) for s in shape), key
        self.m = None
        self.e = None

    @property
    def is_owner(self) -> bool:
        return self.ctx.me == self.owner

    def free(self) -> None:
        """Drop the local copies and the dealer's mask."""
        self.ctx.provider.fetch("owned_free", key=self.key)
        self.m = self.e = None


def mask_owned(ctx, mine: np.ndarray | None, shapes: dict, label: str = "owned.mask") -> dict:
    """Mask every site's matrix in one round; returns {site: OwnedMatrix}.

    ``shapes``: {site: (rows, cols)} (public, every party passes the same); ``mine``: this
    party's own matrix (integers, any dtype; None if it owns none). Each owner sends
    E = M - A (|M| ring elements, uniformly random: A is known to it and the dealer
    only) to every other compute party.
    Cost: 1 round; each site sends (n-1) |M_s| * 8 bytes once; nothing from the dealer.
    """
    mats, outgoing = {}, {}
    for site, shape in shapes.items():
        om = OwnedMatrix(ctx, site, shape, f"owned/{next(_keys)}")
        mine_flag = ctx.me == site
        got = ctx.provider.fetch("owned_mask", key=om.key, shape=list(om.shape),
                                 owner=ctx.parties.index(site))
        if mine_flag:
            m = np.asarray(mine)
            if m.shape != om.shape:
                raise ValueError(f"owned matrix of {site} has shape {m.shape}, announced {om.shape}")
            om.m = np.ascontiguousarray(m.astype(np.int64).view(U64) if m.dtype != U64 else m)
            e = om.m - got[0]
            outgoing = {p: e for p in ctx.others}
        mats[site] = om
    incoming = {om.owner: om.shape for om in mats.values() if not om.is_owner}
    got = ctx.exchange(outgoing, incoming, label, kind=MASKED)
    for om in mats.values():
        if not om.is_owner:
            om.e = got[om.owner]
    return mats


def owned_products(pairs: list, transpose: bool, label: str = "owned.product") -> list[Shared]:
    """[op(M_s) @ Y_s] for a list of (OwnedMatrix, Shared Y_s), op = transpose or identity; one round.

    Steps, for each pair (owner o; every other party p draws b_p with the dealer, B = sum b_p,
    and the dealer shares C = op(A) B):
      1. every p != o sends o its share y_p - b_p (uniform to o, and to any coalition
         missing one such p); o adds its own share: F = Y - B;
      2. o: op(M) F + C_o;  p != o: op(E) b_p + C_p (``beaver.combine``: o's mask share is
         all of M, the public op(E, F) folded into op(M, F)). The sum is
         op(M)(Y - B) + op(M - A) B + op(A) B = op(M) Y.
    M holds integers (scale 0), so the result has Y's scale and needs no truncation.
    Traffic per pair: each non-owner sends |Y| ring elements to the owner; the dealer
    sends the lead |op(M) Y|. Local work: one r x c x L ring product at every party and the dealer.
    """
    if not pairs:
        return []
    ctx = pairs[0][0].ctx
    bundles = []
    for om, y in pairs:
        if y.ndim != 2 or y.shape[0] != om.shape[0 if transpose else 1]:
            raise ValueError(f"owned product: matrix {om.shape} (transpose={transpose}) and operand {y.shape}")
        bundles.append(ctx.provider.fetch("owned_product", key=om.key, m_shape=list(om.shape),
                                          y_shape=list(y.shape), transpose=bool(transpose),
                                          owner=ctx.parties.index(om.owner)))
    if len({om.owner for om, _ in pairs}) != len(pairs):
        raise ValueError("owned_products: at most one matrix per owner in one call")
    outgoing, incoming = {}, {}
    for (om, y), bd in zip(pairs, bundles):
        if om.is_owner:
            incoming = {p: y.shape for p in ctx.others}
        else:
            outgoing[om.owner] = y.data - bd[0]
    got = ctx.exchange(outgoing, incoming, label, kind=MASKED)
    out = []
    for (om, y), bd in zip(pairs, bundles):
        if om.is_owner:  # F = Y - B: its own share plus the others' masked ones; it adds op(M) F
            f = np.array(y.data, dtype=U64)
            for p in ctx.others:
                f += got[p]
            c = combine(_op(transpose), None, om.m, f, None, bd[1], True)
        else:  # op(E) b_p + C_p
            c = combine(_op(transpose), om.e, None, None, bd[0], bd[1], False)
        out.append(Shared(ctx, c, y.frac))
    return out
