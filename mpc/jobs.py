"""The job registry: named job functions that the runtime can run without knowing what they do.

A job is ``fn(ctx, params, site) -> result``: ``ctx`` the party's ``Context``,
``params`` the public job parameters (identical at every party), ``site`` the
party's local resources (its data paths and policy; ``None`` in pure protocol
jobs). Workloads register their jobs here, so that the party daemon in ``mpc``
runs GWAS or filtering jobs by name without importing ``genomics``. The same
function runs in-process in tests and inside daemons in production.
"""
from __future__ import annotations

import importlib
import threading
from typing import Any, Callable

__all__ = ["job", "get_job", "registered_jobs", "load_plugins", "PLUGIN_MODULES"]

JobFn = Callable[[Any, dict, Any], Any]
_JOBS: dict[str, JobFn] = {}

#: modules imported on first lookup so that their jobs register themselves
PLUGIN_MODULES = [
    "cipherome.cli.bench_jobs",
    "cipherome.genomics.jobs",
]
_loaded = False
_load_lock = threading.RLock()  # re-entrant: a plugin may look a job up while importing


def job(name: str):
    """Decorator: register ``fn(ctx, params, site)`` as the job ``name``."""

    def deco(fn: JobFn) -> JobFn:
        if name in _JOBS and _JOBS[name] is not fn:
            raise ValueError(f"job {name!r} registered twice")
        _JOBS[name] = fn
        return fn

    return deco


def load_plugins() -> None:
    """Import the workload modules once, so that their jobs and recipes are registered."""
    global _loaded
    with _load_lock:  # parties running as threads look jobs up at once: none may see a half-filled registry
        if _loaded:
            return
        for mod in PLUGIN_MODULES:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as exc:
                if exc.name != mod:  # a real import error inside the plugin
                    raise
        _loaded = True


def get_job(name: str) -> JobFn:
    """The job registered as ``name``; ``KeyError`` with the known names otherwise."""
    load_plugins()
    try:
        return _JOBS[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; known jobs: {', '.join(sorted(_JOBS)) or 'none'}") from None


def registered_jobs() -> list[str]:
    load_plugins()
    return sorted(_JOBS)
