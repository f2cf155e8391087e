"""Secure building blocks on additive shares (``cipherome.protocols``).

Each protocol is a short function whose docstring states its steps (mask, open,
combine), its rounds and its traffic; correlated randomness comes from the
party's provider (the dealer), never from the protocol itself. Importing this
package registers every protocol's correlated-randomness recipes.
"""
# every module that registers dealer recipes must be imported here: a dealer daemon
# only knows the correlated objects of the modules imported in its process
from . import bits, compare, division, normalize, reuse, roots, spdinv  # noqa: F401
from . import beaver_multi, functions, linalg, owned, permute, psi, sketch  # noqa: F401  (non-linear recipes)
from .compare import eq, eqz, ge, gt, le, lt, ltz, maximum, minimum, select, sign
from .division import div, reciprocal
from .functions import exp, log, sigmoid
from .linalg import eigh_top, power_iteration, qr
from .roots import invsqrt, sqrt
from .arith import dot, matmul, mul, mul_public, square
from .trunc import truncate

__all__ = [
    "mul", "square", "matmul", "dot", "mul_public", "truncate",
    # non-linear
    "ltz", "lt", "le", "gt", "ge", "eqz", "eq", "sign", "select", "minimum", "maximum",
    "reciprocal", "div", "sqrt", "invsqrt", "sigmoid", "exp", "log", "qr", "eigh_top", "power_iteration",
]
