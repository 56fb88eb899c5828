"""Bastion's Python SDK: talks to a server over HTTPS; never imports server code."""

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
from bastion.client.modelfile import DownloadedModel, load_model_file, open_download
from bastion.client.sdk import BastionClient, Event

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
