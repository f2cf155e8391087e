"""A party's additive share of a secret numpy array, with its fixed-point scale.

The secret is the sum of all compute parties' ``data`` modulo 2^64, read as a
fixed-point number with ``frac`` fractional bits (``frac == 0``: an integer).
Everything here is local (no traffic): addition of shares, public constants
(added by the lead party only), multiplication by public integers, sums,
indexing, reshaping and concatenation. Multiplying two secrets or by a public
real needs the protocols in ``cipherome.protocols``.
"""
from __future__ import annotations

import numbers

import numpy as np

from .ring import encode, to_ring

__all__ = ["Shared", "concat", "stack"]

U64 = np.uint64


class Shared:
    """This party's share of a secret array. ``ctx`` is the party runtime (``Context``)."""

    __slots__ = ("ctx", "data", "frac")
    __array_priority__ = 1000  # make ndarray + Shared call Shared.__radd__

    def __init__(self, ctx, data: np.ndarray, frac: int):
        self.ctx = ctx
        self.data = np.asarray(data, dtype=U64)
        self.frac = int(frac)

    # -- shape -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:  # never shows the share itself
        return f"Shared(shape={self.shape}, frac={self.frac})"

    def _new(self, data, frac=None) -> "Shared":
        return Shared(self.ctx, data, self.frac if frac is None else frac)

    def __getitem__(self, idx) -> "Shared":
        return self._new(self.data[idx])

    def reshape(self, *shape) -> "Shared":
        return self._new(self.data.reshape(*shape))

    def ravel(self) -> "Shared":
        return self._new(self.data.ravel())

    @property
    def T(self) -> "Shared":
        return self._new(self.data.T)

    def transpose(self, *axes) -> "Shared":
        return self._new(self.data.transpose(*axes))

    def broadcast_to(self, shape) -> "Shared":
        return self._new(np.broadcast_to(self.data, shape))

    def copy(self) -> "Shared":
        return self._new(self.data.copy())

    # -- scale -------------------------------------------------------------
    def with_frac(self, frac: int) -> "Shared":
        """The same value with more fractional bits (exact: a left shift)."""
        if frac < self.frac:
            raise ValueError("lowering the scale needs protocols.truncate")
        if frac == self.frac:
            return self
        return self._new(self.data << U64(frac - self.frac), frac)

    def _public(self, value) -> np.ndarray:
        """A public constant encoded at this value's scale."""
        v = np.asarray(value)
        if v.dtype.kind in "iub":
            return to_ring(v) << U64(self.frac) if self.frac else to_ring(v)
        return encode(v, self.frac)

    # -- linear operations (local) ------------------------------------------
    def __add__(self, other) -> "Shared":
        if isinstance(other, Shared):
            f = max(self.frac, other.frac)
            return self._new(self.with_frac(f).data + other.with_frac(f).data, f)
        if self.ctx.is_lead:
            return self._new(self.data + self._public(other))
        return self._new(np.broadcast_to(self.data, np.broadcast_shapes(self.shape, np.shape(other))).copy())

    __radd__ = __add__

    def __neg__(self) -> "Shared":
        return self._new(U64(0) - self.data)

    def __sub__(self, other) -> "Shared":
        if isinstance(other, Shared):
            return self + (-other)
        return self + (-np.asarray(other))

    def __rsub__(self, other) -> "Shared":
        return (-self) + other

    def __mul__(self, other) -> "Shared":
        """Multiply by a public *integer* (scalar or array); scale unchanged."""
        if isinstance(other, Shared):
            raise TypeError("secret * secret needs cipherome.protocols.mul")
        v = np.asarray(other)
        if isinstance(other, numbers.Integral) or v.dtype.kind in "iub":
            return self._new(self.data * to_ring(v))
        raise TypeError("secret * public real needs cipherome.protocols.mul_public (it truncates)")

    __rmul__ = __mul__

    def __lshift__(self, bits: int) -> "Shared":
        """Multiply by 2^bits (exact, local)."""
        return self._new(self.data << U64(bits))

    def sum(self, axis=None, keepdims: bool = False) -> "Shared":
        return self._new(self.data.sum(axis=axis, keepdims=keepdims, dtype=U64))

    @classmethod
    def zeros(cls, ctx, shape, frac: int = 0) -> "Shared":
        return cls(ctx, np.zeros(shape, dtype=U64), frac)

    @classmethod
    def public(cls, ctx, value, frac: int) -> "Shared":
        """A public value as a sharing (the lead holds it, everybody else zero)."""
        z = cls.zeros(ctx, np.shape(value), frac)
        return z + value


def _aligned(xs: list[Shared]) -> tuple[list[np.ndarray], int]:
    f = max(x.frac for x in xs)
    return [x.with_frac(f).data for x in xs], f


def concat(xs: list[Shared], axis: int = 0) -> Shared:
    """Concatenate shares along ``axis`` (scales aligned to the largest)."""
    datas, f = _aligned(xs)
    return Shared(xs[0].ctx, np.concatenate(datas, axis=axis), f)


def stack(xs: list[Shared], axis: int = 0) -> Shared:
    """Stack shares along a new ``axis`` (scales aligned to the largest)."""
    datas, f = _aligned(xs)
    return Shared(xs[0].ctx, np.stack(datas, axis=axis), f)
