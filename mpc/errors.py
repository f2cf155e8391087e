"""Errors that know which part of their text may leave the site that raised them.

A job failure crosses sites (the ABORT sent to every peer, the error in the job
status the submitter reads), but a site's detail - sample IDs, file paths, line
numbers, cell values - must stay in that site's own log. ``SiteError.kind`` is
the public part (what kind of problem, e.g. "phenotype file has a non-numeric
value"); ``public_reason`` builds the text that leaves the site for any exception.
"""
from __future__ import annotations

__all__ = ["SiteError", "PublicError", "public_reason"]


class SiteError(Exception):
    """An error whose message is private to the site; ``kind`` says, without detail, what went wrong.

    ``kind`` must name only a category of problem (never an ID, path, line or value).
    """

    default_kind = "a site input is invalid"

    def __init__(self, message: str = "", *, kind: str | None = None):
        super().__init__(message)
        self.kind = kind or self.default_kind


class PublicError(SiteError):
    """An error whose whole message may leave the site: it is built only from values public in the study.

    Used for failures decided on opened (public) aggregates, e.g. "the phenotype is
    constant over the study's samples", which every party computes identically.
    """

    def __init__(self, message: str):
        super().__init__(message, kind=message)


def public_reason(exc: BaseException) -> str:
    """The text of ``exc`` that may leave the site: the kind of problem, no detail (the caller names the party)."""
    if isinstance(exc, PublicError):
        return str(exc)
    if isinstance(exc, SiteError):
        return f"{exc.kind}; see its log"
    return f"internal error ({type(exc).__name__}); see its log"
