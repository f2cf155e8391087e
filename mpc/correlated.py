"""Correlated randomness from the dealer, defined once as recipes that run on both sides.

A recipe describes one correlated object, e.g. a Beaver triple (a, b, c = a*b).
The dealer and every compute party run the *same* recipe: ``gen.random(shape)``
is a uniformly shared value, so each party draws its share from the PRG it shares
with the dealer and the dealer draws all of them (and knows their sum);
``gen.derived(shape, f)`` is a value the dealer computes, say c = a*b, whose
shares for all parties but the lead are again PRG draws and whose lead share is
the *correction* c - sum(other shares), the only thing the dealer sends. So an
object costs exactly the size of its derived parts in traffic, and parties other
than the lead receive nothing at all. ``Provider`` is the interface protocols use.
"""
from __future__ import annotations

import importlib
from typing import Callable

import numpy as np

from .kernels import ring_matmul
from .prg import PRG

__all__ = [
    "RECIPES",
    "RECIPE_MODULES",
    "recipe",
    "load_recipes",
    "PartyGen",
    "DealerGen",
    "Provider",
    "correction_elements",
    "Bundle",
]

U64 = np.uint64
RECIPES: dict[str, Callable] = {}
#: recipes whose corrections may go to any compute party (``recipe(rotate=True)``)
ROTATING: set[str] = set()


#: the modules that register recipes (by name: the engine imports no layer above it);
#: the dealer imports only these, never the workloads
RECIPE_MODULES = ["cipherome.protocols"]


def load_recipes() -> None:
    """Import :data:`RECIPE_MODULES` so that every correlated object is registered."""
    for mod in RECIPE_MODULES:
        importlib.import_module(mod)


def recipe(name: str, rotate: bool = False):
    """Register ``fn(gen, **args) -> tuple of arrays`` as the correlated object ``name``.

    ``rotate``: the recipe uses only ``random``, ``derived``, ``xor_random``, ``xor_derived`` and
    ``private``, whose corrections are uniformly random to whichever party receives them (the
    other parties' PRG draws are unknown to it); the dealer then sends request i's corrections
    to compute party i mod n (``corrected_party``), which spreads its traffic over every link
    instead of the lead's alone. Recipes that use ``for_lead`` or ``random_among`` do not rotate.
    """

    def deco(fn):
        if name in RECIPES:
            raise ValueError(f"recipe {name!r} registered twice")
        RECIPES[name] = fn
        if rotate:
            ROTATING.add(name)
        return fn

    return deco


def corrected_party(kind: str, seq: int, n: int) -> int:
    """Index of the compute party that receives the dealer's corrections of request ``seq`` (0: the lead)."""
    return int(seq) % int(n) if kind in ROTATING else 0


def _shape(shape) -> tuple[int, ...]:
    return (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)


class _Slot:
    """A placeholder for a derived share on the lead, filled when the dealer's reply arrives."""

    __slots__ = ("start", "shape")

    def __init__(self, start: int, shape: tuple[int, ...]):
        self.start, self.shape = start, shape


class Bundle:
    """The shares of one correlated object, as returned by a recipe.

    On the lead, derived parts arrive from the dealer; the request is sent at
    once and ``bundle[i]`` blocks only when a derived part is first used, so that
    the dealer's work overlaps the protocol's own (prefetching). Unpacking
    (``a, b, c = bundle``) resolves every part.
    """

    __slots__ = ("_items", "_receive", "_corr", "_derived", "_wait")

    def __init__(self, items, receive: Callable[[], np.ndarray] | None = None, derived_ids=frozenset(),
                 wait: Callable | None = None):
        self._items = items if isinstance(items, tuple) else (items,)
        self._receive, self._corr = receive, None
        #: the parts made by ``derived``/``xor_derived`` (at every party: the same program points)
        self._derived = frozenset(i for i, it in enumerate(self._items) if id(it) in derived_ids)
        #: ``wait(receive or None)`` at the first use of a derived part (``Context.wait_point``): the party
        #: with the corrections receives them there, every party may let other staggered work run
        self._wait = wait if self._derived else None

    def _get(self, i: int) -> np.ndarray:
        item = self._items[i]
        if item is None:
            raise ValueError("part of a correlated object used after its release")
        if self._wait is not None and i in self._derived:
            wait, self._wait = self._wait, None
            got = wait(self._receive if (self._corr is None and self._receive is not None) else None)
            if got is not None:
                self._corr = got
        return self._resolve(item)

    def _resolve(self, item):
        if not isinstance(item, _Slot):
            return item
        if self._corr is None:
            self._corr = self._receive()
        n = int(np.prod(item.shape, dtype=np.int64))
        if item.start + n > self._corr.size:
            raise ValueError("dealer reply shorter than the correlated object")
        return self._corr[item.start : item.start + n].reshape(item.shape)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._get(i)

    def release(self, *parts: int) -> None:
        """Forget ``parts`` (indices): their memory is freed once the caller drops its own references.

        A protocol releases each part after its last use (a mask after its opening, say),
        so that a long protocol holds only the material its next rounds need. The dealer's
        reply is received first if it is still pending, so that it never lingers unread.
        """
        items = list(self._items)
        for i in parts:
            if isinstance(items[i], _Slot) and self._corr is None:
                self._corr = self._receive()
            items[i] = None
        self._items = tuple(items)
        if not any(isinstance(it, _Slot) for it in items):
            self._corr = None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return (self._get(i) for i in range(len(self._items)))


class PartyGen:
    """A compute party's side of a recipe: its own shares, from its PRG with the dealer.

    On the party that receives this request's corrections (``lead=True``: the lead, or for a
    rotating recipe compute party seq mod n, ``corrected_party``) derived shares are the dealer's corrections,
    returned as placeholders that ``Bundle`` fills from the dealer's reply.
    Recipes must therefore not compute with derived shares on the party side.
    ``index`` is this party's position among the ``n`` compute parties (the lead is 0).
    """

    dealer_side = False

    state = None  # only the dealer keeps state between requests

    def __init__(self, prg: PRG, lead: bool, index: int = 0, n: int = 0):
        self.prg, self.lead, self.pos = prg, lead, 0
        self.index, self.n = int(index), int(n)
        self.derived_ids: set[int] = set()  # the parts made by derived/xor_derived (``Bundle``)

    def random(self, shape) -> np.ndarray:
        return self.prg.ring(_shape(shape))

    def random_among(self, shape, parties) -> np.ndarray | None:
        """A uniform value shared among the compute parties ``parties`` (indices) only:
        each of them draws its share, the others hold nothing (None)."""
        return self.random(shape) if self.index in {int(p) for p in parties} else None

    def xor_random(self, shape, mask) -> np.ndarray:
        """Uniform bits under ``mask``, XOR-shared: this party's share is its draw & mask."""
        return self.random(shape) & U64(mask)

    def private(self, shape, bits: bool = False):
        return None

    def derived(self, shape, value: Callable[[], np.ndarray]) -> np.ndarray:
        shape = _shape(shape)
        if not self.lead:
            got = self.prg.ring(shape)
        else:
            got = _Slot(self.pos, shape)
            self.pos += int(np.prod(shape, dtype=np.int64))
        self.derived_ids.add(id(got))
        return got

    def xor_derived(self, shape, value: Callable[[], np.ndarray], mask):
        """A dealer-computed value under ``mask``, XOR-shared: non-leads draw, the lead gets the
        dealer's correction (a placeholder until the reply arrives, already masked)."""
        got = self.derived(shape, value)
        if isinstance(got, np.ndarray):
            got = got & U64(mask)
            self.derived_ids.add(id(got))
        return got

    def for_lead(self, shape, value: Callable[[], np.ndarray]):
        """A dealer-computed value sent whole to the lead (a placeholder until the reply
        arrives); the other parties get None and draw nothing. A recipe may use it only for
        a value that is uniformly random to the lead (say c - r for an r the lead lacks)."""
        if not self.lead:
            return None
        slot = _Slot(self.pos, _shape(shape))
        self.pos += int(np.prod(slot.shape, dtype=np.int64))
        return slot


class DealerGen:
    """The dealer's side of a recipe: full values, every party's PRG share, corrections.

    ``state`` persists across the requests of one job, for objects that later
    objects refer to (a mask reused by many products); parties keep their own
    shares of such objects themselves. ``n``: the number of compute parties.
    """

    dealer_side = True

    def __init__(self, prgs: list[PRG], lead: int, own: PRG, state: dict | None = None):
        self._prgs, self._lead, self._own = prgs, lead, own
        self.state = {} if state is None else state
        self._out: list[np.ndarray] = []
        self._scratch = np.empty(0, dtype=np.uint8)

    @property
    def n(self) -> int:
        return len(self._prgs)

    def _draw(self, i: int, shape: tuple) -> np.ndarray:
        """Party i's next draw, in a scratch buffer reused within this request (valid until the next draw)."""
        need = 8 * int(np.prod(shape, dtype=np.int64)) + 15
        if self._scratch.size < need:
            self._scratch = np.empty(need, dtype=np.uint8)
        return self._prgs[i].ring_into(self._scratch, shape)

    def random(self, shape) -> np.ndarray:
        return self.random_among(shape, range(len(self._prgs)))

    def random_among(self, shape, parties) -> np.ndarray:
        """The sum of the draws of compute parties ``parties`` (indices): a value only they share."""
        parties = [int(i) for i in parties]
        if len(parties) < self.n and self._lead != 0:
            raise ValueError("random_among in a rotating recipe (its corrections must go to the lead)")
        shape = _shape(shape)
        total = self._prgs[parties[0]].ring(shape)
        for i in parties[1:]:
            total += self._draw(i, shape)
        return total

    def xor_random(self, shape, mask) -> np.ndarray:
        """Uniform bits under ``mask``, XOR-shared: the XOR of every party's draw, masked."""
        shape = _shape(shape)
        acc = self._prgs[0].ring(shape)
        for i in range(1, self.n):
            acc ^= self._draw(i, shape)
        acc &= U64(mask)
        return acc

    def private(self, shape, bits: bool = False) -> np.ndarray:
        """Randomness only the dealer knows (it is then shared with ``derived``)."""
        return self._own.bits(_shape(shape)) if bits else self._own.ring(_shape(shape))

    def _correct(self, v: np.ndarray, combine, mask=None) -> np.ndarray:
        """Queue the lead's correction: v minus (or XOR) every other party's PRG draw (n >= 2: at least one)."""
        corr = None
        for i in range(self.n):
            if i != self._lead:
                d = self._draw(i, v.shape)
                if mask is not None:
                    d &= mask
                corr = combine(v if corr is None else corr, d, out=corr)
        self._out.append(corr.ravel())
        return v

    def _value(self, shape, value: Callable[[], np.ndarray]) -> np.ndarray:
        v = np.asarray(value(), dtype=U64)
        return v if v.shape == shape else np.broadcast_to(v, shape)

    def derived(self, shape, value: Callable[[], np.ndarray]) -> np.ndarray:
        shape = _shape(shape)
        return self._correct(self._value(shape, value), np.subtract)

    def xor_derived(self, shape, value: Callable[[], np.ndarray], mask) -> np.ndarray:
        """A dealer-computed value under ``mask``, XOR-shared; the lead's share is the correction."""
        shape = _shape(shape)
        m = U64(mask)
        return self._correct(self._value(shape, value) & m, np.bitwise_xor, m)

    def for_lead(self, shape, value: Callable[[], np.ndarray]) -> np.ndarray:
        """A dealer-computed value sent whole to the lead (see ``PartyGen.for_lead``)."""
        if self._lead != 0:
            raise ValueError("for_lead in a rotating recipe (its corrections must go to the lead)")
        v = self._value(_shape(shape), value)
        self._out.append(np.ascontiguousarray(v).ravel())
        return v

    def corrections(self) -> np.ndarray:
        if len(self._out) == 1:
            return self._out[0]
        return np.concatenate(self._out) if self._out else np.zeros(0, dtype=U64)


def correction_elements(kind: str, **args) -> int:
    """How many ring elements the dealer sends for one object (its traffic / 8 bytes)."""

    class _Count(PartyGen):
        def random(self, shape):
            return np.zeros(_shape(shape), dtype=U64)

    g = _Count(None, lead=True)
    RECIPES[kind](g, **args)
    return g.pos


# ---------------------------------------------------------------------------
# The standard catalogue. Further recipes (comparison bits, edaBits, ...) are
# registered by the protocols that use them, with the same decorator.
# ---------------------------------------------------------------------------


@recipe("triple", rotate=True)
def _triple(gen, shape):
    """Beaver triple: uniform a, b and c = a*b (elementwise). Cost: |c|."""
    a = gen.random(shape)
    b = gen.random(shape)
    c = gen.derived(shape, lambda: a * b)
    return a, b, c


@recipe("square", rotate=True)
def _square(gen, shape):
    """Square pair: uniform a and c = a*a. Cost: |c|."""
    a = gen.random(shape)
    c = gen.derived(shape, lambda: a * a)
    return a, c


@recipe("matrix_triple", rotate=True)
def _matrix_triple(gen, a_shape, b_shape):
    """Matrix triple: uniform A (..,p,q), B (..,q,r) and C = A @ B. Cost: |C|."""
    a = gen.random(a_shape)
    b = gen.random(b_shape)
    c_shape = tuple(a_shape[:-1]) + (b_shape[-1],)
    c = gen.derived(c_shape, lambda: ring_matmul(a, b))
    return a, b, c


@recipe("trunc", rotate=True)
def _trunc_pair(gen, shape, bits):
    """Truncation pair: uniform r, its top bit r_msb and (r mod 2^63) >> bits. Cost: 2|r|."""
    r = gen.random(shape)
    msb = gen.derived(shape, lambda: r >> U64(63))
    low = gen.derived(shape, lambda: (r & U64((1 << 63) - 1)) >> U64(bits))
    return r, msb, low


@recipe("bits", rotate=True)
def _bits(gen, shape):
    """Uniform random bits b in {0, 1}, additively shared in the ring. Cost: |b|."""
    b = gen.private(shape, bits=True)
    return gen.derived(shape, lambda: b)


class Provider:
    """The interface protocols use for correlated randomness; returns this party's shares.

    ``fetch(kind, **args)`` runs recipe ``kind``; the named methods are the
    standard catalogue. The implementation behind ``fetch`` (here: the dealer over
    the transport) is invisible to the protocols.
    """

    def __init__(self, fetch: Callable[..., tuple]):
        self._fetch = fetch  # fetch(kind, args, ahead)

    def fetch(self, kind: str, **args):
        """This party's shares of recipe ``kind`` (a ``Bundle``); the dealer answers requests in order."""
        return self._fetch(kind, args, False)

    def fetch_ahead(self, kind: str, **args):
        """``fetch`` for material needed well after requests made later: the dealer may answer those first,
        when it has them pending (``Context.serve_dealer``). The recipe must not use the dealer's ``state``."""
        return self._fetch(kind, args, True)

    def triple(self, shape):
        return self.fetch("triple", shape=_shape(shape))

    def square(self, shape):
        return self.fetch("square", shape=_shape(shape))

    def matrix_triple(self, a_shape, b_shape):
        return self.fetch("matrix_triple", a_shape=_shape(a_shape), b_shape=_shape(b_shape))

    def trunc_pair(self, shape, bits: int):
        return self.fetch("trunc", shape=_shape(shape), bits=int(bits))

    def random_bits(self, shape):
        return self.fetch("bits", shape=_shape(shape))
