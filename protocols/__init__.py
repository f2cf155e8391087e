"""Secure building blocks on additive shares (``cipherome.protocols``).

Each protocol is a short function whose docstring states its steps (mask, open,
combine), its rounds and its traffic; correlated randomness comes from the
party's provider (the dealer), never from the protocol itself. Importing this
package registers every protocol's correlated-randomness recipes and jobs.
"""
from . import jobs  # noqa: F401  (registers bench.* jobs)
# every module that registers dealer recipes must be imported here: a dealer daemon
# only knows the correlated objects of the modules imported in its process
from . import bits, compare, division, normalize, reuse, roots, spdinv  # noqa: F401
from .arith import dot, matmul, mul, mul_public, square
from .trunc import truncate

__all__ = ["mul", "square", "matmul", "dot", "mul_public", "truncate"]
