"""API keys: ``bst_`` + 32 random base62 characters + a 6-character CRC32 checksum.

The checksum lets us reject typos and random probes without touching the database, and lets secret
scanners recognise leaked keys. Only the SHA-256 of a key is stored: keys carry 190 bits of entropy,
so a fast hash is enough and lookups stay O(1).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

PREFIX = "bst_"
_ALPHABET = string.digits + string.ascii_letters
_BODY = 32
_CHECK = 6


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK)


def generate() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY))
    return f"{PREFIX}{body}{_checksum(body)}"


def well_formed(key: str) -> bool:
    if not key.startswith(PREFIX) or len(key) != len(PREFIX) + _BODY + _CHECK:
        return False
    body, check = key[len(PREFIX) : -_CHECK], key[-_CHECK:]
    if any(c not in _ALPHABET for c in body):
        return False
    return hmac.compare_digest(_checksum(body), check)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """What listings show so a person can tell keys apart: never enough to use."""
    return key[: len(PREFIX) + 6]
