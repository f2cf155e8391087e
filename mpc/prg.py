"""A seeded pseudo-random generator: AES-128 in counter mode expanded into ring elements.

Two parties holding the same 16-byte seed draw identical streams, which is how
input shares and the dealer's correlated randomness are created without
traffic: both sides call the same draws in the same order.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["PRG", "SEED_BYTES", "new_seed", "derive_seed"]

SEED_BYTES = 16
_ZEROS = bytearray()


def new_seed() -> bytes:
    """A fresh uniformly random seed from the operating system."""
    return os.urandom(SEED_BYTES)


def derive_seed(seed: bytes, label: str) -> bytes:
    """A sub-seed bound to ``label`` (domain separation), via SHA-256."""
    return hashlib.sha256(seed + b"|" + label.encode()).digest()[:SEED_BYTES]


def _zeros(n: int) -> memoryview:
    """A read-only view of at least n zero bytes (grown on demand, shared)."""
    global _ZEROS
    if len(_ZEROS) < n:
        _ZEROS = bytearray(max(n, 2 * len(_ZEROS)))
    return memoryview(_ZEROS)[:n]


class PRG:
    """AES-128-CTR keystream. ``ring(shape)`` gives uint64 ring elements, ``bits`` 0/1.

    Not thread-safe: one instance is used by one party's thread. Throughput is that
    of AES-NI (several GB/s) because the keystream is written straight into the
    output array with ``update_into``.
    """

    __slots__ = ("_seed", "_enc", "drawn")

    def __init__(self, seed: bytes, nonce: int = 0):
        if len(seed) != SEED_BYTES:
            raise ValueError(f"PRG seed must be {SEED_BYTES} bytes")
        self._seed = bytes(seed)
        # the 128-bit counter block starts at nonce * 2^64: a stream of fewer than 2^64 blocks never
        # reaches another nonce's blocks
        self._enc = Cipher(algorithms.AES(self._seed), modes.CTR((int(nonce) << 64).to_bytes(16, "big"))).encryptor()
        self.drawn = 0

    def stream(self, index: int) -> "PRG":
        """Keystream number ``index`` (>= 0) under this PRG's seed: counter blocks from (index + 1) 2^64 on,
        so it is independent of this PRG's own stream (nonce 0) and of every other index. Both holders of
        a seed can so draw the material of request ``index`` in any order (the dealer's requests)."""
        if not 0 <= int(index) < (1 << 63):
            raise ValueError("stream index out of range")
        return PRG(self._seed, int(index) + 1)

    def bytes_into(self, buf: np.ndarray, n: int) -> np.ndarray:
        """The next n keystream bytes written into ``buf`` (contiguous uint8 of at least n + 15 bytes:
        ``update_into`` needs room for one extra block); returns ``buf[:n]``."""
        if buf.dtype != np.uint8 or buf.size < n + 15 or not buf.flags.c_contiguous:
            raise ValueError(f"the keystream needs a contiguous uint8 buffer of at least {n + 15} bytes")
        written = self._enc.update_into(_zeros(n), buf) if n else 0
        assert written == n
        self.drawn += n
        return buf[:n]

    def bytes(self, n: int) -> np.ndarray:
        """n pseudo-random bytes as a uint8 array."""
        return self.bytes_into(np.empty(n + 15, dtype=np.uint8), n)

    def ring_into(self, buf: np.ndarray, shape) -> np.ndarray:
        """``ring(shape)`` written into ``buf`` (see ``bytes_into``): the same draw without a fresh array."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = 8 * int(np.prod(shape, dtype=np.int64))
        return self.bytes_into(buf, n).view(np.uint64).reshape(shape)

    def ring(self, shape) -> np.ndarray:
        """Uniform ring elements (uint64) of the given shape."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        return self.ring_into(np.empty(8 * n + 15, dtype=np.uint8), shape)

    def bits(self, shape) -> np.ndarray:
        """Uniform bits as uint64 0/1 values of the given shape."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        raw = np.unpackbits(self.bytes((n + 7) // 8))[:n]
        return raw.astype(np.uint64).reshape(shape)
