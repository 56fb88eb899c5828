"""Ed25519 helpers: signatures bind every byte, keys travel as canonical base64url."""

from __future__ import annotations

import hashlib
import struct

import pytest

from bastion.crypto import signing
from bastion.errors import CryptoError, Invalid


@pytest.fixture(scope="module")
def key() -> signing.Ed25519PrivateKey:
    return signing.generate_signing_key()


def test_sign_and_verify(key: signing.Ed25519PrivateKey) -> None:
    sig = signing.sign(key, b"message")
    assert len(sig) == signing.SIGNATURE_BYTES
    signing.verify(key.public_key(), b"message", sig)


def test_tampered_message_or_signature_fails(key: signing.Ed25519PrivateKey) -> None:
    sig = signing.sign(key, b"message")
    with pytest.raises(CryptoError, match="verification failed") as info:
        signing.verify(key.public_key(), b"messagE", sig)
    assert info.value.code == "bad_signature"
    bad = bytearray(sig)
    bad[10] ^= 1
    with pytest.raises(CryptoError):
        signing.verify(key.public_key(), b"message", bytes(bad))
    with pytest.raises(CryptoError, match="length"):
        signing.verify(key.public_key(), b"message", sig[:63])


def test_other_key_fails(key: signing.Ed25519PrivateKey) -> None:
    sig = signing.sign(key, b"message")
    with pytest.raises(CryptoError):
        signing.verify(signing.generate_signing_key().public_key(), b"message", sig)


def test_public_key_text_round_trip(key: signing.Ed25519PrivateKey) -> None:
    text = signing.encode_public_key(key)
    assert len(text) == 43 and set(text) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    pub = signing.decode_public_key(text)
    signing.verify(pub, b"m", signing.sign(key, b"m"))
    assert signing.encode_public_key(pub) == text


@pytest.mark.parametrize("text", ["", "not base64!", "AAAA", "A" * 42 + "=", "é" * 43])
def test_malformed_public_keys_are_invalid(text: str) -> None:
    with pytest.raises(Invalid):
        signing.decode_public_key(text)


def test_non_canonical_base64_is_refused() -> None:
    raw = bytes(range(32))
    text = signing.b64url_encode(raw)
    assert signing.b64url_decode(text, expected_len=32) == raw
    # Same bytes, different last character (unused low bits set): must not be accepted.
    alt = text[:-1] + chr(ord(text[-1]) + 1)
    with pytest.raises(Invalid):
        signing.b64url_decode(alt, expected_len=32)


def test_private_key_bytes_round_trip(key: signing.Ed25519PrivateKey) -> None:
    raw = signing.private_key_to_bytes(key)
    assert len(raw) == 32
    again = signing.private_key_from_bytes(raw)
    assert signing.encode_public_key(again) == signing.encode_public_key(key)
    with pytest.raises(CryptoError):
        signing.private_key_from_bytes(b"short")


def test_signing_input_is_unambiguous() -> None:
    assert signing.signing_input("c", [b"ab", b"c"]) != signing.signing_input("c", [b"a", b"bc"])
    assert signing.signing_input("c1", [b"x"]) != signing.signing_input("c", [b"1x"])
    assert signing.signing_input("c", [b"x"]) != signing.signing_input("c", [b"x", b""])


def _reference_digest(data: bytes) -> bytes:
    chunk = signing.DIGEST_CHUNK
    root = hashlib.sha256(b"bastion/tree-sha256/v1\x00" + struct.pack(">QQ", len(data), chunk))
    for i in range(0, len(data), chunk):
        root.update(hashlib.sha256(data[i : i + chunk]).digest())
    return root.digest()


@pytest.mark.parametrize("size", [0, 1, signing.DIGEST_CHUNK, 3 * signing.DIGEST_CHUNK + 17])
def test_payload_digest_matches_its_definition(size: int) -> None:
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    assert signing.payload_digest(data) == _reference_digest(data)
    assert signing.payload_digest(memoryview(bytearray(data))) == _reference_digest(data)


def test_payload_digest_sees_every_byte_and_the_length() -> None:
    data = bytearray(3 * signing.DIGEST_CHUNK + 5)
    base = signing.payload_digest(data)
    data[2 * signing.DIGEST_CHUNK + 1] = 1
    assert signing.payload_digest(data) != base
    assert signing.payload_digest(bytes(10)) != signing.payload_digest(bytes(11))


def test_payload_digest_works_in_a_forked_child() -> None:
    """A child forked after the hashing threads started must not wait on threads it does not have."""
    import multiprocessing

    data = bytes(3 * signing.DIGEST_CHUNK)
    expected = signing.payload_digest(data)  # starts the pool in this process
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(signing.payload_digest, (data,)).get(timeout=60) == expected
