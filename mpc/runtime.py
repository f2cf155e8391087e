"""The party runtime: one party's view of a job (who the peers are, seeds, inputs, openings).

Compute parties run the same job code in lock-step (SPMD); the dealer runs
``serve_dealer`` and answers the lead party's requests for correlated randomness.
A private input enters MPC without traffic: for every other compute party p the
owner and p expand p's share from the seed they share, and the owner keeps
``x - sum(others)``. Every opening goes through ``open_masked`` or ``disclose`` with a label, which
the disclosure ledger records (masked openings apart from disclosures).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable

import numpy as np

from .correlated import RECIPES, Bundle, DealerGen, PartyGen, Provider, corrected_party, load_recipes
from .kernels import add_low_bytes, low_bytes
from .ledger import DISCLOSED, MASKED, PUBLIC, Ledger
from .prg import PRG, new_seed
from .ring import DEFAULT_FRAC, decode, encode, to_ring
from .shares import Shared
from .transport import PeerError, Transport

__all__ = ["Context"]

log = logging.getLogger("cipherome.runtime")
U64 = np.uint64
_STOP = "__stop__"


#: elements per chunk of ``inputs_sum``'s masks (1 MiB of keystream)
_MASK_CHUNK = 1 << 17


def _flatten(shares: list[np.ndarray]) -> np.ndarray:
    """One new flat uint64 array holding all shares (the message of one opening)."""
    sizes = [int(np.size(s)) for s in shares]
    flat = np.empty(sum(sizes), dtype=U64)
    pos = 0
    for s, n in zip(shares, sizes):
        flat[pos : pos + n] = np.asarray(s, dtype=U64).ravel()
        pos += n
    return flat


class Context:
    """A party's runtime for one job.

    me: this party's name; parties: the compute parties in a fixed agreed order
    (the first is the *lead*: it adds public constants and talks to the dealer);
    dealer: the dealer's name; transport: this party's ``Transport``.
    """

    def __init__(
        self,
        me: str,
        parties: list[str],
        dealer: str,
        transport: Transport,
        *,
        frac: int = DEFAULT_FRAC,
        timeout: float | None = None,
    ):
        if len(parties) < 2:
            raise ValueError("MPC needs at least two compute parties")
        if me not in parties and me != dealer:
            raise ValueError(f"party {me!r} is neither a compute party nor the dealer")
        self.me, self.parties, self.dealer = me, list(parties), dealer
        self.transport, self.frac, self.timeout = transport, int(frac), timeout
        self.lead = self.parties[0]
        self.ledger = Ledger()
        self.rounds = 0
        self.dealer_requests = 0
        #: seconds this party waited for other parties' openings and for the dealer's replies (the dealer:
        #: for the lead's requests), not computing
        self.waited = {"openings": 0.0, "dealer": 0.0, "requests": 0.0}
        self._seq = 0
        self._dealer_seq = 0
        self._prg: dict[str, PRG] = {}
        self._own: PRG | None = None
        self.provider = Provider(self._fetch)
        self._stages: list[dict] = []
        self._stage: dict | None = None
        #: one line on what the job is doing (stage, items done), shown by job status; never data
        self.progress = ""
        #: ``mpc.pipeline`` schedulers by the ident of each task thread they run: a task's openings go to its
        #: scheduler (merged per step, or posted early), anyone else's straight to ``open_batch``
        self.schedulers: dict[int, object] = {}
        #: inside ``lean()``: split openings (``mpc.split``) where a protocol can use them
        self.lean_mode = False

    # -- identity ------------------------------------------------------------
    @property
    def is_dealer(self) -> bool:
        return self.me == self.dealer

    @property
    def is_lead(self) -> bool:
        return self.me == self.lead

    @property
    def index(self) -> int:
        return self.parties.index(self.me)

    @property
    def n(self) -> int:
        return len(self.parties)

    @property
    def others(self) -> list[str]:
        return [p for p in self.parties if p != self.me]

    # -- setup -----------------------------------------------------------------
    def setup(self) -> "Context":
        """Agree a fresh pairwise seed with every other party (including the dealer).

        Of each pair, the party earlier in the order ``parties + [dealer]`` draws
        the seed and sends it (the transport is authenticated and encrypted).
        """
        order = self.parties + [self.dealer]
        mine = order.index(self.me)
        for other in order[mine + 1 :]:
            seed = new_seed()
            self._prg[other] = PRG(seed)
            self.transport.send(other, "setup/seed", np.frombuffer(seed, dtype=np.uint8))
        for other in order[:mine]:
            seed = self.transport.recv(other, "setup/seed", self.timeout)
            if seed.dtype != np.uint8 or seed.size != 16:
                raise PeerError(other, "setup", "malformed seed message")
            self._prg[other] = PRG(seed.tobytes())
        self.rounds += 1
        return self

    def common_random(self, other: str, shape) -> np.ndarray:
        """Uniform ring elements that this party and ``other`` both draw, from their pairwise
        seed (no traffic; e.g. zero-sharing among sites). Both must call it at the same
        step of the protocol, as their other draws from that seed (input shares) follow."""
        if other == self.me or other not in self._prg:
            raise ValueError(f"no pairwise seed with {other!r}")
        return self._prg[other].ring(shape)

    def private_random(self, shape) -> np.ndarray:
        """Uniform ring elements only this party knows (its own PRG, seeded at first use)."""
        if self._own is None:
            self._own = PRG(new_seed())
        return self._own.ring(shape)

    # -- inputs ------------------------------------------------------------------
    def input(self, owner: str, value=None, *, shape=None, frac: int | None = None) -> Shared:
        """Secret-share ``value`` held by ``owner``; the others pass ``value=None``.

        If every party passes ``shape`` and ``frac`` there is no traffic at all;
        otherwise the owner first announces (frac, shape), which are public.
        Float inputs are encoded with ``ctx.frac`` bits, integer inputs exactly.
        """
        if self.is_dealer:
            raise RuntimeError("the dealer never holds inputs")
        if owner == self.me:
            arr = np.asarray(value)
            f = (self.frac if arr.dtype.kind == "f" else 0) if frac is None else int(frac)
            enc = encode(arr, f) if (f or arr.dtype.kind == "f") else to_ring(arr)
            if shape is None or frac is None:
                meta = np.array([f, *arr.shape], dtype=np.int64)
                self.ledger.record("input.shape", PUBLIC, self.others, meta.size)
                tag = self._next_tag("meta")
                for p in self.others:
                    self.transport.send(p, tag, meta)
            share = enc.copy()
            for p in self.others:
                share -= self._prg[p].ring(arr.shape)
            return Shared(self, share, f)
        if shape is None or frac is None:
            meta = self.transport.recv(owner, self._next_tag("meta"), self.timeout)
            frac, shape = int(meta[0]), tuple(int(s) for s in meta[1:])
        return Shared(self, self._prg[owner].ring(tuple(shape)), int(frac))

    def inputs_sum(self, value, *, shape, frac: int) -> Shared:
        """Every party inputs an array of the same public shape; returns the shared sum.

        This is how horizontally partitioned sites pool their local aggregates:
        all inputs are free and summing shares is free, so the cost is zero traffic.
        """
        if self.is_dealer:
            raise RuntimeError("the dealer never holds inputs")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        arr = np.asarray(value)
        if arr.shape != shape:
            raise ValueError(f"inputs_sum: value has shape {arr.shape}, the public shape is {shape}")
        f = int(frac)
        total = encode(arr, f) if (f or arr.dtype.kind == "f") else to_ring(arr)
        if np.shares_memory(total, arr):
            total = total.copy()
        # Pairwise masks: both parties of each pair draw the same r from their common stream; the earlier
        # in ``parties`` adds it, the later subtracts it. The masks cancel in the sum, and a party's share
        # is its value plus one mask per other party, so with three or more parties no single other
        # party can remove them all (one draw per pair and call, where ``input`` per owner would take
        # two). Drawn in chunks into one small scratch buffer that stays in cache (the same keystream as
        # one draw of the whole array; a scratch array as large as the input, and a pass through memory
        # per mask, cost 0.5-1.0 core-seconds for the association's 22 M elements, now 0.07-0.09 with
        # the encoding).
        sign = [self.parties.index(self.me) < self.parties.index(p) for p in self.others]
        total = np.ascontiguousarray(total)
        flat = total.reshape(-1)  # a view: the masks are added in place
        step = max(1, min(flat.size, _MASK_CHUNK))
        buf = np.empty(8 * step + 15, dtype=np.uint8)
        for lo in range(0, flat.size, step):
            part = flat[lo:lo + step]
            for p, add in zip(self.others, sign):
                r = self._prg[p].ring_into(buf, part.size)
                if add:
                    part += r
                else:
                    part -= r
        return Shared(self, total, f)

    # -- openings ----------------------------------------------------------------
    def _next_tag(self, what: str, count: bool = True) -> str:
        """The message tag of the next round (``seq/label``); advances the sequence and counts the round
        (``count=False``: an exchange that travels while another one of the same round is in flight,
        ``mpc.pipeline.stagger``)."""
        tag = f"{self._seq}/{what}"
        self._seq += 1
        self.rounds += int(count)
        return tag

    def open_masked(self, shares: list[np.ndarray], label: str, *, to=None, bits: int = 64, xor: bool = False):
        """Open ring values that are uniformly random to their recipients (e.g. x - a in a Beaver product).

        One round: every party sends its concatenated shares to each recipient,
        which adds them. Returns the list of opened uint64 arrays on recipients,
        ``None`` elsewhere. The ledger records the opening as kind ``masked``:
        call this only where a fresh uniform mask hides every opened element.

        ``bits`` < 64: the protocol needs the values only modulo 2^bits (the masked input
        of a bits-wide comparison): every party sends only the low ceil(bits/8) bytes of
        each share, whose sum is the value modulo 2^(8 ceil(bits/8)), and the results are
        reduced modulo 2^bits (recipients learn less than the full masked value).
        ``xor``: XOR shares (bit-packed boolean words), combined by XOR instead of addition.
        """
        return self._open(shares, label, to, MASKED, bits=bits, xor=xor)

    def disclose(self, shares: list[np.ndarray], label: str, *, to=None, bits: int = 64):
        """Open ring values that reveal something about the data: a disclosure, recorded as such.

        Same round as :meth:`open_masked`; the ledger records kind ``disclosed``
        with the recipients, so the run report lists it for the sites' audit.
        ``bits``: values known to lie in [0, 2^bits) (bits, counts) go as their low
        ceil(bits/8) bytes (see :meth:`open_masked`).
        """
        return self._open(shares, label, to, DISCLOSED, bits=bits)

    def _recipients(self, to) -> list[str]:
        return self.parties if to is None else ([to] if isinstance(to, str) else list(to))

    @contextmanager
    def lean(self):
        """Context manager for stages whose openings are large (O(variants) elements per round).

        Inside it the openings that ``mpc.split`` can split spend one more round for
        fewer bytes: ``protocols.truncate`` (each masked element to one party, which
        returns its top bit: about a third of the bytes) and a fixed operand's mask
        and series openings (relayed: two thirds). Stages choose, so the schedule of a
        stage is fixed whatever the study size.
        """
        was, self.lean_mode = self.lean_mode, True
        try:
            yield self
        finally:
            self.lean_mode = was

    def _open(self, shares: list[np.ndarray], label: str, to, kind: str, bits: int = 64, xor: bool = False):
        return self.open_requests([(shares, label, to, kind, bits, xor, None)])[0]

    def open_requests(self, requests: list[tuple]) -> list:
        """Openings ``(shares, label, to, kind, bits, xor, senders)`` in one round (see ``open_batch``).

        Inside a pipelined task they are handed to its scheduler (``mpc.pipeline``).
        """
        sched = self.schedulers.get(threading.get_ident())
        if sched is not None:
            return sched.submit(requests)
        return self.open_batch(requests)

    def open_batch(self, requests: list[tuple]) -> list:
        """``post_batch(requests)()``: send, then wait for the values (see ``post_batch``)."""
        return self.post_batch(requests)()

    def post_batch(self, requests: list[tuple], count: bool = True):
        """Several openings, each ``(shares, label, to, kind, bits, xor, senders)``, in ONE round.

        Each is recorded in the ledger under its own label, kind and recipients.
        Every party sends each other party, per wire width (``bits`` rounded up to
        bytes), one message: the concatenation of the openings of that width
        addressed to it, all at once (the structure is the same at every party, as
        in SPMD code). ``senders`` (``None``: every party) restricts who sends its
        share: the others' shares count as zero, so a single sender passes its own
        clear value (a masked one) to the recipients. ``_open`` is the case of one
        request; ``mpc.pipeline`` merges the openings of its tasks in flight.

        Sends at once and returns ``collect()``, which waits for the other parties'
        messages and returns, per request, what ``open_masked`` / ``disclose`` would
        (``open_batch`` calls it at once; ``mpc.pipeline.stagger`` computes first).
        ``count=False``: not counted as a round (see ``_next_tag``).
        """
        recips = [self._recipients(r[2]) for r in requests]
        sends = [self.parties if r[6] is None else self._recipients(r[6]) for r in requests]
        sizes = [sum(int(np.size(s)) for s in r[0]) for r in requests]
        # a party that does not send a request's share needs only its size (its shares are placeholders)
        flats = [_flatten(r[0]) if self.me in f else None for r, f in zip(requests, sends)]
        nbs = [(int(r[4]) + 7) // 8 for r in requests]
        if not all(1 <= nb <= 8 for nb in nbs):
            raise ValueError("open: bits must be in 1..64")
        for (_s, label, _t, kind, *_rest), r, size in zip(requests, recips, sizes):
            self.ledger.record(label, kind, r, size)
        tag = self._next_tag(requests[0][1] if len(requests) == 1 else f"{requests[0][1]}+{len(requests) - 1}", count)
        wires = [None if f is None else f if nb == 8 else low_bytes(f, nb) for f, nb in zip(flats, nbs)]
        widths = list(dict.fromkeys(nbs))
        tags = {nb: tag if len(widths) == 1 else f"{tag}#{nb}" for nb in widths}
        for p in self.others:
            for nb in widths:
                parts = [w for w, r, b, f in zip(wires, recips, nbs, sends) if b == nb and p in r and self.me in f]
                if parts:
                    self.transport.send(p, tags[nb], parts[0] if len(parts) == 1 else np.concatenate(parts))
        return lambda: self._collect(requests, recips, sends, flats, sizes, nbs, widths, tags)

    def _collect(self, requests, recips, sends, flats, sizes, nbs, widths, tags) -> list:
        """The receiving half of ``post_batch``."""
        mine = [k for k, r in enumerate(recips) if self.me in r]
        totals = {k: flats[k].copy() if flats[k] is not None else np.zeros(sizes[k], dtype=U64) for k in mine}
        for p in self.others:
            for nb in widths:
                ks = [k for k in mine if nbs[k] == nb and p in sends[k]]
                if not ks:
                    continue
                t0 = time.perf_counter()
                got = self.transport.recv(p, tags[nb], self.timeout)
                self.waited["openings"] += time.perf_counter() - t0
                size = sum(sizes[k] for k in ks) * (1 if nb == 8 else nb)
                if got.dtype != (U64 if nb == 8 else np.uint8) or got.shape != (size,):
                    raise PeerError(p, requests[ks[0]][1],
                                    f"malformed message: expected {sum(sizes[k] for k in ks)} ring elements")
                pos = 0
                for k in ks:
                    piece = got[pos : pos + sizes[k] * (1 if nb == 8 else nb)]
                    pos += piece.size
                    if nb < 8:
                        add_low_bytes(totals[k], piece, nb, bool(requests[k][5]))
                    elif requests[k][5]:
                        totals[k] ^= piece
                    else:
                        totals[k] += piece
        out: list = [None] * len(requests)
        for k in mine:
            if int(requests[k][4]) < 64:
                totals[k] &= U64((1 << int(requests[k][4])) - 1)
            got, pos = [], 0
            for s in requests[k][0]:
                n = int(np.size(s))
                got.append(totals[k][pos : pos + n].reshape(np.shape(s)))
                pos += n
            out[k] = got
        return out

    def exchange(self, outgoing: dict, incoming: dict, label: str, *, kind: str) -> dict:
        """One round of point-to-point messages: different values to different recipients.

        ``outgoing`` maps a recipient to the uint64 array it gets from this party,
        ``incoming`` a sender to the shape expected from it; returns {sender: array}.
        Every compute party calls it with its own view of the same exchange (who
        sends what to whom is public). ``kind`` (``MASKED`` or ``DISCLOSED``, no
        default) is recorded in the ledger once per recipient, so one-round
        messages cannot bypass the disclosure ledger.
        """
        if kind not in (MASKED, DISCLOSED):
            raise ValueError(f"exchange kind must be {MASKED!r} or {DISCLOSED!r}, not {kind!r}")
        tag = self._next_tag(label)
        for to, arr in outgoing.items():
            a = np.ascontiguousarray(arr, dtype=U64)
            self.ledger.record(label, kind, [to], a.size)
            self.transport.send(to, tag, a)
        got = {}
        for frm, shape in incoming.items():
            x = self.transport.recv(frm, tag, self.timeout)
            want = int(np.prod(shape, dtype=np.int64))
            if x.dtype != U64 or x.size != want:
                raise PeerError(frm, label, f"malformed message: expected {want} ring elements")
            got[frm] = x.reshape(shape)
        return got

    def allgather(self, value: np.ndarray, label: str, *, kind: str) -> list[np.ndarray]:
        """Send this party's own clear array to every compute party; returns all, in party order.

        ``kind`` (no default): ``PUBLIC`` for study metadata that is not secret within
        the study (sample counts, policy bits, key contributions), ``DISCLOSED`` for a
        per-site value derived from its data (it is then a disclosure in the ledger).
        """
        if kind not in (PUBLIC, DISCLOSED):
            raise ValueError(f"allgather kind must be {PUBLIC!r} or {DISCLOSED!r}, not {kind!r}")
        value = np.ascontiguousarray(value)
        value.flags.writeable = False
        self.ledger.record(label, kind, self.parties, value.size)
        tag = self._next_tag(label)
        for p in self.others:
            self.transport.send(p, tag, value)
        return [value if p == self.me else self.transport.recv(p, tag, self.timeout) for p in self.parties]

    def open(self, x: Shared, label: str, *, to=None, bits: int = 64):
        """Disclose the secret ``x`` to ``to`` (default: all compute parties).

        Returns decoded values (int64 if ``x.frac == 0`` else float64) on
        recipients and ``None`` elsewhere; the ledger records the disclosure.
        ``bits`` < 64 promises 0 <= x < 2^bits (a 0/1 bit, a count): fewer bytes on the wire.
        """
        got = self.disclose([x.data], label, to=to, bits=bits)
        return None if got is None else decode(got[0], x.frac)

    # -- correlated randomness -------------------------------------------------------
    def _fetch(self, kind: str, args: dict, ahead: bool = False) -> Bundle:
        """Run recipe ``kind`` for this party; the lead asks the dealer, one party gets the corrections.

        The request leaves at once and the reply is awaited only when a derived
        share is first used (see ``Bundle``), so dealer work overlaps protocol work.
        The corrections go to the lead, or for a rotating recipe to compute party
        seq mod n (``correlated.corrected_party``): the dealer's traffic is spread over
        every party's link. Request seq draws from keystream seq of the pairwise seed with
        the dealer (``PRG.stream``), so the dealer may answer it out of order (``ahead``).
        """
        self.dealer_requests += 1
        seq = self._dealer_seq
        self._dealer_seq += 1
        corrected = self.parties[corrected_party(kind, seq, self.n)]
        gen = PartyGen(self._prg[self.dealer].stream(seq), lead=self.me == corrected, index=self.index, n=self.n)
        items = RECIPES[kind](gen, **args)
        if self.is_lead:
            req = json.dumps({"kind": kind, "args": args, "ahead": bool(ahead)}).encode()
            self.transport.send(self.dealer, f"dealer/{seq}", np.frombuffer(req, dtype=np.uint8))
        if self.me != corrected:
            return Bundle(items, derived_ids=gen.derived_ids, wait=self.wait_point)

        def receive() -> np.ndarray:
            t0 = time.perf_counter()
            got = self.transport.recv(self.dealer, f"dealer/{seq}", self.timeout)
            self.waited["dealer"] += time.perf_counter() - t0
            if got.dtype != U64 or got.size != gen.pos:
                raise PeerError(self.dealer, f"correlated randomness ({kind})", "malformed reply")
            return got

        return Bundle(items, receive, derived_ids=gen.derived_ids, wait=self.wait_point)

    def wait_point(self, fn: Callable[[], np.ndarray] | None):
        """``fn()`` (a dealer reply; ``None``: nothing to wait for) at a point every party reaches in its
        program; inside a staggered task (``mpc.pipeline.stagger``) the other tasks run meanwhile."""
        sched = self.schedulers.get(threading.get_ident())
        if sched is not None:
            return sched.wait(fn)
        return None if fn is None else fn()

    def serve_dealer(self) -> None:
        """The dealer's loop: answer the lead's requests until it says stop.

        Requests are answered in order, except that one made ahead (``Provider.fetch_ahead``: material
        needed well after the requests that follow it) waits while a later ordinary request is pending:
        a large prefetch does not hold up the small request the parties need next. Ordinary requests
        keep their order among themselves (the ``state`` they build over several requests); a request
        made ahead sees none of it.
        """
        if not self.is_dealer:
            raise RuntimeError("serve_dealer runs on the dealer only")
        load_recipes()  # the protocols register their recipes on import
        own = PRG(new_seed())
        prgs = [self._prg[p] for p in self.parties]
        state: dict = {}
        pending: list[tuple[int, str, dict, bool]] = []  # (seq, kind, args, ahead), received, not answered
        seq, stop = 0, False
        while True:
            while not stop and (not pending or self.transport.ready(self.lead, f"dealer/{seq}")):
                req = self._dealer_request(seq)
                if req is None:
                    stop = True
                else:
                    pending.append(req)
                    seq += 1
            if not pending:
                return
            at, kind, args, ahead = pending.pop(next_request(pending))
            corrected = corrected_party(kind, at, len(prgs))
            gen = DealerGen([p.stream(at) for p in prgs], corrected, own, {} if ahead else state)
            RECIPES[kind](gen, **args)
            self.transport.send(self.parties[corrected], f"dealer/{at}", gen.corrections())
            del gen  # its values and scratch are not held while the dealer waits for the next request
            self.dealer_requests += 1

    def _dealer_request(self, seq: int) -> tuple[int, str, dict, bool] | None:
        """The lead's request number ``seq`` (waiting for it), checked; ``None`` for the lead's stop."""
        t0 = time.perf_counter()
        raw = self.transport.recv(self.lead, f"dealer/{seq}", self.timeout)
        self.waited["requests"] += time.perf_counter() - t0
        try:
            req = json.loads(raw.tobytes().decode())
            kind, args, ahead = req["kind"], req["args"], req.get("ahead", False)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise PeerError(self.lead, "dealer request", f"malformed request ({exc})") from None
        if kind == _STOP:
            return None
        if kind not in RECIPES:
            raise PeerError(self.lead, "dealer request", f"unknown correlated object {kind!r}")
        if not isinstance(args, dict) or not isinstance(ahead, bool):
            raise PeerError(self.lead, "dealer request", "malformed request (arguments)")
        return seq, kind, args, ahead

    def finish(self) -> None:
        """End the job for the dealer (the lead tells it to stop)."""
        if self.is_lead:
            req = json.dumps({"kind": _STOP, "args": {}}).encode()
            self.transport.send(self.dealer, f"dealer/{self._dealer_seq}", np.frombuffer(req, dtype=np.uint8))

    # -- reporting -------------------------------------------------------------------
    def stage(self, name: str) -> "_Stage":
        """Context manager that records time, bytes and rounds of a named stage."""
        return _Stage(self, name)

    def report(self) -> dict:
        """Traffic, rounds, stages and the disclosure ledger of this party (no secrets)."""
        return {
            "party": self.me,
            "role": "dealer" if self.is_dealer else ("lead" if self.is_lead else "party"),
            **self.transport.stats.as_dict(),
            "rounds": self.rounds,
            "dealer_requests": self.dealer_requests,
            "waited_s": {k: round(v, 3) for k, v in self.waited.items()},
            "stages": list(self._stages),
            "ledger": self.ledger.as_list(),
        }


def next_request(pending: list) -> int:
    """Index in ``pending`` (the dealer's received requests (seq, kind, args, ahead), in order) of the one to
    answer next: the first ordinary request, else the first made ahead."""
    return next((i for i, r in enumerate(pending) if not r[3]), 0)


class _Stage:
    def __init__(self, ctx: Context, name: str):
        self.ctx, self.name = ctx, name

    def __enter__(self):
        st = self.ctx.transport.stats
        self.t0, self.b0, self.r0 = time.perf_counter(), st.bytes_sent, self.ctx.rounds
        self.c0 = time.process_time()
        self.w0 = dict(self.ctx.waited)
        self.ctx.progress = self.name
        log.info("stage %s started", self.name)
        return self

    def __exit__(self, *exc):
        st = self.ctx.transport.stats
        rec = {
            "stage": self.name,
            "seconds": time.perf_counter() - self.t0,
            "bytes_sent": st.bytes_sent - self.b0,
            "rounds": self.ctx.rounds - self.r0,
            "waited_s": {k: round(v - self.w0[k], 3) for k, v in self.ctx.waited.items()},
            # CPU time of the whole daemon process (all threads, and any other job it runs meanwhile)
            "process_cpu_s": round(time.process_time() - self.c0, 3),
        }
        self.ctx._stages.append(rec)
        log.info("stage %s done in %.3f s (process CPU %.2f s), %d bytes sent, %d rounds", self.name, rec["seconds"],
                 rec["process_cpu_s"], rec["bytes_sent"], rec["rounds"])
        return False
