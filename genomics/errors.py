"""The error raised for bad user input: a file that cannot be read as what it claims to be.

An :class:`InputError` message names the file, the line or record, the problem and
what to do about it; command-line front ends print it without a traceback.
"""
from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input data or arguments; the message is meant for the user as it stands."""
