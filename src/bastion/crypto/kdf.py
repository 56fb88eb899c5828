"""Access-code key derivation: a memory-hard KDF (argon2id or scrypt) turns a human code into a key.

The parameters travel with each wrap (they are authenticated there), so the defaults can be raised
later without breaking old artifacts, and tests can use tiny ones.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from bastion.errors import CryptoError, Invalid

KEY_LEN = 32
SALT_LEN = 16
MAX_CODE_BYTES = 1024

# Bounds applied when parameters are read back, so a damaged record cannot ask for absurd work.
_MAX_MEMORY_BYTES = 1024**3
_ARGON2_MEMORY_KIB = (8, _MAX_MEMORY_BYTES // 1024)
_ARGON2_TIME = (1, 64)
_PARALLELISM = (1, 16)
_SCRYPT_LOG2_N = (1, 22)
_SCRYPT_R = (1, 32)


@dataclass(frozen=True)
class KdfParams:
    """Which KDF and how hard. ``argon2id`` uses time/memory/parallelism; ``scrypt`` uses n/r/p."""

    algorithm: str = "argon2id"
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 1
    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        def within(value: int, bounds: tuple[int, int], name: str) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
                raise CryptoError(f"KDF parameter {name} out of range")

        if self.algorithm == "argon2id":
            within(self.time_cost, _ARGON2_TIME, "time_cost")
            within(self.memory_kib, _ARGON2_MEMORY_KIB, "memory_kib")
            within(self.parallelism, _PARALLELISM, "parallelism")
            if self.memory_kib < 8 * self.parallelism:
                raise CryptoError("KDF parameter memory_kib must be at least 8 * parallelism")
        elif self.algorithm == "scrypt":
            within(self.n, (2 ** _SCRYPT_LOG2_N[0], 2 ** _SCRYPT_LOG2_N[1]), "n")
            if self.n & (self.n - 1):
                raise CryptoError("KDF parameter n must be a power of two")
            within(self.r, _SCRYPT_R, "r")
            within(self.p, _PARALLELISM, "p")
            if 128 * self.n * self.r > _MAX_MEMORY_BYTES:
                raise CryptoError("KDF parameters n * r need more than 1 GiB")
        else:
            raise CryptoError("unknown KDF algorithm")

    def to_dict(self) -> dict[str, Any]:
        """The parameters that matter for this algorithm, as stored next to a wrap."""
        if self.algorithm == "argon2id":
            return {
                "alg": "argon2id",
                "t": self.time_cost,
                "m": self.memory_kib,
                "p": self.parallelism,
            }
        return {"alg": "scrypt", "n": self.n, "r": self.r, "p": self.p}

    @classmethod
    def from_dict(cls, data: Any) -> KdfParams:
        try:
            if data["alg"] == "argon2id" and set(data) == {"alg", "t", "m", "p"}:
                return cls("argon2id", time_cost=data["t"], memory_kib=data["m"], parallelism=data["p"])
            if data["alg"] == "scrypt" and set(data) == {"alg", "n", "r", "p"}:
                return cls("scrypt", n=data["n"], r=data["r"], p=data["p"])
        except (KeyError, TypeError):
            pass
        raise CryptoError("unreadable KDF parameters")


DEFAULT_PARAMS = KdfParams()
"""argon2id, 3 passes over 64 MiB: comfortably above OWASP's floor, ~0.1-0.3 s per derivation."""

FAST_TEST_PARAMS = KdfParams("argon2id", time_cost=1, memory_kib=8, parallelism=1)
"""For tests only: derivations in microseconds. Never use for real codes."""


def new_salt() -> bytes:
    return os.urandom(SALT_LEN)


def normalize_code(code: str | bytes) -> bytes:
    """NFC-normalise and encode, so the same code typed on two keyboards derives the same key."""
    raw = unicodedata.normalize("NFC", code).encode() if isinstance(code, str) else bytes(code)
    if not raw:
        raise Invalid("access code must not be empty", code="invalid_access_code")
    if len(raw) > MAX_CODE_BYTES:
        raise Invalid("access code is too long", code="invalid_access_code")
    return raw


def derive_key(code: str | bytes, salt: bytes, params: KdfParams = DEFAULT_PARAMS) -> bytes:
    """A 32-byte key from ``code`` and ``salt``."""
    secret = normalize_code(code)
    if len(salt) < SALT_LEN:
        raise CryptoError("KDF salt too short")
    if params.algorithm == "argon2id":
        from argon2.low_level import Type, hash_secret_raw

        return hash_secret_raw(
            secret,
            salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=KEY_LEN,
            type=Type.ID,
        )
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=KEY_LEN, n=params.n, r=params.r, p=params.p).derive(secret)
