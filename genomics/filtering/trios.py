"""Finding trios split across sites from keyed links: no PED row leaves its site, only what a family model needs.

A trio is an affected child with both parents genotyped somewhere in the study.
Only the child's site knows the child's PED row (parents' IDs, sex, status); the
sites holding the parents must learn which of their columns is which parent, and
every party must learn at which sites a trio's members are (it fixes who inputs
what). Three constant rounds, all under the job key (``filtering.keys``), which
the dealer never has:

1. ``filter.trio_requests`` (disclosed to the other sites): each site sends, for
   each of its genotyped individuals (a public count), one request of two 16-byte
   tags: HMAC-SHA256(job key, "link", FID, father) and the same for the mother
   when the individual is an affected child with both parents named, otherwise
   two random tags; requests are in a random order. A tag says nothing to the
   dealer or to anyone outside the study; a site that can guess another site's
   IDs can test its guesses (use pseudonymous IDs: see docs/filtering.md).
2. ``filter.trio_answers`` (disclosed to the requester only): for each request of
   a site, two bits "I genotype this father / mother".
3. ``filter.trios`` (disclosed to the other sites): per request, whether it made a
   complete trio (or a conflict: a parent genotyped at two sites), the sites of
   the father and mother and the family ID (its first 32 bytes; the output names
   families by it, so it should be a study pseudonym).
Children whose father or mother is genotyped at no site are skipped with a note
in their own site's log; nothing about them leaves the site (their requests look
like padding). The child's sex never leaves its site.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

import numpy as np

from cipherome.mpc.ledger import DISCLOSED

from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.local import Pedigree

__all__ = ["Trio", "find_trios", "link_tag", "TAG_WORDS", "FID_WORDS"]

log = logging.getLogger("cipherome.filter")

TAG_WORDS = 2  # 16-byte link tags
FID_WORDS = 4  # family IDs travel as their first 32 bytes
_U64 = np.uint64
_NONE, _COMPLETE, _CONFLICT = 0, 1, 2


@dataclass(frozen=True)
class Trio:
    """An affected child and both parents, each as (site index, column in that site's individuals).

    Columns are known only at their own site (-1 elsewhere); ``child_sex`` only
    at the child's site (0 elsewhere).
    """

    fid: str
    child: tuple
    father: tuple
    mother: tuple
    child_sex: int = 0


def link_tag(key: bytes, fid: str, iid: str) -> np.ndarray:
    """The 16-byte keyed tag of individual (fid, iid) as (2,) uint64: HMAC-SHA256(key, "link\\0fid\\0iid")[:16]."""
    d = hmac.new(key, b"link\0" + str(fid).encode() + b"\0" + str(iid).encode(), hashlib.sha256).digest()
    return np.frombuffer(d[:8 * TAG_WORDS], dtype="<u8").astype(_U64)


def _fid_words(fid: str) -> np.ndarray:
    b = str(fid).encode()[:8 * FID_WORDS].ljust(8 * FID_WORDS, b"\0")
    return np.frombuffer(b, dtype="<u8").astype(_U64)


def _fid_text(words: np.ndarray) -> str:
    return np.asarray(words, dtype="<u8").tobytes().rstrip(b"\0").decode("utf-8", "replace")


def _requests(key: bytes, ped: Pedigree) -> tuple[np.ndarray, dict]:
    """(n, 2, TAG_WORDS) request tags in a random order, and {request index: column of the child}."""
    n = len(ped)
    out = np.frombuffer(secrets.token_bytes(8 * n * 2 * TAG_WORDS), dtype="<u8").astype(_U64).reshape(n, 2, TAG_WORDS)
    order = np.random.default_rng(secrets.randbits(64)).permutation(n)
    real = {}
    for col in range(n):
        if int(ped.affected[col]) != 1 or str(ped.father[col]) == "0" or str(ped.mother[col]) == "0":
            continue
        k = int(order[col])
        out[k, 0] = link_tag(key, ped.fid[col], ped.father[col])
        out[k, 1] = link_tag(key, ped.fid[col], ped.mother[col])
        real[k] = col
    return out, real


def find_trios(ctx, key: bytes, ped: Pedigree, sizes: list[int]) -> list[Trio]:
    """Trios of the study (three rounds, see the module docstring), sorted by (family ID, child's site, request).

    ``sizes``: every site's number of genotyped individuals (public metadata).
    Raises :class:`InputError` at every party if a parent is genotyped at two sites.
    """
    me, parties = ctx.index, list(ctx.parties)
    n = len(parties)
    reqs, real = _requests(key, ped)
    flat = reqs.reshape(-1)
    got = ctx.exchange({p: flat for p in ctx.others},
                       {p: (sizes[i], 2, TAG_WORDS) for i, p in enumerate(parties) if p != ctx.me},
                       "filter.trio_requests", kind=DISCLOSED)
    got[ctx.me] = reqs
    # my columns by tag
    mine = {}
    for col in range(len(ped)):
        mine[link_tag(key, ped.fid[col], ped.iid[col]).tobytes()] = col
    holds: dict[tuple, int] = {}  # (requesting site, request, role) -> my column
    answers = {}
    for i, p in enumerate(parties):
        a = np.zeros((sizes[i], 2), _U64)
        for k in range(sizes[i]):
            for role in (0, 1):
                col = mine.get(got[p][k, role].tobytes())
                if col is not None:
                    a[k, role] = 1
                    holds[(i, k, role)] = col
        answers[p] = a
    back = ctx.exchange({p: answers[p] for p in ctx.others}, {p: (sizes[me], 2) for p in ctx.others},
                        "filter.trio_answers", kind=DISCLOSED)
    back[ctx.me] = answers[ctx.me]
    # announce complete trios (and conflicts), per request
    ann = np.zeros((sizes[me], 3 + FID_WORDS), _U64)
    for k, col in real.items():
        where = [[i for i, p in enumerate(parties) if back[p][k, role]] for role in (0, 1)]
        if any(len(w) > 1 for w in where):
            ann[k, 0] = _CONFLICT
            log.error("filter: family %s: a parent of child %s is genotyped at more than one site", ped.fid[col],
                      ped.iid[col])
        elif all(len(w) == 1 for w in where):
            ann[k, 0] = _COMPLETE
            ann[k, 1], ann[k, 2] = where[0][0], where[1][0]
            ann[k, 3:] = _fid_words(ped.fid[col])
        else:
            log.warning("filter: family %s: the %s of child %s is genotyped at no site of the study; trio skipped",
                        ped.fid[col], "father" if not where[0] else "mother", ped.iid[col])
    peers = ctx.exchange({p: ann for p in ctx.others}, {p: (sizes[i], 3 + FID_WORDS) for i, p in enumerate(parties)
                                                        if p != ctx.me}, "filter.trios", kind=DISCLOSED)
    peers[ctx.me] = ann
    bad = [parties[i] for i in range(n) if (peers[parties[i]][:, 0] == _CONFLICT).any()]
    if bad:
        msg = (f"site {bad[0]}: a parent of one of its trios is genotyped at more than one site; keep each "
               "individual in one site's PED and VCF (details in that site's log)")
        raise InputError(msg, kind=msg)  # public: computed from study-wide values
    trios = []
    for i, p in enumerate(parties):
        a = peers[p]
        for k in np.flatnonzero(a[:, 0] == _COMPLETE):
            fs, ms = int(a[k, 1]), int(a[k, 2])
            child = (i, real[int(k)] if i == me else -1)
            father = (fs, holds.get((i, int(k), 0), -1) if fs == me else -1)
            mother = (ms, holds.get((i, int(k), 1), -1) if ms == me else -1)
            sex = int(ped.sex[child[1]]) if i == me else 0
            trios.append((_fid_text(a[k, 3:]), i, int(k), Trio(_fid_text(a[k, 3:]), child, father, mother, sex)))
    trios.sort(key=lambda x: x[:3])
    return [t for *_, t in trios]
