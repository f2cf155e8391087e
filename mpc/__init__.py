"""The MPC engine (``cipherome.mpc``): ring and fixed-point arithmetic, shares, PRG,
correlated randomness from a dealer, the party runtime and its transports.

It knows nothing of genomics; workloads register jobs in ``cipherome.mpc.jobs``.
"""
from .memory import tune_malloc

tune_malloc()

from .ring import DEFAULT_FRAC, decode, encode  # noqa: E402
from .runtime import Context  # noqa: E402
from .shares import Shared, concat, stack  # noqa: E402

__all__ = ["Context", "Shared", "concat", "stack", "encode", "decode", "DEFAULT_FRAC", "tune_malloc"]
