"""Finding trios split across sites from keyed links: no PED row leaves its site, only what a family model needs.

A trio is an affected child with both parents genotyped somewhere in the study.
Only the child's site knows the child's PED row (parents' IDs, sex, status); the
sites holding the parents must learn which of their columns is which parent, and
every party must learn at which sites a trio's members are (it fixes who inputs
what). Three constant rounds, all under the job key (``filtering.keys``), which
the dealer never has:

1. ``filter.trio_requests`` (disclosed to the other sites): each site sends, for
   each of its genotyped individuals (a public count), one request of three
   16-byte tags: HMAC-SHA256(job key, "link", FID, father), the same for the
   mother and for the child itself when the individual is an affected child with
   both parents named, otherwise three random tags; requests are in a random
   order. A tag says nothing to the dealer or to anyone outside the study; a site
   that can guess another site's IDs can test its guesses (use pseudonymous IDs:
   see docs/filtering.md).
2. ``filter.trio_answers`` (disclosed to the requester only): for each request of
   a site, three bits "I genotype this father / mother / child".
3. ``filter.trios`` (disclosed to the other sites): per request, whether it made a
   complete trio, the sites of the father and mother, for each member a bit mask
   of the other sites that genotype it too, and the family ID (its first 32
   bytes; the output names families by it, so it should be a study pseudonym).

An individual genotyped at several sites (the same FID and IID in two sites' PED
and VCF: a patient sequenced twice, a parent shared by two centres) is used once,
by a public rule: the copy at the first of those sites in the study's party
order. A child whose copy is not the first makes no trio at its site (a note in
that site's log; its request's answers showed an earlier site holding the child),
so the trio is analysed once, from the first copy's PED row and genotypes; a
parent genotyped at two sites is taken from the first. The trio's announcement
carries the other copies' sites, so every site logs the same note and the result
lists the family (``Trio.copies``). This is what the answers already told the
sites involved; what is new to the third site is that a member of an announced
trio is genotyped at more than one site, and where.
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

from cipherome.genomics.filtering.local import Pedigree

__all__ = ["Trio", "find_trios", "link_tag", "TAG_WORDS", "FID_WORDS", "ROLES"]

log = logging.getLogger("cipherome.filter")

TAG_WORDS = 2  # 16-byte link tags
FID_WORDS = 4  # family IDs travel as their first 32 bytes
ROLES = ("father", "mother", "child")  # the tags of one request, in this order
_U64 = np.uint64
_NONE, _COMPLETE = 0, 1
_HEAD = 3 + len(ROLES)  # announcement: status, father's site, mother's site, a copies mask per role, then the FID


@dataclass(frozen=True)
class Trio:
    """An affected child and both parents, each as (site index, column in that site's individuals).

    Columns are known only at their own site (-1 elsewhere); ``child_sex`` only
    at the child's site (0 elsewhere). ``copies``: (role, site index) of every
    other site that genotypes a member too (its copy is not used; known to all).
    """

    fid: str
    child: tuple
    father: tuple
    mother: tuple
    child_sex: int = 0
    copies: tuple = ()


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
    """(n, 3, TAG_WORDS) request tags (``ROLES``) in a random order, and {request index: column of the child}."""
    n = len(ped)
    out = np.frombuffer(secrets.token_bytes(8 * n * len(ROLES) * TAG_WORDS), dtype="<u8").astype(_U64)
    out = out.reshape(n, len(ROLES), TAG_WORDS)
    order = np.random.default_rng(secrets.randbits(64)).permutation(n)
    real = {}
    for col in range(n):
        if int(ped.affected[col]) != 1 or str(ped.father[col]) == "0" or str(ped.mother[col]) == "0":
            continue
        k = int(order[col])
        for role, iid in enumerate((ped.father[col], ped.mother[col], ped.iid[col])):
            out[k, role] = link_tag(key, ped.fid[col], iid)
        real[k] = col
    return out, real


def _mask(sites) -> int:
    return sum(1 << int(s) for s in sites)


def _sites(mask: int) -> list[int]:
    return [i for i in range(64) if (int(mask) >> i) & 1]


def _announce(ped: Pedigree, real: dict, back: dict, parties: list, me: int) -> np.ndarray:
    """This site's row per request (see the module docstring); notes on skipped and duplicated members in its log."""
    ann = np.zeros((len(ped), _HEAD + FID_WORDS), _U64)
    for k, col in real.items():
        where = [[i for i, p in enumerate(parties) if back[p][k, role]] for role in range(len(ROLES))]
        fam, iid = ped.fid[col], ped.iid[col]
        if where[2][0] != me:  # the child is genotyped at an earlier site too: that copy is the study's
            log.warning("filter: family %s: child %s is also genotyped at site %s; the copy there (the first in "
                        "the study's order) is used, not this site's", fam, iid, parties[where[2][0]])
            continue
        if not where[0] or not where[1]:
            log.warning("filter: family %s: the %s of child %s is genotyped at no site of the study; trio skipped",
                        fam, "father" if not where[0] else "mother", iid)
            continue
        ann[k, 0], ann[k, 1], ann[k, 2] = _COMPLETE, where[0][0], where[1][0]
        for role in range(len(ROLES)):
            ann[k, 3 + role] = _mask(where[role][1:])
        ann[k, _HEAD:] = _fid_words(fam)
    return ann


def find_trios(ctx, key: bytes, ped: Pedigree, sizes: list[int]) -> list[Trio]:
    """Trios of the study (three rounds, see the module docstring), sorted by (family ID, child's site, request).

    ``sizes``: every site's number of genotyped individuals (public metadata).
    A member genotyped at several sites is used from the first of them (public rule, a note in every site's log).
    """
    me, parties = ctx.index, list(ctx.parties)
    R = len(ROLES)
    reqs, real = _requests(key, ped)
    flat = reqs.reshape(-1)
    got = ctx.exchange({p: flat for p in ctx.others},
                       {p: (sizes[i], R, TAG_WORDS) for i, p in enumerate(parties) if p != ctx.me},
                       "filter.trio_requests", kind=DISCLOSED)
    got[ctx.me] = reqs
    # my columns by tag
    mine = {}
    for col in range(len(ped)):
        mine[link_tag(key, ped.fid[col], ped.iid[col]).tobytes()] = col
    holds: dict[tuple, int] = {}  # (requesting site, request, role) -> my column
    answers = {}
    for i, p in enumerate(parties):
        a = np.zeros((sizes[i], R), _U64)
        for k in range(sizes[i]):
            for role in range(R):
                col = mine.get(got[p][k, role].tobytes())
                if col is not None:
                    a[k, role] = 1
                    holds[(i, k, role)] = col
        answers[p] = a
    back = ctx.exchange({p: answers[p] for p in ctx.others}, {p: (sizes[me], R) for p in ctx.others},
                        "filter.trio_answers", kind=DISCLOSED)
    back[ctx.me] = answers[ctx.me]
    ann = _announce(ped, real, back, parties, me)
    peers = ctx.exchange({p: ann for p in ctx.others}, {p: (sizes[i], _HEAD + FID_WORDS)
                                                        for i, p in enumerate(parties) if p != ctx.me},
                         "filter.trios", kind=DISCLOSED)
    peers[ctx.me] = ann
    trios = []
    for i, p in enumerate(parties):
        a = peers[p]
        for k in np.flatnonzero(a[:, 0] == _COMPLETE):
            fs, ms, fid = int(a[k, 1]), int(a[k, 2]), _fid_text(a[k, _HEAD:])
            child = (i, real[int(k)] if i == me else -1)
            father = (fs, holds.get((i, int(k), 0), -1) if fs == me else -1)
            mother = (ms, holds.get((i, int(k), 1), -1) if ms == me else -1)
            sex = int(ped.sex[child[1]]) if i == me else 0
            copies = tuple((ROLES[r], s) for r in range(R) for s in _sites(a[k, 3 + r]))
            if copies:
                log.warning("filter: family %s: %s; the copy at the first site in the study's order is used", fid,
                            ", ".join(f"the {r} is also genotyped at site {parties[s]}" for r, s in copies))
            trios.append((fid, i, int(k), Trio(fid, child, father, mother, sex, copies)))
    trios.sort(key=lambda x: x[:3])
    return [t for *_, t in trios]
