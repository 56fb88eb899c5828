"""Sealed boxes: only the recipient opens them, and any change to box, key or aad is refused."""

from __future__ import annotations

import pytest

from bastion.crypto import sealed
from bastion.errors import CryptoError, IntegrityError, Invalid


@pytest.fixture(scope="module")
def server_key() -> sealed.X25519PrivateKey:
    return sealed.generate_private_key()


def test_round_trip_with_aad(server_key: sealed.X25519PrivateKey) -> None:
    box = sealed.seal(server_key.public_key(), b"model update bytes", b"federation=f1;round=3")
    assert sealed.open(server_key, box, b"federation=f1;round=3") == b"model update bytes"
    assert len(box) == sealed.sealed_size(len(b"model update bytes"))
    assert b"model update bytes" not in box


def test_each_box_uses_a_fresh_ephemeral_key(server_key: sealed.X25519PrivateKey) -> None:
    a = sealed.seal(server_key.public_key(), b"same", b"")
    b = sealed.seal(server_key.public_key(), b"same", b"")
    assert a != b
    assert a[4:36] != b[4:36]


def test_seal_parts_join_to_a_box(server_key: sealed.X25519PrivateKey) -> None:
    payload = bytes(range(256)) * 100
    header, body = sealed.seal_parts(server_key.public_key(), memoryview(payload), b"ad")
    assert len(header) == sealed.HEADER_BYTES and header.startswith(sealed.MAGIC)
    assert sealed.open(server_key, memoryview(header + body), b"ad") == payload


def test_empty_plaintext(server_key: sealed.X25519PrivateKey) -> None:
    assert sealed.open(server_key, sealed.seal(server_key.public_key(), b"")) == b""


@pytest.mark.parametrize("position", [0, 5, 40, -1])
def test_any_flipped_byte_is_rejected(server_key: sealed.X25519PrivateKey, position: int) -> None:
    box = bytearray(sealed.seal(server_key.public_key(), b"x" * 64, b"aad"))
    box[position] ^= 0x01
    with pytest.raises(CryptoError):
        sealed.open(server_key, bytes(box), b"aad")


def test_wrong_aad_is_an_integrity_error(server_key: sealed.X25519PrivateKey) -> None:
    box = sealed.seal(server_key.public_key(), b"payload", b"round=1")
    with pytest.raises(IntegrityError, match="failed authentication"):
        sealed.open(server_key, box, b"round=2")


def test_wrong_recipient_cannot_open(server_key: sealed.X25519PrivateKey) -> None:
    box = sealed.seal(server_key.public_key(), b"payload")
    with pytest.raises(IntegrityError):
        sealed.open(sealed.generate_private_key(), box)


def test_truncated_and_foreign_boxes(server_key: sealed.X25519PrivateKey) -> None:
    box = sealed.seal(server_key.public_key(), b"payload")
    with pytest.raises(CryptoError, match="truncated"):
        sealed.open(server_key, box[:20])
    with pytest.raises(CryptoError, match="magic"):
        sealed.open(server_key, b"XXXX" + box[4:])


def test_low_order_ephemeral_key_is_refused(server_key: sealed.X25519PrivateKey) -> None:
    forged = sealed.MAGIC + bytes(32) + bytes(32)
    with pytest.raises(CryptoError, match="invalid public key"):
        sealed.open(server_key, forged)


def test_public_key_text_round_trip(server_key: sealed.X25519PrivateKey) -> None:
    text = sealed.encode_public_key(server_key)
    assert len(text) == 43 and "=" not in text
    pub = sealed.decode_public_key(text)
    assert sealed.public_key_bytes(pub) == sealed.public_key_bytes(server_key)
    box = sealed.seal(pub, b"hello")
    assert sealed.open(server_key, box) == b"hello"


@pytest.mark.parametrize("text", ["", "abc", "A" * 44, "!" * 43, "AAAA=AAA"])
def test_bad_public_key_text(text: str) -> None:
    with pytest.raises(Invalid):
        sealed.decode_public_key(text)


def test_private_key_bytes_round_trip(server_key: sealed.X25519PrivateKey) -> None:
    raw = sealed.private_key_to_bytes(server_key)
    again = sealed.private_key_from_bytes(raw)
    assert sealed.open(again, sealed.seal(server_key.public_key(), b"k")) == b"k"
    with pytest.raises(CryptoError):
        sealed.private_key_from_bytes(raw[:31])
