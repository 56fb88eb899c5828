"""The update envelope: how a site's model update travels to the server, and how the server admits it.

Wire format (version 3, all lengths big-endian)::

    b"BSTU" | 0x03 | u32 header length | header JSON | u64 sealed length | sealed box | Ed25519 sig (64)

* The header is canonical JSON ``{federation_id, round, participant_id, nonce, num_samples, metrics}``.
* The sealed box (:mod:`bastion.crypto.sealed`) holds the safetensors payload, encrypted to the
  server's X25519 key with the header bytes as associated data: a box cannot be moved to another
  header (federation, round, participant or nonce) without failing authentication.
* The signature, by the participant's Ed25519 key, covers (context ``bastion/update/v3``) the header
  bytes, the box's ephemeral key and a BLAKE3 digest (context ``bastion/update/ciphertext/v3``) of its
  ciphertext and tag, so nobody but the participant could have produced this exact message.
* Version 1 (still accepted, no longer written) is the same framing with the version byte 0x01,
  signature context ``bastion/update/v1`` and :func:`signing.payload_digest` (a SHA-256 tree) in
  place of BLAKE3. 0x02 was never issued and is refused like any unknown version.
  BLAKE3 runs at AES-GCM's speed; the SHA-256 tree cost four times the encryption
  (bench/update_crypto.py).

The server (:func:`open_update`) checks, in order: size, framing (magic, then a known version),
header, federation, participant, signature (over the digest of that version), round,
replay/duplicate, decryption, then tensor names, shapes, dtype and finiteness. Each failure raises a
distinct error code; nothing is decrypted before the signature has been verified.
"""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from bastion.crypto import sealed, signing
from bastion.errors import BadRequest, Conflict, Forbidden, Invalid, PayloadTooLarge
from bastion.federation.replay import InMemoryReplayGuard, ReplayGuard
from bastion.federation.tensors import Buffer, TensorSpec, decode, encode, validate

MAGIC = b"BSTU"
VERSION = 3
READABLE_VERSIONS = frozenset({1, 3})
MAX_HEADER_BYTES = 16 * 1024
_PREFIX = struct.Struct(">4sBI")
_SEALED_LEN = struct.Struct(">Q")
_AAD_CONTEXT = b"bastion/update/aad/v1\x00"
_SIG_CONTEXT = {1: "bastion/update/v1", 3: "bastion/update/v3"}
_DIGEST_CONTEXT_V3 = "bastion/update/ciphertext/v3"

__all__ = [
    "InMemoryReplayGuard",
    "ReceivedUpdate",
    "ReplayGuard",
    "UpdateHeader",
    "max_update_bytes",
    "new_nonce",
    "open_update",
    "read_header",
    "seal_payload",
    "seal_payload_parts",
    "seal_update",
    "verify_and_open",
]

Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
ParticipantKeys = Mapping[str, Ed25519PublicKey] | Callable[[str], Ed25519PublicKey | None]


class UpdateHeader(BaseModel):
    """What the server learns about an update before opening it; all of it is signed and bound."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    federation_id: Ident
    round: int = Field(ge=0)
    participant_id: Ident
    nonce: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22}$")]
    num_samples: int = Field(ge=1, le=10**12)
    metrics: dict[Annotated[str, StringConstraints(max_length=64)], float] = Field(
        default_factory=dict, max_length=64
    )

    @field_validator("metrics")
    @classmethod
    def _finite_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v != v or v in (float("inf"), float("-inf")) for v in value.values()):
            raise ValueError("metrics must be finite numbers")
        return value

    def to_bytes(self) -> bytes:
        return json.dumps(
            self.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")

    @classmethod
    def parse(cls, raw: bytes) -> UpdateHeader:
        try:
            obj = json.loads(raw.decode("utf-8"))
            if isinstance(obj, dict) and isinstance(obj.get("metrics"), dict):
                # JSON has no int/float distinction; let integral metrics through strict mode.
                obj["metrics"] = {k: float(v) if type(v) is int else v for k, v in obj["metrics"].items()}
            return cls.model_validate(obj)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) and exc.errors() else None
            where = ".".join(str(p) for p in first["loc"]) if first else "header"
            raise Invalid(f"update header is invalid ({where})", code="invalid_update_header") from exc


def new_nonce() -> str:
    """128 random bits, base64url: unique per update, so a replayed message is recognisable."""
    return signing.b64url_encode(secrets.token_bytes(16))


def _aad(header: bytes) -> bytes:
    return _AAD_CONTEXT + header


def _signed_message(version: int, header: bytes, box_header: Buffer, ciphertext: Buffer) -> bytes:
    digest = (
        signing.fast_digest(ciphertext, _DIGEST_CONTEXT_V3)
        if version == 3
        else signing.payload_digest(ciphertext)
    )
    return signing.signing_input(_SIG_CONTEXT[version], [header, bytes(box_header), digest])


def seal_payload_parts(
    payload: Buffer,
    header: UpdateHeader,
    *,
    server_public_key: X25519PublicKey,
    signing_key: Ed25519PrivateKey,
) -> list[bytes]:
    """The message as consecutive parts, for streaming uploads that never join them (no 100 MB copy)."""
    hdr = header.to_bytes()
    if len(hdr) > MAX_HEADER_BYTES:
        raise Invalid("update header is too large (too many or too long metrics)")
    box_header, ciphertext = sealed.seal_parts(server_public_key, payload, _aad(hdr))
    signature = signing.sign(signing_key, _signed_message(VERSION, hdr, box_header, ciphertext))
    prefix = (
        _PREFIX.pack(MAGIC, VERSION, len(hdr)) + hdr + _SEALED_LEN.pack(len(box_header) + len(ciphertext))
    )
    return [prefix + box_header, ciphertext, signature]


def seal_payload(
    payload: Buffer,
    header: UpdateHeader,
    *,
    server_public_key: X25519PublicKey,
    signing_key: Ed25519PrivateKey,
) -> bytes:
    """Seal already-encoded tensor bytes under ``header`` and sign: the whole message as one bytes."""
    parts = seal_payload_parts(payload, header, server_public_key=server_public_key, signing_key=signing_key)
    return b"".join(parts)


def seal_update(
    tensors: Mapping[str, np.ndarray],
    *,
    federation_id: str,
    round: int,
    participant_id: str,
    num_samples: int,
    server_public_key: X25519PublicKey,
    signing_key: Ed25519PrivateKey,
    metrics: Mapping[str, float] | None = None,
    nonce: str | None = None,
) -> bytes:
    """Client side: encode ``tensors`` as safetensors, seal them to the server and sign the result."""
    try:
        header = UpdateHeader(
            federation_id=federation_id,
            round=round,
            participant_id=participant_id,
            nonce=nonce or new_nonce(),
            num_samples=num_samples,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
        )
    except ValidationError as exc:
        raise Invalid(f"cannot build update header: {exc.errors()[0]['msg']}") from exc
    return seal_payload(encode(tensors), header, server_public_key=server_public_key, signing_key=signing_key)


@dataclass(frozen=True)
class _Parts:
    version: int
    header_bytes: bytes
    header: UpdateHeader
    box: memoryview
    signature: bytes


def _split(message: Buffer) -> _Parts:
    view = memoryview(message).cast("B")
    if len(view) < _PREFIX.size + _SEALED_LEN.size + signing.SIGNATURE_BYTES:
        raise BadRequest("update message is truncated", code="malformed_update")
    magic, version, header_len = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC or version not in READABLE_VERSIONS:
        raise BadRequest("not a Bastion update message (bad magic or version)", code="malformed_update")
    if header_len > MAX_HEADER_BYTES:
        raise BadRequest("update header is too large", code="malformed_update")
    box_at = _PREFIX.size + header_len + _SEALED_LEN.size
    if box_at > len(view):
        raise BadRequest("update message is truncated", code="malformed_update")
    (box_len,) = _SEALED_LEN.unpack_from(view, box_at - _SEALED_LEN.size)
    if box_len < sealed.OVERHEAD or box_at + box_len + signing.SIGNATURE_BYTES != len(view):
        raise BadRequest("update message length does not match its framing", code="malformed_update")
    header_bytes = bytes(view[_PREFIX.size : _PREFIX.size + header_len])
    return _Parts(
        version=version,
        header_bytes=header_bytes,
        header=UpdateHeader.parse(header_bytes),
        box=view[box_at : box_at + box_len],
        signature=bytes(view[box_at + box_len :]),
    )


def read_header(message: Buffer) -> UpdateHeader:
    """The header *before* any check: for routing and logging only, never for trust decisions."""
    return _split(message).header


def max_update_bytes(spec: TensorSpec) -> int:
    """The largest message a well-formed update for ``spec`` can be; anything bigger is refused unread."""
    return (
        _PREFIX.size
        + MAX_HEADER_BYTES
        + _SEALED_LEN.size
        + sealed.sealed_size(spec.max_encoded_bytes())
        + signing.SIGNATURE_BYTES
    )


def _lookup(participants: ParticipantKeys, participant_id: str) -> Ed25519PublicKey | None:
    if callable(participants):
        return participants(participant_id)
    return participants.get(participant_id)


def verify_and_open(
    message: Buffer,
    *,
    server_key: X25519PrivateKey,
    federation_id: str,
    round: int,
    participants: ParticipantKeys,
    replay_guard: ReplayGuard | None = None,
    max_bytes: int | None = None,
) -> tuple[UpdateHeader, bytes]:
    """Every check up to and including decryption; returns the header and the plaintext payload."""
    size = len(memoryview(message).cast("B"))
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(f"update is {size} bytes, the limit is {max_bytes}", code="update_too_large")
    parts = _split(message)
    header = parts.header
    if header.federation_id != federation_id:
        raise Invalid("update is for another federation", code="wrong_federation")
    public_key = _lookup(participants, header.participant_id)
    if public_key is None:
        raise Forbidden(
            f"participant {header.participant_id!r} is not enrolled in this federation",
            code="unknown_participant",
        )
    box_header = parts.box[: sealed.HEADER_BYTES]
    signing.verify(
        public_key,
        _signed_message(parts.version, parts.header_bytes, box_header, parts.box[sealed.HEADER_BYTES :]),
        parts.signature,
    )
    if header.round != round:
        code, state = ("round_closed", "closed") if header.round < round else ("round_not_open", "not open")
        raise Conflict(f"round {header.round} is {state}; the current round is {round}", code=code)
    if replay_guard is not None:
        replay_guard.check(header.federation_id, header.round, header.participant_id, header.nonce)
    payload = sealed.open(server_key, parts.box, _aad(parts.header_bytes))
    return header, payload


@dataclass(frozen=True)
class ReceivedUpdate:
    """An admitted update: authenticated header and validated, read-only float32 tensors."""

    header: UpdateHeader
    tensors: dict[str, np.ndarray]

    @property
    def num_samples(self) -> int:
        return self.header.num_samples

    @property
    def participant_id(self) -> str:
        return self.header.participant_id


def open_update(
    message: Buffer,
    *,
    server_key: X25519PrivateKey,
    federation_id: str,
    round: int,
    participants: ParticipantKeys,
    spec: TensorSpec,
    replay_guard: ReplayGuard,
    max_bytes: int | None = None,
) -> ReceivedUpdate:
    """Server side: verify, open and validate an update, then record it so it is never taken twice.

    ``participants`` maps participant id -> Ed25519 public key (or is a lookup function returning
    None for strangers). ``max_bytes`` defaults to :func:`max_update_bytes` of ``spec``.
    """
    limit = max_update_bytes(spec) if max_bytes is None else max_bytes
    header, payload = verify_and_open(
        message,
        server_key=server_key,
        federation_id=federation_id,
        round=round,
        participants=participants,
        replay_guard=replay_guard,
        max_bytes=limit,
    )
    tensors = decode(payload, max_bytes=spec.max_encoded_bytes())
    validate(tensors, spec)
    replay_guard.record(header.federation_id, header.round, header.participant_id, header.nonce)
    return ReceivedUpdate(header=header, tensors=tensors)
