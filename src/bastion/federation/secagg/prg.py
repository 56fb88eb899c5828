"""Mask expansion: a 32-byte seed becomes a vector of uniform words through AES-256-CTR.

AES-CTR under a uniformly random key is a PRF-based PRG; the keystream is produced in one call and
reinterpreted as little-endian words, so expanding 100k words costs one pass of AES-NI, not a Python
loop. Every key is derived with HKDF and bound to its purpose and round, and used for one stream only,
so the all-zero counter block is safe.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.errors import CryptoError

SEED_BYTES = 32
_ZERO_IV = bytes(16)
_DOMAIN = b"bastion-secagg-v1/"


def derive_key(secret: bytes, purpose: str, round_id: str, *ids: int) -> bytes:
    """HKDF-SHA256 of ``secret`` bound to a purpose, a round and client ids (length-prefixed)."""
    info = bytearray(_DOMAIN)
    for part in (purpose.encode(), round_id.encode()):
        info += len(part).to_bytes(2, "big") + part
    for i in ids:
        info += i.to_bytes(4, "big")
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=bytes(info)).derive(secret)


def expand(key: bytes, length: int, dtype: np.dtype[np.unsignedinteger] | type) -> np.ndarray:
    """``length`` uniform words of ``dtype`` (uint32 or uint64) from the AES-256-CTR keystream."""
    if len(key) != SEED_BYTES:
        raise CryptoError("mask seed must be 32 bytes")
    dt = np.dtype(dtype).newbyteorder("<")
    if dt.kind != "u":
        raise CryptoError("masks are unsigned words")
    encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_IV)).encryptor()
    stream = encryptor.update(bytes(length * dt.itemsize))
    return np.frombuffer(stream, dtype=dt)
