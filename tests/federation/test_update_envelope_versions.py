"""Envelope versions: v3 (BLAKE3 digest) is written; v1 (SHA-256 tree) still opens; neither digest
can stand in for the other."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bastion.crypto import sealed, signing
from bastion.errors import CryptoError
from bastion.federation import envelope as E
from bastion.federation.tensors import TensorSpec, encode

FED = "fed-v"
Setup = tuple[dict[str, np.ndarray], X25519PrivateKey, Ed25519PrivateKey, bytes]


def _parts(message: bytes) -> tuple[int, bytes, bytes]:
    (hlen,) = struct.unpack(">I", message[5:9])
    return message[4], message[9 : 9 + hlen], message[9 + hlen + 8 : -64]


def _frame(version: int, hdr: bytes, box: bytes, sig: bytes) -> bytes:
    return (
        b"BSTU"
        + bytes([version])
        + struct.pack(">I", len(hdr))
        + hdr
        + struct.pack(">Q", len(box))
        + box
        + sig
    )


@pytest.fixture
def setup() -> Setup:
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    server, site = sealed.generate_private_key(), signing.generate_signing_key()
    msg = E.seal_update(
        params,
        federation_id=FED,
        round=1,
        participant_id="a",
        num_samples=3,
        server_public_key=server.public_key(),
        signing_key=site,
    )
    return params, server, site, msg


def _open(
    msg: bytes,
    params: dict[str, np.ndarray],
    server: X25519PrivateKey,
    site: Ed25519PrivateKey,
) -> E.ReceivedUpdate:
    return E.open_update(
        msg,
        server_key=server,
        federation_id=FED,
        round=1,
        participants={"a": site.public_key()},
        spec=TensorSpec.from_tensors(params),
        replay_guard=E.InMemoryReplayGuard(),
    )


def test_written_version_signs_a_blake3_digest(setup: Setup) -> None:
    params, server, site, msg = setup
    version, hdr, box = _parts(msg)
    assert version == E.VERSION == 3
    signed = signing.signing_input(
        "bastion/update/v3", [hdr, box[:36], signing.fast_digest(box[36:], "bastion/update/ciphertext/v3")]
    )
    signing.verify(site.public_key(), signed, msg[-64:])
    np.testing.assert_array_equal(_open(msg, params, server, site).tensors["w"], params["w"])


def test_version_1_messages_still_open(setup: Setup) -> None:
    params, server, site, msg = setup
    _, hdr, box = _parts(msg)
    v1 = signing.signing_input("bastion/update/v1", [hdr, box[:36], signing.payload_digest(box[36:])])
    got = _open(_frame(1, hdr, box, signing.sign(site, v1)), params, server, site)
    np.testing.assert_array_equal(got.tensors["w"], params["w"])


@pytest.mark.parametrize("claimed", [1, 3])
def test_a_signature_over_the_other_versions_digest_is_refused(setup: Setup, claimed: int) -> None:
    params, server, site, msg = setup
    _, hdr, box = _parts(msg)
    other = 3 if claimed == 1 else 1
    digest = (
        signing.payload_digest(box[36:])
        if other == 1
        else signing.fast_digest(box[36:], "bastion/update/ciphertext/v3")
    )
    sig = signing.sign(site, signing.signing_input(f"bastion/update/v{other}", [hdr, box[:36], digest]))
    with pytest.raises(CryptoError) as info:
        _open(_frame(claimed, hdr, box, sig), params, server, site)
    assert info.value.code == "bad_signature"


def test_digest_context_separates_uses() -> None:
    data = encode({"w": np.ones(4, np.float32)})
    assert signing.fast_digest(data, "a") != signing.fast_digest(data, "b")
    assert len(signing.fast_digest(data, "a")) == 32
