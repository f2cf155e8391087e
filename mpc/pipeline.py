"""Pipelined MPC tasks: independent pieces of work whose openings share rounds, in a wavefront.

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
"""
from __future__ import annotations

import threading
from typing import Any, Callable

__all__ = ["pipeline", "PipelineAborted"]


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
        self.done = True
        self.sched.back.release()

    def resume(self) -> None:
        """Run the task (start it the first time) until its next opening or its end; the scheduler waits."""
        if self.thread.ident is None:
            self.thread.start()
            self.sched.by_thread[self.thread.ident] = self
        self.go.release()
        self.sched.back.acquire()


class _Scheduler:
    """The baton between the scheduling thread and the task threads of one ``pipeline`` call."""

    def __init__(self):
        self.back = threading.Semaphore(0)
        self.aborted = False
        self.by_thread: dict[int, _Task] = {}

    def owns(self) -> bool:
        return threading.get_ident() in self.by_thread

    def submit(self, requests: list[tuple]):
        """Called by ``Context.open_requests`` inside a task with its openings of one round (as
        ``Context.open_batch`` takes them): hand them over, wait for their values."""
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

    ``window <= 1`` (or one task, or a call from inside a task) runs them one after the other.
    """
    if window <= 1 or len(tasks) <= 1 or ctx.scheduler is not None:
        return [t() for t in tasks]
    sched = _Scheduler()
    results: list[Any] = [None] * len(tasks)
    waiting = list(enumerate(tasks))
    flight: list[tuple[int, _Task]] = []
    step: list[_Task] = []

    def advance(i: int, task: _Task) -> None:
        task.resume()
        if task.error is not None:
            raise task.error
        if task.done:
            results[i] = task.value
            flight.remove((i, task))
        else:
            step.append(task)

    ctx.scheduler = sched
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
                outs = ctx.open_batch([r for t in step for r in t.requests])
                pos = 0
                for t in step:
                    k = len(t.requests)
                    t.requests, t.result, pos = None, outs[pos : pos + k], pos + k
    finally:
        ctx.scheduler = None
        sched.aborted = True
        for _i, task in flight:
            if task.thread.ident is not None and not task.done:
                task.go.release()
                sched.back.acquire()
    return results
