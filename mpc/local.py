"""Run a job among n compute parties and a dealer as threads of this process.

This is the in-process deployment used by unit tests and ``--transport inproc``
benchmarks: the same job code and the same runtime as in the daemons, only the
transport differs. If any party fails, the network is aborted so that the others
stop waiting at once, and the first error is raised.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from .blas import limit_blas_threads
from .inproc import InProcNetwork
from .ring import DEFAULT_FRAC
from .runtime import Context
from .transport import JobAborted

__all__ = ["run_local", "LocalRun", "party_names"]

DEALER = "dealer"


def party_names(n: int) -> list[str]:
    """Default compute-party names p0..p{n-1} (p0 is the lead)."""
    return [f"p{i}" for i in range(n)]


@dataclass
class LocalRun:
    results: list[Any]  # one per compute party, in party order
    reports: dict[str, dict]  # party name (and "dealer") -> Context.report()

    def sent_per_party(self) -> float:
        """Mean bytes sent by a compute party (the dealer is reported apart)."""
        parties = [r for name, r in self.reports.items() if name != DEALER]
        return sum(r["bytes_sent"] for r in parties) / len(parties)

    def rounds(self) -> int:
        """Rounds of the lead party (the protocol's round count incl. dealer waits)."""
        return max(r["rounds"] for name, r in self.reports.items() if name != DEALER)


def run_local(
    fn: Callable[..., Any],
    n: int = 3,
    *,
    args: Callable[[int], dict] | list[dict] | None = None,
    frac: int = DEFAULT_FRAC,
    timeout: float = 120.0,
) -> LocalRun:
    """Run ``fn(ctx, **args_i)`` on n compute parties plus a dealer, each a thread.

    ``args`` gives party i's keyword arguments (a list, or a function of i).
    Returns every party's result and report. Raises the first party's exception.
    """
    names = party_names(n)
    net = InProcNetwork(names + [DEALER], timeout=timeout)
    results: list[Any] = [None] * n
    reports: dict[str, dict] = {}
    errors: list[BaseException] = []

    def kwargs(i: int) -> dict:
        if args is None:
            return {}
        return args(i) if callable(args) else args[i]

    def body(name: str, i: int | None) -> None:
        ctx = Context(name, names, DEALER, net.transport(name), frac=frac, timeout=timeout)
        try:
            ctx.setup()
            if i is None:
                ctx.serve_dealer()
            else:
                results[i] = fn(ctx, **kwargs(i))
                ctx.finish()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            if not isinstance(exc, JobAborted):
                errors.append(exc)
            net.abort(f"{name} failed: {type(exc).__name__}")
        finally:
            reports[name] = ctx.report()

    threads = [threading.Thread(target=body, args=(nm, i), name=nm) for i, nm in enumerate(names)]
    threads.append(threading.Thread(target=body, args=(DEALER, None), name=DEALER))
    with limit_blas_threads():  # the parties share this process's cores (mpc/blas.py)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return LocalRun(results, reports)
