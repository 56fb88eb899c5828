"""Bastion's Python SDK: talks to a server over HTTPS; never imports server code.

The errors load with the package; the client itself (httpx and every resource module) when first
named, so the CLI's commands that never call a server (``bastion serve``, ``bastion worker``) do not
pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bastion.client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BastionClientError,
    ConflictError,
    DecryptionError,
    LockedError,
    ModelFileError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
)

if TYPE_CHECKING:
    from bastion.client.modelfile import DownloadedModel, load_model_file, open_download
    from bastion.client.sdk import BastionClient, Event

_LAZY = {
    "BastionClient": "bastion.client.sdk",
    "Event": "bastion.client.sdk",
    "DownloadedModel": "bastion.client.modelfile",
    "load_model_file": "bastion.client.modelfile",
    "open_download": "bastion.client.modelfile",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BastionClient",
    "BastionClientError",
    "ConflictError",
    "DecryptionError",
    "DownloadedModel",
    "Event",
    "LockedError",
    "ModelFileError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "load_model_file",
    "open_download",
]
