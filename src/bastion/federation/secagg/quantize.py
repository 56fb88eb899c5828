"""Fixed-point encoding of float updates into words that add up without overflow.

A coordinate is clipped to [-clip, clip] and mapped to an integer in [0, 2**bits - 1]. The sum of n
such integers needs bits + ceil(log2 n) bits; the word (and so the masking modulus 2**32 or 2**64) is
the smallest that holds it, so the unmasked sum is exact integer arithmetic and the only error is the
rounding of each input: at most n / (2 * scale) per coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bastion.errors import Invalid

MAX_BITS = 48  # float64 decodes sums exactly below 2**53


def required_bits(bits: int, n_clients: int) -> int:
    """Bits needed by the sum of ``n_clients`` encoded values."""
    return bits + max(1, math.ceil(math.log2(max(n_clients, 2))))


def word_bits_for(bits: int, n_clients: int) -> int:
    """32 when the sum fits a uint32, else 64; refuses settings that would overflow a uint64."""
    need = required_bits(bits, n_clients)
    if need <= 32:
        return 32
    if need <= 64:
        return 64
    raise Invalid(f"{bits}-bit values from {n_clients} clients would overflow a 64-bit sum")


@dataclass(frozen=True)
class Quantizer:
    """Encoder for one round: ``clip`` bounds each coordinate, ``bits`` sets the resolution."""

    clip: float
    bits: int
    word_bits: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise Invalid("clip range must be a positive number")
        if not 2 <= self.bits <= MAX_BITS:
            raise Invalid(f"quantization bits must be between 2 and {MAX_BITS}")
        if self.word_bits not in (32, 64) or self.bits >= self.word_bits:
            raise Invalid("word size must be 32 or 64 bits and larger than the quantization bits")

    @classmethod
    def for_clients(cls, clip: float, bits: int, n_clients: int) -> Quantizer:
        return cls(clip=clip, bits=bits, word_bits=word_bits_for(bits, n_clients))

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        return np.dtype(np.uint32 if self.word_bits == 32 else np.uint64)

    @property
    def scale(self) -> float:
        result: float = (2**self.bits - 1) / (2 * self.clip)
        return result

    def max_clients(self) -> int:
        """How many encoded values the word can add without wrapping."""
        result: int = (2**self.word_bits - 1) // (2**self.bits - 1)
        return result

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Clip and round ``x`` to words; refuses NaN and infinities, which would poison the sum."""
        values = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise Invalid("update contains NaN or infinite values")
        clipped = np.clip(values, -self.clip, self.clip)
        return np.rint((clipped + self.clip) * self.scale).astype(self.dtype)

    def decode_sum(self, total: np.ndarray, count: int) -> np.ndarray:
        """Float sum of ``count`` encoded vectors from their exact integer sum."""
        if count > self.max_clients():
            raise Invalid("more inputs than the word can hold without overflow")
        return total.astype(np.float64) / self.scale - count * self.clip

    def max_error(self, count: int) -> float:
        """Worst-case absolute error per coordinate of a decoded sum of ``count`` inputs."""
        return count * 0.5 / self.scale
