"""Shamir t-of-n secret sharing over the prime field GF(2**521 - 1).

Why this field: the secrets are 32-byte values (an X25519 private key and a self-mask seed), i.e.
integers below 2**256. The Mersenne prime 2**521 - 1 is the smallest well-known prime comfortably above
that, so each secret is *one* field element: no splitting into limbs, no bias, and no wrap-around that
would corrupt a secret. Shares are 66 bytes. Python integers do the arithmetic; degree t - 1
polynomials for a few hundred neighbours cost milliseconds.

Evaluation points are client ids (positive and below the prime), so a share says whose it is.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from functools import lru_cache

from bastion.errors import CryptoError, Invalid

PRIME = 2**521 - 1
_BITS = 521
SHARE_BYTES = (_BITS + 7) // 8  # 66


def split(secret: bytes, threshold: int, xs: Iterable[int]) -> dict[int, int]:
    """Share ``secret`` so that any ``threshold`` of the points ``xs`` rebuild it and fewer learn nothing."""
    points = sorted(set(xs))
    if threshold < 1 or threshold > len(points):
        raise Invalid(f"threshold {threshold} impossible with {len(points)} share holders")
    if points[0] <= 0 or points[-1] >= PRIME:
        raise Invalid("share points must be positive client ids")
    value = int.from_bytes(secret, "big")
    if value >= PRIME:
        raise Invalid("secret does not fit the field")
    coeffs = [secrets.randbelow(PRIME) for _ in range(threshold - 1)] + [value]  # highest degree first
    shares: dict[int, int] = {}
    for x in points:
        acc = 0
        for c in coeffs:
            acc = acc * x + c
            acc = (acc & PRIME) + (acc >> _BITS)  # Mersenne reduction: 2**521 = 1 (mod p)
        shares[x] = acc % PRIME
    return shares


@lru_cache(maxsize=256)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Coefficients l_i(0) for the points ``xs``; cached because a round reuses the same responder set."""
    coeffs = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        coeffs.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(coeffs)


def combine(shares: Mapping[int, int], threshold: int, length: int) -> bytes:
    """Rebuild a ``length``-byte secret from at least ``threshold`` shares (the first ``threshold`` ids)."""
    if len(shares) < threshold:
        raise Invalid(f"{len(shares)} shares, {threshold} needed")
    xs = tuple(sorted(shares)[:threshold])
    value = sum(c * shares[x] for c, x in zip(_lagrange_at_zero(xs), xs, strict=True)) % PRIME
    if value >= 1 << (8 * length):
        raise CryptoError("shares are inconsistent")
    return value.to_bytes(length, "big")


def share_to_bytes(y: int) -> bytes:
    return y.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    if len(data) != SHARE_BYTES:
        raise CryptoError("malformed share")
    y = int.from_bytes(data, "big")
    if y >= PRIME:
        raise CryptoError("malformed share")
    return y
