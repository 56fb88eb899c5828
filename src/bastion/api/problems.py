"""Errors translated at the boundary: one JSON shape, a stable code, never a stack trace."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.errors import BastionError, Locked, RateLimited

_log = structlog.get_logger("bastion.api")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


def problem(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": {"code": code, "message": message, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def _bastion_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BastionError)
    headers = None
    if isinstance(exc, Locked | RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    if exc.status_code >= 500:
        _log.error("service_error", code=exc.code, error=exc.message)
    safe = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool | list)}
    return problem(exc.status_code, exc.code, exc.message, headers, **safe)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Echo where and why, never the submitted value: it may be a password or a key.
    fields = [
        {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    malformed = any(f["type"] == "json_invalid" for f in fields)
    code, message = (
        ("malformed_json", "request body is not valid JSON")
        if malformed
        else (
            "validation_error",
            "request is invalid: "
            + "; ".join(f"{'.'.join(f['loc'][1:] or f['loc'])}: {f['msg']}" for f in fields[:5]),
        )
    )
    return problem(422, code, message, fields=fields)


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return problem(exc.status_code, code, message, dict(exc.headers) if exc.headers else None)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem(500, "internal_error", "internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(BastionError, _bastion_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
