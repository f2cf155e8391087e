"""Pipelined MPC tasks: independent pieces of work whose openings share rounds (``pipeline``) or
whose rounds overlap each other's computation (``stagger``).

A task is a function of no arguments that runs protocol code on one ``Context``
(a chunk of a batched matching, say) and opens values only through
``Context.open_masked`` / ``disclose`` / ``open``. ``pipeline(ctx, tasks, window)``
runs them as coroutines: at step t every task in flight runs up to its next
opening, the next task joins while fewer than ``window`` are in flight, and the
openings of all of them go out in ONE round (``Context.open_batch``, each still
recorded in the ledger under its own label). Task i so executes its round t - i
at step t: k tasks of R rounds each take k + R - 1 rounds with ``window >= R``
(about ceil(k / window) R + window - 1 with a smaller window) instead of k R.

Every party runs the tasks one at a time in the same fixed order, so their
draws from the pairwise PRGs and their dealer requests stay in lock-step (SPMD).
Other traffic inside a task (``exchange``, ``allgather``, dealer replies) is not
merged: it costs its own round as before. The coroutines are threads handed one
baton (a pair of semaphores): only one of them ever runs, and the protocol code
needs no rewrite into generators. Memory: the tasks in flight hold their state
at once; callers size tasks and the window so that this fits their budget.

``stagger(ctx, tasks)`` runs every task from the start, each with its own messages: a task's
openings are sent as soon as it reaches them, and their values are collected only when its
turn comes again, after the other tasks have computed their step. On a link with round-trip
time L where one step of all tasks computes for C, a step costs about max(L, C) instead of
C + L: the wait for one task's round is spent on the others' work. The tasks' exchanges of
one cycle (one step of each task) travel together, so a cycle is one round of latency and
is counted as one (``Context.post_batch(count=False)`` for all but the first); bytes are
those of the tasks run one by one. A ``pipeline`` inside a staggered task merges its own
tasks' openings and hands them to the stagger as that task's step.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

__all__ = ["pipeline", "stagger", "contiguous_parts", "PipelineAborted"]


class PipelineAborted(RuntimeError):
    """Raised inside a task whose pipeline was abandoned (another task failed)."""


class _Task:
    def __init__(self, fn: Callable[[], Any], sched: "_Scheduler"):
        self.fn, self.sched = fn, sched
        self.go = threading.Semaphore(0)
        self.requests = self.result = self.value = self.error = None
        self.done = False
        self.thread = threading.Thread(target=self._main, name="cipherome-pipeline-task", daemon=True)

    def _main(self) -> None:
        self.go.acquire()
        try:
            if self.sched.aborted:
                raise PipelineAborted("pipeline abandoned")
            self.value = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the scheduler, which re-raises it
            self.error = exc
        self.fn = None  # the task and its scheduler form a cycle: drop what the closure holds now, not at a GC
        self.done = True
        self.sched.back.release()

    def resume(self) -> None:
        """Run the task (start it the first time) until its next opening or its end; the scheduler waits."""
        if self.thread.ident is None:
            self.thread.start()
            self.sched.register(self)
        self.go.release()
        self.sched.back.acquire()


class _Wait:
    """A staggered task's wait for something other than an opening (a dealer reply): no message, no round."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self):
        return None if self.fn is None else self.fn()


class _Scheduler:
    """The baton between the scheduling thread and the task threads of one ``pipeline``/``stagger`` call."""

    def __init__(self, ctx, staggered: bool = False):
        self.ctx, self.staggered = ctx, staggered
        self.back = threading.Semaphore(0)
        self.aborted = False
        self.by_thread: dict[int, _Task] = {}

    def register(self, task: _Task) -> None:
        """Route the task thread's openings here (``Context.open_requests``)."""
        self.by_thread[task.thread.ident] = task
        self.ctx.schedulers[task.thread.ident] = self

    def close(self, tasks) -> None:
        """Abandon the tasks still running (after an error) and unregister every task thread."""
        self.aborted = True
        for task in tasks:
            if task.thread.ident is not None and not task.done:
                task.go.release()
                self.back.acquire()
        for ident in self.by_thread:
            self.ctx.schedulers.pop(ident, None)
        self.by_thread.clear()

    def wait(self, fn):
        """Called by ``Context.wait_point`` inside a task: in a stagger, hand the wait over (the other
        tasks run before it is collected); in a pipeline, wait here (its steps are merged rounds)."""
        return self.submit(_Wait(fn)) if self.staggered else _Wait(fn)()

    def submit(self, requests):
        """Called by ``Context.open_requests`` inside a task with its openings of one round (as
        ``Context.open_batch`` takes them), or by ``wait`` with a ``_Wait``: hand them over, wait for
        their values."""
        task = self.by_thread[threading.get_ident()]
        task.requests = requests
        self.back.release()
        task.go.acquire()
        if self.aborted:
            raise PipelineAborted("pipeline abandoned")
        out, task.result = task.result, None
        return out


def pipeline(ctx, tasks: list[Callable[[], Any]], window: int) -> list[Any]:
    """Results of ``tasks`` (in order), run in a wavefront of at most ``window`` in flight (see the module docstring).

    ``window <= 1`` (or one task) runs them one after the other. Inside a task of another
    pipeline or stagger, each merged step is that task's opening.
    """
    if window <= 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    sched = _Scheduler(ctx)
    results: list[Any] = [None] * len(tasks)
    waiting = list(enumerate(tasks))
    flight: list[tuple[int, _Task]] = []
    step: list[_Task] = []

    def advance(i: int, task: _Task) -> None:
        task.resume()
        if task.error is not None:
            raise task.error
        if task.done:
            results[i], task.value = task.value, None
            flight.remove((i, task))
        else:
            step.append(task)

    try:
        while waiting or flight:
            step.clear()
            for i, task in list(flight):
                advance(i, task)
            if waiting and len(flight) < window:  # one new task per step: tasks in flight are at distinct rounds
                i, fn = waiting.pop(0)
                flight.append((i, _Task(fn, sched)))
                advance(*flight[-1])
            if step:
                outs = ctx.open_requests([r for t in step for r in t.requests])
                pos = 0
                for t in step:
                    k = len(t.requests)
                    t.requests, t.result, pos = None, outs[pos : pos + k], pos + k
    finally:
        sched.close([task for _i, task in flight])
    return results


def stagger(ctx, tasks: list[Callable[[], Any]]) -> list[Any]:
    """Results of ``tasks`` (in order), all started at once, each task's rounds overlapping the others'
    computation (see the module docstring). One task, or a call inside another task, runs them in turn.

    Cycle c: for each unfinished task in order, collect its round c - 1 (sent one cycle ago),
    run it to its next opening and send that (round c). Every party runs the same order, so
    PRG draws, dealer requests and message tags stay in lock-step.
    """
    if len(tasks) <= 1 or threading.get_ident() in ctx.schedulers:
        return [t() for t in tasks]
    sched = _Scheduler(ctx, staggered=True)
    live = [_Task(fn, sched) for fn in tasks]
    results: list[Any] = [None] * len(tasks)
    posted: dict[int, Callable[[], list]] = {}
    try:
        while not all(t.done for t in live):
            first = True
            for i, task in enumerate(live):
                if task.done:
                    continue
                if i in posted:
                    task.result = posted.pop(i)()
                task.resume()
                if task.error is not None:
                    raise task.error
                if task.done:
                    results[i], task.value = task.value, None
                    continue
                if isinstance(task.requests, _Wait):  # collected at its next turn, like an opening
                    posted[i] = task.requests
                else:
                    posted[i] = ctx.post_batch(task.requests, count=first)
                    first = False
                task.requests = None
    finally:
        sched.close(live)
    return results


def contiguous_parts(n: int, parts: int) -> list[slice]:
    """At most ``parts`` contiguous, nearly equal, non-empty slices covering range(n) (one empty slice if n = 0)."""
    cuts = np.linspace(0, n, max(1, min(int(parts), n)) + 1).astype(np.int64)
    return [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
