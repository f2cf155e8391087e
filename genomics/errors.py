"""The error raised for bad user input: a file that cannot be read as what it claims to be.

An :class:`InputError` message names the file, the line or record, the problem and
what to do about it; command-line front ends print it without a traceback. Its
``kind`` (e.g. "phenotype file has a non-numeric value") is the only part that
leaves the site when the input fails a job run by a daemon (see
``cipherome.mpc.errors``): the message itself stays in the site's log.
"""
from __future__ import annotations

from cipherome.mpc.errors import SiteError

__all__ = ["InputError", "read_text", "unknown_samples"]


class InputError(SiteError, ValueError):
    """Bad input data or arguments; the message is meant for the user as it stands."""

    default_kind = "a site input file is invalid"


def read_text(path, failure: str, kind: str, hint: str = "") -> str:
    """The text of ``path`` (UTF-8, undecodable bytes replaced); an unreadable file raises
    ``InputError("{path}: {failure} ({reason}){hint}", kind=kind)``."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: {failure} ({e.strerror}){hint}", kind=kind) from None


def unknown_samples(where, missing: list, place: str, kind: str) -> InputError:
    """The error for requested samples that ``place`` (e.g. "the file", "the header") does not list."""
    return InputError(f"{where}: {len(missing)} requested sample(s) not in {place}, e.g. {missing[0]!r};"
                      " check the sample list", kind=kind)
