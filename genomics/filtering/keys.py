"""The hashed variant key space: a study-wide keyed hash maps each normalised variant key to a slot and a fingerprint.

All compute parties agree a fresh 256-bit job key (each contributes 32 random
bytes; the dealer never sees them), and every owner (a site, or one family
member) places its variants with HMAC-SHA256(job key, "chrom:pos:ref:alt") into
a table of T slots with L lanes each: bytes 0-7 of the MAC give the slot
(mod T, or a slot inside the variant's gene partition), bytes 8-13 a 48-bit
fingerprint (never 0; 0 marks an empty lane).

Collisions. Two distinct variants share a slot with probability 1/T; that is
harmless, because the secure stages compare fingerprints inside a slot, so data
of two variants is merged only if slot *and* fingerprint collide (probability
2^-48 per pair compared), and every candidate is then re-checked exactly on its
revealed key, so a merge can never yield a reported false candidate. An owner
with more than L variants in one slot cannot be represented: it stops with an
:class:`InputError` saying which table size and lane count would fit
(:func:`suggest_table` picks both from a public bound on variants per owner).
"""
from __future__ import annotations

import hashlib
import math
import secrets

import numpy as np
from cipherome.mpc.jit import njit
from cipherome.mpc.ledger import PUBLIC

from cipherome.genomics.errors import InputError
from cipherome.genomics.filtering.macs import hmac_sha256_words

__all__ = ["FP_BITS", "HASHES", "agree_job_key", "hash_keys", "lane_table", "suggest_table", "overflow_probability",
           "cuckoo_hashes", "cuckoo_table", "simple_table", "cuckoo_geometry"]

FP_BITS = 48


def agree_job_key(ctx, label: str = "filter.job_key_contribution") -> bytes:
    """A 32-byte key known to every compute party and to no one else (``label``: the ledger's).

    Each compute party draws 32 random bytes and sends them to the others
    (``allgather``: one round, 32 bytes to each peer, ledger kind 'public' as it
    is shared with every site of the study; the dealer is not a recipient); the
    key is SHA-256 over all contributions in party order, so no single site
    chooses it. Fresh per job: slots of two jobs cannot be linked.
    """
    mine = np.frombuffer(secrets.token_bytes(32), dtype=np.uint8).copy()
    parts = ctx.allgather(mine, label, kind=PUBLIC)
    return hashlib.sha256(b"".join(np.asarray(p, dtype=np.uint8).tobytes() for p in parts)).digest()


def _macs(job_key: bytes, keys) -> np.ndarray:
    """(m, 4) uint64: the four little-endian words of HMAC-SHA256(job key, key) per key (compiled:
    ``genomics.filtering.macs``)."""
    return hmac_sha256_words(job_key, keys)


def _fingerprints(w: np.ndarray, bits: int = FP_BITS) -> np.ndarray:
    """``bits``-bit fingerprints (the low bits of MAC word 1), never 0."""
    fp = w[:, 1] & np.uint64((1 << bits) - 1)
    fp[fp == 0] = 1
    return fp


def hash_keys(job_key: bytes, keys, table_size: int, partition: np.ndarray | None = None,
              buckets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Slots ``(m,)`` int64 and fingerprints ``(m,)`` uint64 (48 bits, nonzero) of variant keys.

    Without ``partition``: slot = MAC[0:8] mod table_size. With ``partition``
    ``(m,)`` int64 (a gene index per key) and ``buckets`` b: slot = partition * b +
    MAC[0:8] mod b, so that each gene owns b consecutive slots.
    """
    w = _macs(job_key, keys)
    h, fp = w[:, 0], _fingerprints(w)
    if partition is None:
        return (h % np.uint64(table_size)).astype(np.int64), fp
    b = np.uint64(buckets)
    return np.asarray(partition, np.int64) * int(b) + (h % b).astype(np.int64), fp


def lane_table(slots: np.ndarray, fps: np.ndarray, table_size: int, lanes: int, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Place entries into a (T, L) table: ``fp`` uint64 (0 = empty) and ``row`` int64 (entry index, -1 empty).

    Entries of one slot take lanes 0, 1, ... in fingerprint order. Raises
    :class:`InputError` if a slot gets more than L entries.
    """
    slots = np.asarray(slots, np.int64)
    fps = np.asarray(fps, np.uint64)
    fp_tab = np.zeros((table_size, lanes), dtype=np.uint64)
    row_tab = np.full((table_size, lanes), -1, dtype=np.int64)
    if slots.size == 0:
        return fp_tab, row_tab
    order = np.lexsort((fps, slots))
    s = slots[order]
    first = np.searchsorted(s, s, side="left")
    lane = np.arange(s.size) - first
    worst = int(lane.max()) + 1
    if worst > lanes:
        raise InputError(
            f"{owner}: {worst} variants fall into one slot of the hashed variant table, which has only {lanes} "
            f"lane(s) per slot ({table_size} slots); rerun with more lanes or a larger table "
            f"(e.g. --lanes {worst}); the table is sized from a public bound on variants per site",
            kind="its variants fall into one slot of the hashed variant table beyond its lanes; rerun with more "
                 "lanes (--lanes) or a larger table")
    f_sorted = fps[order]
    dup = (lane > 0) & (f_sorted == np.roll(f_sorted, 1))
    if dup.any():  # two different variants of one owner with equal slot and 48-bit fingerprint
        raise InputError(f"{owner}: a 48-bit fingerprint collision inside one slot (probability ~2^-48); "
                         "simply rerun the job (a new job key is drawn)",
                         kind="a fingerprint collision in the hashed variant table; simply rerun the job")
    fp_tab[s, lane] = f_sorted
    row_tab[s, lane] = order
    return fp_tab, row_tab


def overflow_probability(entries: int, table_size: int, lanes: int) -> float:
    """Upper bound (union over slots) on the probability that some slot gets more than ``lanes`` of ``entries``
    uniformly hashed entries: T * P[Binomial(entries, 1/T) > lanes].

    ``scipy.special.bdtrc`` is the binomial upper tail that ``scipy.stats.binom.sf`` evaluates; calling it
    directly spares each daemon the 1.5-2.7 s import of ``scipy.stats`` on its first GWAS (the variant
    intersection sizes its cuckoo table here)."""
    from scipy.special import bdtrc

    if entries <= lanes:
        return 0.0
    return float(min(1.0, table_size * bdtrc(lanes, entries, 1.0 / table_size)))


def suggest_table(max_entries: int, fail: float = 1e-6, max_slots: int = 1 << 22) -> tuple[int, int]:
    """(T, L) for an owner with at most ``max_entries`` variants: overflow probability <= ``fail``, least cost.

    The secure cost of a table grows like T * L^2 (fingerprint comparisons
    between two owners' lanes of each slot); T runs over powers of two.
    """
    m = max(1, int(max_entries))
    best = None
    t = 1
    while t <= max_slots:
        lanes = max(1, math.ceil(m / t))
        while overflow_probability(m, t, lanes) > fail:
            lanes += 1
        cost = t * lanes * lanes + 4 * t * lanes
        if best is None or cost < best[0]:
            best = (cost, t, lanes)
        t *= 2
    return best[1], best[2]


# ----------------------------------------------------------------------------- cuckoo against simple hashing
HASHES = 3
CUCKOO_LOAD = 1.27  # bins per element (Pinkas, Schneider, Weinert, Wieder, Eurocrypt 2018: 3 hashes, no stash)
_MAX_KICKS = 1000


def cuckoo_hashes(job_key: bytes, keys, bins: int, bits: int = FP_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Candidate bins ``(m, 3)`` int64 and ``bits``-bit fingerprints ``(m,)`` uint64 of variant keys.

    Bin k of a key is word k' of its MAC mod ``bins`` (words 0, 2, 3; word 1 is
    the fingerprint), so the three choices are independent of each other and of
    the fingerprint.
    """
    w = _macs(job_key, keys)
    cand = (w[:, [0, 2, 3]] % np.uint64(bins)).astype(np.int64)
    return cand, _fingerprints(w, bits)


@njit(cache=True, nogil=True)
def _cuckoo_walk(cand, occ, max_kicks):  # pragma: no cover - compiled
    """Random-walk insertion of entries 0..m-1 into ``occ`` (bins,), -1 = empty: an entry takes a free
    candidate bin, else evicts the occupant of a random one, which is placed next. Returns -1, or the
    entry left without a bin after ``max_kicks`` evictions. The walk's generator (xorshift64*) has a
    fixed seed, so the table is a function of the candidates only (100,000 entries into 127,000 bins:
    6.5 ms; the same walk on Python lists took 0.20 s)."""
    state = np.uint64(0x5EED5EED5EED5EED)
    for e in range(cand.shape[0]):
        cur = e
        for _ in range(max_kicks):
            for h in range(cand.shape[1]):
                b = cand[cur, h]
                if occ[b] < 0:
                    occ[b] = cur
                    cur = -1
                    break
            if cur < 0:
                break
            state ^= state >> np.uint64(12)
            state ^= state << np.uint64(25)
            state ^= state >> np.uint64(27)
            b = cand[cur, ((state * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(33)) % np.uint64(cand.shape[1])]
            occ[b], cur = cur, occ[b]
        if cur >= 0:
            return cur
    return -1


def cuckoo_table(cand: np.ndarray, fps: np.ndarray, bins: int, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Each entry in one of its candidate bins, one per bin: ``fp`` (bins, 1) uint64 (0 empty), ``row`` (bins, 1)
    int64 (entry index, -1 empty). Random-walk insertion; raises :class:`InputError` if an entry finds no bin:
    below 2^-40 at 1.27 bins per entry and >= 2^12 entries (PSWW18); measured 0 of 1,000 at 600 entries
    (random candidates, with the walk's present generator)."""
    m = len(fps)
    if m > bins:
        raise InputError(f"{owner}: {m} variants do not fit a cuckoo table of {bins} bins; rerun with more bins "
                         "(--table-size) or a larger public bound (--max-member-variants)",
                         kind='its variants do not fit the hashed variant table; rerun with a larger table')
    occ = np.full(bins, -1, np.int64)
    if _cuckoo_walk(np.ascontiguousarray(cand, np.int64), occ, _MAX_KICKS) >= 0:
        raise InputError(f"{owner}: the cuckoo table of {bins} bins could not place every variant (a rare event "
                         "for a given job key); simply rerun the job (a new job key is drawn)",
                         kind='the cuckoo table could not place every variant (a rare event); simply rerun the job')
    row_tab = occ.reshape(bins, 1)
    fp_tab = np.zeros((bins, 1), np.uint64)
    fp_tab[occ >= 0, 0] = np.asarray(fps, np.uint64)[occ[occ >= 0]]
    return fp_tab, row_tab


def simple_table(cand: np.ndarray, fps: np.ndarray, bins: int, lanes: int, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Each entry in every one of its distinct candidate bins (simple hashing), lanes in fingerprint order:
    (bins, lanes) ``fp`` and ``row`` as :func:`lane_table`, which raises on overflow."""
    cand = np.asarray(cand, np.int64)
    m = cand.shape[0]
    ent = np.repeat(np.arange(m, dtype=np.int64), HASHES)
    slots = cand.reshape(-1)
    keep = np.ones(slots.size, bool)
    if m:
        c = cand
        keep = np.stack([np.ones(m, bool), c[:, 1] != c[:, 0], (c[:, 2] != c[:, 0]) & (c[:, 2] != c[:, 1])],
                        axis=1).reshape(-1)
    fp, row = lane_table(slots[keep], np.asarray(fps, np.uint64)[ent[keep]], bins, lanes, owner)
    if not m:
        return fp, row
    return fp, np.where(row >= 0, ent[keep][np.maximum(row, 0)], -1)


def cuckoo_geometry(max_entries: int, fail: float = 1e-6) -> tuple[int, int]:
    """(bins, lanes) for matching a cuckoo table of <= ``max_entries`` against simple tables of <= ``max_entries``:
    bins = ceil(1.27 m) (2 m below 256 entries), lanes the
    least L with bins * P[Binomial(3 m, 1/bins) > L] <= ``fail``. Comparisons per pair: bins * lanes (not T L^2)."""
    m = max(1, int(max_entries))
    bins = math.ceil(CUCKOO_LOAD * m) if m >= 256 else 2 * m
    bins = max(bins, 4)
    lanes = 1
    while overflow_probability(HASHES * m, bins, lanes) > fail:
        lanes += 1
    return bins, lanes
