"""The exact bytes a row's hash covers; verify and append must agree on them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "access_code", "key_material")


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """Drop anything that looks like a secret: the audit log must never hold one."""
    out: dict[str, Any] = {}
    for k, v in details.items():
        if any(w in k.lower() for w in _SECRET_WORDS):
            out[k] = "[redacted]"
        elif isinstance(v, dict):
            out[k] = scrub(v)
        else:
            out[k] = v
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode()).hexdigest()


HASHED_FIELDS = (
    "seq",
    "ts",
    "actor_id",
    "actor",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "source_ip",
    "details",
)
