"""A site's private permutation applied to secret-shared rows, forwards or back: one masked opening each.

A site (the owner) knows a permutation pi of N positions; no other party may learn
it. Every permutation here acts on rows: ``apply(p, Y) = Y[p]`` (row i of the
result is row p[i] of Y), and ``apply(q, apply(p, Y)) = Y[p[q]]``.

Setup (``private_permutations``, no round of its own): the owner and the dealer
draw a uniformly random permutation tau from their common PRG stream (the other
compute parties cannot), the dealer keeps it, and the owner writes
pi = tau[sigma], i.e. sigma = tau^-1[pi]. sigma is a uniformly random permutation
whatever pi is (tau is uniform and unknown to the other parties), so it is opened
to every compute party with the first application (kind ``masked``); it is never
sent to the dealer.

Forwards, Y[pi] = (Y[tau])[sigma]: every party opens Z = Y - R for a uniform R
that the dealer knows (all parties draw its shares), the dealer shares R[tau],
the owner adds Z[tau] to its share of R[tau] (Y[tau] = Z[tau] + R[tau]), and every
party applies the public sigma to its share. Backwards, Y[pi^-1] =
(Y[sigma^-1])[tau^-1]: sigma^-1 is applied locally first, then tau^-1 as above.
Each application: 1 round (the opening of Z, with any sigma not yet opened),
|Y| ring elements from every party to every other (plus N for a new sigma), |Y|
from the dealer to the lead. Trust: as for ``protocols.owned``, the dealer (who
knows tau) and a compute party (who knows sigma) together learn pi.
"""
from __future__ import annotations

import itertools

import numpy as np

from cipherome.mpc.correlated import recipe
from cipherome.mpc.shares import Shared

__all__ = ["PrivatePermutation", "private_permutations", "permute", "inverse_permutation"]

U64 = np.uint64
_keys = itertools.count()


def inverse_permutation(p: np.ndarray) -> np.ndarray:
    """q with q[p[i]] = i (int64)."""
    p = np.asarray(p, np.int64)
    q = np.empty_like(p)
    q[p] = np.arange(p.size, dtype=np.int64)
    return q


def _tau(draws: np.ndarray) -> np.ndarray:
    """The mask permutation from N uniform ring draws (owner and dealer compute the same)."""
    return np.argsort(draws, kind="stable").astype(np.int64)


@recipe("perm_mask")
def _perm_mask(gen, key, size, owner):
    """The owner's mask permutation tau: drawn from the owner's PRG stream with the dealer. Cost: 0.
    The dealer keeps it under ``key``; the owner gets its draws, the others nothing."""
    a = gen.random_among((int(size),), [int(owner)])
    if gen.dealer_side:
        gen.state[key] = _tau(a)
        return ()
    return () if a is None else (a,)


@recipe("perm_apply")
def _perm_apply(gen, key, shape, inverse):
    """R uniform (shared by all) and R[t] shared, t = tau or tau^-1 (rows). Cost: |R| from the dealer."""
    shape = tuple(int(s) for s in shape)
    r = gen.random(shape)

    def value():
        t = gen.state[key]
        return r[inverse_permutation(t) if inverse else t]

    return r, gen.derived(shape, value)


@recipe("perm_free")
def _perm_free(gen, key):
    """Forget a mask permutation (the dealer frees it). Cost: 0."""
    if gen.dealer_side:
        gen.state.pop(key, None)
    return ()


class PrivatePermutation:
    """A permutation of ``size`` rows known to ``owner`` only; every compute party holds this object.

    ``tau`` (owner only) is the dealer-shared mask, ``sigma`` the public tau^-1[pi]
    once opened (``pending``: this party's share of sigma until then).
    """

    def __init__(self, ctx, owner: str, size: int, key: str):
        self.ctx, self.owner, self.size, self.key = ctx, owner, int(size), key
        self.tau = None
        self.sigma = None
        self.pending = None

    @property
    def is_owner(self) -> bool:
        return self.ctx.me == self.owner

    def free(self) -> None:
        """Drop the dealer's mask."""
        self.ctx.provider.fetch("perm_free", key=self.key)
        self.tau = None


def private_permutations(ctx, items: list[tuple[str, np.ndarray | None, int]]) -> list[PrivatePermutation]:
    """Set up ``[(owner, pi at the owner else None, size), ...]``: masks drawn, sigma secret-shared (free, no round).

    sigma is opened by the first ``permute`` call that uses the permutation (or lists it in ``also``).
    """
    out = []
    for owner, pi, size in items:
        pp = PrivatePermutation(ctx, owner, size, f"perm/{next(_keys)}")
        got = ctx.provider.fetch("perm_mask", key=pp.key, size=pp.size, owner=ctx.parties.index(owner))
        sigma = None
        if pp.is_owner:
            pi = np.asarray(pi, np.int64)
            if pi.shape != (pp.size,) or not np.array_equal(np.sort(pi), np.arange(pp.size)):
                raise ValueError(f"private permutation of {owner}: not a permutation of {pp.size} rows")
            pp.tau = _tau(got[0])
            sigma = inverse_permutation(pp.tau)[pi]
        pp.pending = ctx.input(owner, sigma, shape=(pp.size,), frac=0).data
        out.append(pp)
    return out


def permute(pairs: list[tuple[PrivatePermutation, Shared]], inverse: bool = False, label: str = "permute",
            also: list[PrivatePermutation] = ()) -> list[Shared]:
    """[Y[pi]] (or [Y[pi^-1]] with ``inverse``) for each (permutation, Y with ``size`` rows); one round in all.

    The sigma of every permutation in ``pairs`` or ``also`` not yet opened goes out in the same opening.
    """
    if not pairs:
        return []
    ctx = pairs[0][1].ctx
    opening = list(dict.fromkeys([pp for pp, _ in pairs if pp.sigma is None] + [pp for pp in also
                                                                                 if pp.sigma is None]))
    if inverse and any(pp.sigma is None for pp, _ in pairs):
        raise ValueError("permute: a permutation is applied backwards before it was applied forwards")
    zs, bundles = [], []
    for pp, y in pairs:
        if y.shape[0] != pp.size:
            raise ValueError(f"permute: {y.shape[0]} rows for a permutation of {pp.size}")
        w = y.data[inverse_permutation(pp.sigma)] if inverse else y.data
        bd = ctx.provider.fetch("perm_apply", key=pp.key, shape=list(y.shape), inverse=bool(inverse))
        zs.append(w - bd[0])
        bundles.append(bd)
    got = ctx.open_masked(zs + [pp.pending for pp in opening], label)
    for pp, s in zip(opening, got[len(zs):]):
        pp.sigma, pp.pending = s.astype(np.int64), None
        if not np.array_equal(np.sort(pp.sigma), np.arange(pp.size)):
            raise ValueError(f"private permutation of {pp.owner}: the opened mask is not a permutation")
    out = []
    for (pp, y), z, bd in zip(pairs, got[:len(zs)], bundles):
        share = np.array(bd[1], dtype=U64)
        if pp.is_owner:
            share += z[inverse_permutation(pp.tau) if inverse else pp.tau]
        if not inverse:
            share = share[pp.sigma]
        out.append(Shared(ctx, np.ascontiguousarray(share), y.frac))
    return out
