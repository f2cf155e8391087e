"""The error raised for bad user input: a file that cannot be read as what it claims to be.

An :class:`InputError` message names the file, the line or record, the problem and
what to do about it; command-line front ends print it without a traceback. Its
``kind`` (e.g. "phenotype file has a non-numeric value") is the only part that
leaves the site when the input fails a job run by a daemon (see
``cipherome.mpc.errors``): the message itself stays in the site's log.
"""
from __future__ import annotations

from cipherome.mpc.errors import SiteError

__all__ = ["InputError"]


class InputError(SiteError, ValueError):
    """Bad input data or arguments; the message is meant for the user as it stands."""

    default_kind = "a site input file is invalid"
