"""Sealed boxes: encrypt to a recipient's X25519 public key with no prior shared secret.

A site seals its model update to the server's public key. Each box uses a fresh ephemeral X25519
key, so only the server's private key opens it and a leaked box says nothing about any other box.

Wire format (version 1)::

    b"BSX1" | ephemeral public key (32) | AES-256-GCM ciphertext | tag (16)

The AES key and the 96-bit nonce come from HKDF-SHA256 over the X25519 shared secret, with both
public keys in the HKDF info (as in HPKE's key schedule). The nonce never repeats because the key
never repeats. The caller's associated data (``aad``) is authenticated but not encrypted: the
federation envelope binds federation, round, participant and nonce into it.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.crypto.signing import b64url_decode, b64url_encode
from bastion.errors import CryptoError, IntegrityError

MAGIC = b"BSX1"
KEY_BYTES = 32
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_BYTES
OVERHEAD = HEADER_BYTES + TAG_BYTES
_INFO = b"bastion/sealed/x25519-hkdf-sha256-aes256gcm/v1"

Buffer = bytes | bytearray | memoryview


def generate_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_key_bytes(key: X25519PublicKey | X25519PrivateKey) -> bytes:
    pub = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def encode_public_key(key: X25519PublicKey | X25519PrivateKey) -> str:
    """Raw 32-byte X25519 public key as unpadded base64url: what sites fetch from the server."""
    return b64url_encode(public_key_bytes(key))


def decode_public_key(text: str) -> X25519PublicKey:
    raw = b64url_decode(text, expected_len=KEY_BYTES, what="X25519 public key")
    return X25519PublicKey.from_public_bytes(raw)


def private_key_to_bytes(key: X25519PrivateKey) -> bytes:
    """Raw 32-byte private key for the key ring to encrypt at rest; never log it."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    if len(raw) != KEY_BYTES:
        raise CryptoError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def sealed_size(plaintext_len: int) -> int:
    return plaintext_len + OVERHEAD


def _derive(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> tuple[AESGCM, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES + 12,
        salt=None,
        info=_INFO + ephemeral_pub + recipient_pub,
    ).derive(shared)
    return AESGCM(okm[:KEY_BYTES]), okm[KEY_BYTES:]


def _exchange(private: X25519PrivateKey, peer: X25519PublicKey) -> bytes:
    try:
        return private.exchange(peer)
    except ValueError as exc:  # low-order point: the shared secret would be all zeros
        raise CryptoError("sealed box uses an invalid public key") from exc


def seal_parts(recipient: X25519PublicKey, plaintext: Buffer, aad: Buffer = b"") -> tuple[bytes, bytes]:
    """The box as ``(header, ciphertext + tag)``: lets a caller frame or stream it without a copy."""
    ephemeral = X25519PrivateKey.generate()
    eph_pub = public_key_bytes(ephemeral)
    aead, nonce = _derive(_exchange(ephemeral, recipient), eph_pub, public_key_bytes(recipient))
    return MAGIC + eph_pub, aead.encrypt(nonce, plaintext, MAGIC + bytes(aad))


def seal(recipient: X25519PublicKey, plaintext: Buffer, aad: Buffer = b"") -> bytes:
    """Encrypt ``plaintext`` so that only ``recipient``'s private key can open it."""
    header, body = seal_parts(recipient, plaintext, aad)
    return header + body


def open(recipient: X25519PrivateKey, sealed: Buffer, aad: Buffer = b"") -> bytes:
    """Decrypt a sealed box; :class:`CryptoError` (or :class:`IntegrityError`) on any failure."""
    view = memoryview(sealed).cast("B")
    if len(view) < OVERHEAD:
        raise CryptoError("sealed box is truncated", code="malformed_sealed_box")
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise CryptoError(
            "not a Bastion sealed box (bad magic or unsupported version)", code="malformed_sealed_box"
        )
    eph_pub = bytes(view[len(MAGIC) : HEADER_BYTES])
    aead, nonce = _derive(
        _exchange(recipient, X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, public_key_bytes(recipient)
    )
    try:
        return aead.decrypt(nonce, view[HEADER_BYTES:], MAGIC + bytes(aad))
    except InvalidTag as exc:
        raise IntegrityError(
            "sealed box failed authentication: wrong key, wrong associated data or altered bytes"
        ) from exc
