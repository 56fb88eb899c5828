"""One error hierarchy for the whole package.

Services raise these; the API layer translates them into a status code and a JSON body
``{"error": {"code": ..., "message": ...}}``. Messages are for humans and must never contain secrets.
"""

from __future__ import annotations

from typing import Any


class BastionError(Exception):
    """Base of every error Bastion raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class Invalid(BastionError):
    """The input is well-formed but not acceptable (422)."""

    status_code = 422
    code = "invalid"


class BadRequest(BastionError):
    status_code = 400
    code = "bad_request"


class Unauthorized(BastionError):
    """No valid credential was presented (401)."""

    status_code = 401
    code = "unauthorized"
    slow_down: float = 0.0  # seconds the API waits before answering (progressive delay per address)


class Forbidden(BastionError):
    status_code = 403
    code = "forbidden"


class NotFound(BastionError):
    """The object does not exist *or* belongs to someone else: callers cannot tell which."""

    status_code = 404
    code = "not_found"


class Conflict(BastionError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(BastionError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMedia(BastionError):
    status_code = 415
    code = "unsupported_media_type"


class Locked(BastionError):
    """Too many failed attempts; retry after ``retry_after`` seconds (423)."""

    status_code = 423
    code = "locked"

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class RateLimited(BastionError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class Unavailable(BastionError):
    status_code = 503
    code = "unavailable"


class ConfigError(BastionError):
    """Settings are missing, weak or contradictory; raised at start-up, never mid-request."""

    code = "config_error"


class CryptoError(BastionError):
    """Decryption, unwrapping or signature verification failed."""

    status_code = 400
    code = "crypto_error"


class IntegrityError(CryptoError):
    """Stored or received bytes were altered, truncated or reordered."""

    code = "integrity_error"
