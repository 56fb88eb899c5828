"""The server-signed global model that sites download at the start of each round.

A site must not train on weights or a config that did not come from its coordinator, so the server
signs ``(federation_id, round, config, digest(weights))`` with its Ed25519 key. Binding the federation
and round stops a stale or foreign model from being passed off as the current one.

Wire format (version 1)::

    b"BSTG" | 0x01 | u32 meta length | meta JSON {federation_id, round, config} | u64 weights length
    | safetensors weights | Ed25519 signature (64)
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.crypto import signing
from bastion.errors import BadRequest, CryptoError, Invalid
from bastion.federation.tensors import Buffer, decode, encode

MAGIC = b"BSTG"
VERSION = 1
MAX_META_BYTES = 1024 * 1024
_PREFIX = struct.Struct(">4sBI")
_WEIGHTS_LEN = struct.Struct(">Q")
_SIG_CONTEXT = "bastion/global-model/v1"


def canonical_json(obj: Any) -> bytes:
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise Invalid("model config must be plain JSON (no NaN, no custom objects)") from exc


@dataclass(frozen=True)
class GlobalModel:
    """Weights (safetensors bytes) and JSON config of one round, with the server's signature."""

    federation_id: str
    round: int
    weights: bytes
    config: Mapping[str, Any] = field(default_factory=dict)
    signature: bytes = b""

    def meta_bytes(self) -> bytes:
        return canonical_json(
            {"federation_id": self.federation_id, "round": self.round, "config": self.config}
        )

    def signed_message(self) -> bytes:
        return signing.signing_input(_SIG_CONTEXT, [self.meta_bytes(), signing.payload_digest(self.weights)])

    def to_bytes(self) -> bytes:
        if len(self.signature) != signing.SIGNATURE_BYTES:
            raise Invalid("global model is not signed")
        meta = self.meta_bytes()
        return b"".join(
            [
                _PREFIX.pack(MAGIC, VERSION, len(meta)),
                meta,
                _WEIGHTS_LEN.pack(len(self.weights)),
                self.weights,
                self.signature,
            ]
        )

    @classmethod
    def from_bytes(cls, data: Buffer) -> GlobalModel:
        """Parse the wire form; the result is *unverified* until :func:`verify_global_model`."""
        view = memoryview(data).cast("B")
        if len(view) < _PREFIX.size + _WEIGHTS_LEN.size + signing.SIGNATURE_BYTES:
            raise BadRequest("global model message is truncated", code="malformed_global_model")
        magic, version, meta_len = _PREFIX.unpack_from(view, 0)
        if magic != MAGIC or version != VERSION or meta_len > MAX_META_BYTES:
            raise BadRequest(
                "not a Bastion global model (bad magic, version or size)", code="malformed_global_model"
            )
        at = _PREFIX.size + meta_len
        if at + _WEIGHTS_LEN.size > len(view):
            raise BadRequest("global model message is truncated", code="malformed_global_model")
        (weights_len,) = _WEIGHTS_LEN.unpack_from(view, at)
        at += _WEIGHTS_LEN.size
        if at + weights_len + signing.SIGNATURE_BYTES != len(view):
            raise BadRequest("global model length does not match its framing", code="malformed_global_model")
        try:
            meta = json.loads(bytes(view[_PREFIX.size : _PREFIX.size + meta_len]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadRequest("global model metadata is not JSON", code="malformed_global_model") from exc
        if not (
            isinstance(meta, dict)
            and set(meta) == {"federation_id", "round", "config"}
            and isinstance(meta["federation_id"], str)
            and type(meta["round"]) is int
            and isinstance(meta["config"], dict)
        ):
            raise BadRequest("global model metadata has the wrong fields", code="malformed_global_model")
        return cls(
            federation_id=meta["federation_id"],
            round=meta["round"],
            config=meta["config"],
            weights=bytes(view[at : at + weights_len]),
            signature=bytes(view[at + weights_len :]),
        )


def sign_global_model(
    signing_key: Ed25519PrivateKey,
    *,
    federation_id: str,
    round: int,
    weights: Mapping[str, np.ndarray] | bytes,
    config: Mapping[str, Any] | None = None,
) -> GlobalModel:
    """Server side: encode (if given arrays) and sign the global model of ``round``."""
    blob = weights if isinstance(weights, bytes) else encode(weights)
    unsigned = GlobalModel(federation_id=federation_id, round=round, weights=blob, config=dict(config or {}))
    signature = signing.sign(signing_key, unsigned.signed_message())
    return GlobalModel(federation_id, round, blob, unsigned.config, signature)


def verify_global_model(
    public_key: Ed25519PublicKey,
    model: GlobalModel,
    *,
    federation_id: str,
    round: int | None = None,
) -> dict[str, np.ndarray]:
    """Site side: check the server's signature and the expected federation/round, then decode weights."""
    try:
        signing.verify(public_key, model.signed_message(), model.signature)
    except CryptoError as exc:
        raise CryptoError("global model signature is not the server's", code="bad_signature") from exc
    if model.federation_id != federation_id:
        raise Invalid("global model belongs to another federation", code="wrong_federation")
    if round is not None and model.round != round:
        raise Invalid(f"global model is for round {model.round}, expected {round}", code="wrong_round")
    return decode(model.weights)
