"""The messages of one SecAgg+ round, as JSON-ready pydantic models.

Binary fields travel as standard base64 strings. Each message names its round so a stale or replayed
message is refused. Flow (client -> server -> client):

1. ``AdvertiseKeys``  -> server -> ``KeysBroadcast`` (each client gets its neighbours' signed keys)
2. ``ShareKeys``      -> server -> ``SharesDelivery`` (encrypted shares routed to their recipients)
3. ``MaskedInput``    -> server -> ``UnmaskRequest`` (who is in the sum, who dropped)
4. ``UnmaskResponse`` -> server -> aggregate
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer


def _decode_b64(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("invalid base64") from None
    raise ValueError("expected base64 text")


def _encode_b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


B64Bytes = Annotated[
    bytes, BeforeValidator(_decode_b64), PlainSerializer(_encode_b64, return_type=str, when_used="json")
]
"""Raw bytes in Python, base64 text in JSON."""

RoundId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
ClientId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    round_id: RoundId


class AdvertiseKeys(_Message):
    """Stage 1, client -> all: two fresh X25519 public keys, signed by the client's Ed25519 identity."""

    client_id: ClientId
    enc_public_key: B64Bytes = Field(description="X25519 key for encrypting shares between clients")
    mask_public_key: B64Bytes = Field(description="X25519 key for agreeing pairwise masks")
    signature: B64Bytes = Field(description="Ed25519 over round, client id and both keys")


class KeysBroadcast(_Message):
    """Stage 1, server -> client: the signed keys of the recipient's neighbours that answered."""

    recipient: ClientId
    keys: list[AdvertiseKeys]


class ShareKeys(_Message):
    """Stage 2, client -> server: for each neighbour, its shares of our secrets, AES-GCM encrypted."""

    client_id: ClientId
    encrypted_shares: dict[ClientId, B64Bytes]


class SharesDelivery(_Message):
    """Stage 2, server -> client: the ciphertexts addressed to the recipient, keyed by sender."""

    recipient: ClientId
    encrypted_shares: dict[ClientId, B64Bytes]


class MaskedInput(_Message):
    """Stage 3, client -> server: the masked, quantized update as little-endian words."""

    client_id: ClientId
    masked_vector: B64Bytes


class UnmaskRequest(_Message):
    """Stage 4, server -> clients: whose inputs are in the sum and who dropped before sending one."""

    survivors: list[ClientId]
    dropped: list[ClientId]


class UnmaskResponse(_Message):
    """Stage 4, client -> server: shares of survivors' self-mask seeds and dropped clients' mask keys."""

    client_id: ClientId
    self_mask_shares: dict[ClientId, B64Bytes]
    secret_key_shares: dict[ClientId, B64Bytes]
