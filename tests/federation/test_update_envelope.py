"""The update envelope end to end, and every fault the server must refuse with a clear error."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from bastion.crypto import sealed, signing
from bastion.errors import (
    BadRequest,
    Conflict,
    CryptoError,
    Forbidden,
    IntegrityError,
    Invalid,
    PayloadTooLarge,
)
from bastion.federation import envelope as E
from bastion.federation.tensors import TensorSpec, encode

FED = "fed-brain-1"


class World:
    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.params = {
            "conv.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
            "conv.bias": rng.standard_normal(4).astype(np.float32),
            "head.weight": rng.standard_normal((2, 16)).astype(np.float32),
        }
        self.spec = TensorSpec.from_tensors(self.params)
        self.server = sealed.generate_private_key()
        self.sites = {f"site-{i}": signing.generate_signing_key() for i in range(3)}
        self.participants = {pid: key.public_key() for pid, key in self.sites.items()}
        self.guard = E.InMemoryReplayGuard()

    def seal(
        self, pid: str = "site-0", round: int = 2, tensors: dict[str, np.ndarray] | None = None, **kw: Any
    ) -> bytes:
        args: dict[str, Any] = {
            "federation_id": FED,
            "round": round,
            "participant_id": pid,
            "num_samples": 120,
            "server_public_key": self.server.public_key(),
            "signing_key": self.sites.get(pid, signing.generate_signing_key()),
            "metrics": {"loss": 0.5, "accuracy": 0.8},
        }
        args.update(kw)
        return E.seal_update(self.params if tensors is None else tensors, **args)

    def open(self, message: bytes, round: int = 2, **kw: Any) -> E.ReceivedUpdate:
        args: dict[str, Any] = {
            "server_key": self.server,
            "federation_id": FED,
            "round": round,
            "participants": self.participants,
            "spec": self.spec,
            "replay_guard": self.guard,
        }
        args.update(kw)
        return E.open_update(message, **args)


@pytest.fixture
def world() -> World:
    return World()


def _resign(message: bytes, key: signing.Ed25519PrivateKey, header: bytes | None = None) -> bytes:
    """Rebuild a message with (optionally) a new header and a fresh signature by ``key``."""
    (hlen,) = struct.unpack(">I", message[5:9])
    hdr = message[9 : 9 + hlen] if header is None else header
    box = message[9 + hlen + 8 : -64]
    signed = signing.signing_input("bastion/update/v1", [hdr, box[:36], signing.payload_digest(box[36:])])
    sig = signing.sign(key, signed)
    return b"BSTU\x01" + struct.pack(">I", len(hdr)) + hdr + struct.pack(">Q", len(box)) + box + sig


def test_round_trip(world: World) -> None:
    msg = world.seal()
    got = world.open(msg)
    assert got.participant_id == "site-0" and got.num_samples == 120
    assert got.header.metrics == {"loss": 0.5, "accuracy": 0.8}
    for name, arr in world.params.items():
        np.testing.assert_array_equal(got.tensors[name], arr)
    for arr in world.params.values():  # the payload is encrypted, not merely signed
        assert arr.tobytes()[:32] not in msg


def test_parts_join_to_the_message(world: World) -> None:
    header = E.UpdateHeader(
        federation_id=FED, round=2, participant_id="site-1", nonce=E.new_nonce(), num_samples=5, metrics={}
    )
    parts = E.seal_payload_parts(
        encode(world.params),
        header,
        server_public_key=world.server.public_key(),
        signing_key=world.sites["site-1"],
    )
    assert len(parts) == 3 and len(parts[2]) == 64
    assert world.open(b"".join(parts)).participant_id == "site-1"


def test_header_is_readable_before_checks(world: World) -> None:
    header = E.read_header(world.seal(round=7))
    assert header.round == 7 and header.federation_id == FED and len(header.nonce) == 22


def test_participants_may_be_a_lookup_function(world: World) -> None:
    got = world.open(world.seal(), participants=world.participants.get)
    assert got.participant_id == "site-0"


def test_tampered_ciphertext_is_rejected(world: World) -> None:
    msg = bytearray(world.seal())
    msg[len(msg) // 2] ^= 0x40
    with pytest.raises(CryptoError) as info:
        world.open(bytes(msg))
    assert info.value.code == "bad_signature"


def test_tampered_header_is_rejected(world: World) -> None:
    msg = world.seal()
    forged = msg.replace(b'"num_samples":120', b'"num_samples":999')
    assert forged != msg
    with pytest.raises(CryptoError, match="signature"):
        world.open(forged)


def test_wrong_signature_is_rejected(world: World) -> None:
    impostor = signing.generate_signing_key()
    msg = world.seal(pid="site-1", signing_key=impostor)
    with pytest.raises(CryptoError) as info:
        world.open(msg)
    assert info.value.code == "bad_signature"


def test_unknown_participant_is_forbidden(world: World) -> None:
    msg = world.seal(pid="site-99")
    with pytest.raises(Forbidden, match="site-99") as info:
        world.open(msg)
    assert info.value.code == "unknown_participant"


def test_replayed_update_is_rejected(world: World) -> None:
    msg = world.seal()
    world.open(msg)
    with pytest.raises(Conflict) as info:
        world.open(msg)
    assert info.value.code == "replayed_update"


def test_second_update_in_same_round_is_a_duplicate(world: World) -> None:
    world.open(world.seal())
    with pytest.raises(Conflict) as info:
        world.open(world.seal())
    assert info.value.code == "duplicate_update"
    assert world.open(world.seal(pid="site-1")).participant_id == "site-1"


def test_update_for_closed_or_future_round(world: World) -> None:
    with pytest.raises(Conflict) as closed:
        world.open(world.seal(round=1), round=2)
    assert closed.value.code == "round_closed"
    with pytest.raises(Conflict) as future:
        world.open(world.seal(round=3), round=2)
    assert future.value.code == "round_not_open"


def test_old_message_replayed_in_a_later_round(world: World) -> None:
    msg = world.seal(round=2)
    world.open(msg, round=2)
    with pytest.raises(Conflict) as info:
        world.open(msg, round=3)
    assert info.value.code == "round_closed"


def test_wrong_federation(world: World) -> None:
    with pytest.raises(Invalid) as info:
        world.open(world.seal(federation_id="other-fed"))
    assert info.value.code == "wrong_federation"


def test_wrong_shapes_are_rejected_naming_the_tensor(world: World) -> None:
    bad = dict(world.params, **{"head.weight": np.zeros((16, 2), np.float32)})
    with pytest.raises(Invalid, match=r"'head\.weight' has shape") as info:
        world.open(world.seal(tensors=bad))
    assert info.value.details["tensor"] == "head.weight"


def test_missing_tensor_is_rejected(world: World) -> None:
    bad = {k: v for k, v in world.params.items() if k != "conv.bias"}
    with pytest.raises(Invalid, match=r"missing tensor 'conv\.bias'"):
        world.open(world.seal(tensors=bad))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_update_is_rejected_and_does_not_lock_out_the_site(world: World, value: float) -> None:
    bad = {k: v.copy() for k, v in world.params.items()}
    bad["conv.weight"][0, 0, 1, 1] = value
    with pytest.raises(Invalid, match=r"'conv\.weight' contains NaN or Inf"):
        world.open(world.seal(tensors=bad))
    assert world.open(world.seal()).participant_id == "site-0"


def test_oversized_payload_is_refused_before_anything_else(world: World) -> None:
    big = dict(world.params, extra=np.zeros(200_000, np.float32))
    msg = world.seal(tensors=big)
    assert len(msg) > E.max_update_bytes(world.spec)
    with pytest.raises(PayloadTooLarge) as info:
        world.open(msg)
    assert info.value.code == "update_too_large"
    with pytest.raises(PayloadTooLarge):
        world.open(world.seal(), max_bytes=200)


def test_sealed_box_is_bound_to_its_header(world: World) -> None:
    """A site re-signing its box under a different header (another round/nonce) cannot open."""
    msg = world.seal(round=2)
    header = json.loads(E.read_header(msg).to_bytes())
    header["round"] = 3
    new_header = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    moved = _resign(msg, world.sites["site-0"], new_header)
    with pytest.raises(IntegrityError):
        world.open(moved, round=3)


def test_box_sealed_to_another_server_fails_to_open(world: World) -> None:
    msg = world.seal(server_public_key=sealed.generate_private_key().public_key())
    with pytest.raises(IntegrityError):
        world.open(msg)


def test_signature_check_precedes_decryption(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stranger's message is refused without the server ever decrypting it."""
    msg = world.seal()
    stranger = _resign(msg, signing.generate_signing_key())
    calls: list[int] = []
    original = sealed.open

    def spy(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sealed, "open", spy)
    with pytest.raises(CryptoError):
        world.open(stranger)
    assert calls == []
    world.open(msg)
    assert calls == [1]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda m: m[:10],
        lambda m: b"XXXX" + m[4:],
        lambda m: m[:4] + b"\x02" + m[5:],
        lambda m: m + b"\x00",
        lambda m: m[:-1],
    ],
)
def test_malformed_framing_is_a_bad_request(world: World, mangle: Any) -> None:
    with pytest.raises(BadRequest) as info:
        world.open(mangle(world.seal()))
    assert info.value.code == "malformed_update"


def test_header_with_unknown_fields_is_invalid(world: World) -> None:
    msg = world.seal()
    header = json.loads(E.read_header(msg).to_bytes())
    header["admin"] = True
    forged = _resign(msg, world.sites["site-0"], json.dumps(header).encode())
    with pytest.raises(Invalid) as info:
        world.open(forged)
    assert info.value.code == "invalid_update_header"


def test_client_side_header_validation(world: World) -> None:
    with pytest.raises(Invalid):
        world.seal(num_samples=0)
    with pytest.raises(Invalid):
        world.seal(metrics={"loss": float("nan")})
    with pytest.raises(Invalid):
        world.seal(pid="bad id with spaces")


def test_replay_guard_record_is_atomic() -> None:
    guard = E.InMemoryReplayGuard()
    assert isinstance(guard, E.ReplayGuard)
    guard.check(FED, 1, "a", "n1")
    guard.check(FED, 1, "a", "n2")
    guard.record(FED, 1, "a", "n1")
    with pytest.raises(Conflict):
        guard.record(FED, 1, "a", "n2")
    guard.record("other", 1, "a", "n1")
