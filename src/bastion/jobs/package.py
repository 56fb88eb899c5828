"""The model package: one blob holding a trained model and the JSON it needs to be loaded again.

Stored in the vault as the job's artifact, and (encrypted for the caller) what a download returns::

    b"BSTM" | version (1 byte, = 1) | header length (4 bytes, big-endian) | header (UTF-8 JSON) | model

The header is ``{"job_id", "model_type", "model_format", "model_config", "sha256"}``; ``sha256`` is
the digest of the model bytes. The SDK has its own reader (bastion.client.modelfile) so that it
never imports server code; tests keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from bastion.errors import IntegrityError, Invalid

MAGIC = b"BSTM"
VERSION = 1
_HEAD = struct.Struct(">4sBI")
MAX_HEADER = 16 * 1024 * 1024


@dataclass(frozen=True)
class ModelPackage:
    job_id: str
    model_type: str
    model_format: str
    model_config: dict[str, Any]
    model_bytes: bytes


def pack(package: ModelPackage) -> bytes:
    header = json.dumps(
        {
            "job_id": package.job_id,
            "model_type": package.model_type,
            "model_format": package.model_format,
            "model_config": package.model_config,
            "sha256": hashlib.sha256(package.model_bytes).hexdigest(),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return _HEAD.pack(MAGIC, VERSION, len(header)) + header + package.model_bytes


def unpack(blob: bytes) -> ModelPackage:
    if len(blob) < _HEAD.size:
        raise Invalid("not a Bastion model package (too short)")
    magic, version, size = _HEAD.unpack_from(blob)
    if magic != MAGIC or version != VERSION or size > MAX_HEADER or _HEAD.size + size > len(blob):
        raise Invalid("not a Bastion model package (bad header)")
    try:
        header = json.loads(blob[_HEAD.size : _HEAD.size + size])
    except (ValueError, UnicodeDecodeError):
        raise Invalid("not a Bastion model package (bad header)") from None
    model = blob[_HEAD.size + size :]
    if not isinstance(header, dict) or hashlib.sha256(model).hexdigest() != header.get("sha256"):
        raise IntegrityError("model package digest does not match its model bytes")
    return ModelPackage(
        str(header["job_id"]),
        str(header["model_type"]),
        str(header["model_format"]),
        dict(header["model_config"]),
        model,
    )
