"""One error hierarchy for SDK callers: every server error body maps to exactly one class.

The server answers errors as ``{"success": false, "error": {"code", "message", ...}}``; the class
follows the HTTP status, ``code`` keeps the server's stable machine code for finer checks.
"""

from __future__ import annotations

from typing import Any


class BastionClientError(Exception):
    """Base of everything the SDK raises."""

    def __init__(self, message: str, *, code: str = "client_error", status: int = 0, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details


class TransportError(BastionClientError):
    """The server could not be reached, or the connection broke."""


class DecryptionError(BastionClientError):
    """A downloaded model could not be decrypted or failed its integrity check."""


class ModelFileError(BastionClientError):
    """A model file on disk is missing, unreadable or does not match its ``.json``."""


class APIError(BastionClientError):
    """The server answered with an error status; ``retry_after`` is its Retry-After, in seconds."""

    retry_after: float | None = None


class BadRequestError(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDeniedError(APIError):
    pass


class NotFoundError(APIError):
    pass


class ConflictError(APIError):
    pass


class PayloadTooLargeError(APIError):
    pass


class ValidationError(APIError):
    """422: the request was understood but not acceptable; ``details`` may list valid choices."""


class RateLimitError(APIError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class LockedError(RateLimitError):
    """423: too many failed attempts; ``retry_after`` seconds until the lock lifts."""


class ServerError(APIError):
    pass


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: BadRequestError,
    422: ValidationError,
    423: LockedError,
    429: RateLimitError,
}


def from_response(status: int, body: Any, headers: Any = None) -> APIError:
    """The exception for an error response (``body`` is the parsed JSON, or None)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or "error")
    message = str(error.get("message") or f"HTTP {status}")
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    retry = None
    if headers is not None and headers.get("retry-after"):
        try:
            retry = float(headers["retry-after"])
        except ValueError:
            retry = None
    if issubclass(cls, RateLimitError):
        return cls(message, retry_after=retry, code=code, status=status, **details)
    error = cls(message, code=code, status=status, **details)
    error.retry_after = retry  # a 503 may say when to come back too
    return error
