"""Errors translated at the boundary: one body, a stable code, never a stack trace.

Every error answer is ``application/problem+json`` (RFC 9457: ``type``, ``title``, ``status``,
``detail``) and keeps seeds/000's envelope (``success: false``, ``error.code``, ``error.message``), so
old clients that read ``error.code`` and new ones that read RFC 9457 both work. :class:`Problem` is
that body as a schema; :mod:`bastion.api.openapi` declares it on every error status of every route.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

import structlog
from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.errors import BastionError, Locked, RateLimited, Unauthorized

_log = structlog.get_logger("bastion.api")
PROBLEM_JSON = "application/problem+json"
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
# What a 401 asks for: the schemes current_principal accepts (RFC 9110 section 11.6.1).
WWW_AUTHENTICATE = 'Bearer realm="bastion", ApiKey realm="bastion", header="X-API-Key"'
# FastAPI's answer when a body cannot be decoded at all (not UTF-8, say): a malformed body, not a 400.
_UNPARSABLE = "There was an error parsing the body"


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ErrorDetail(BaseModel):
    """seeds/000's error object; routes may add context fields (``limit``, ``choices``, ``fields``...)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable machine code, e.g. not_found, validation_error")
    message: str = Field(description="For humans; never contains secrets")
    fields: list[FieldError] | None = Field(None, description="422 validation errors: where and why")


class Problem(BaseModel):
    """The one error body (RFC 9457 members plus seeds/000's ``success``/``error`` envelope)."""

    type: str = Field(description="urn:bastion:error:<code>")
    title: str = Field(description="The HTTP status phrase")
    status: int = Field(ge=400, le=599)
    detail: str
    success: Literal[False] = False
    error: ErrorDetail


def problem_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {
        "type": f"urn:bastion:error:{code}",
        "title": title,
        "status": status,
        "detail": message,
        "success": False,
        "error": {"code": code, "message": message, **extra},
    }


def problem(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return JSONResponse(
        problem_body(status, code, message, **extra),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def _bastion_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BastionError)
    headers: dict[str, str] = {}
    if isinstance(exc, Locked | RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized) and exc.details.get("scheme") == "site":
        headers["WWW-Authenticate"] = 'Bearer realm="bastion-site"'
    if exc.status_code >= 500:
        _log.error("service_error", code=exc.code, error=exc.message)
    safe = {
        k: v
        for k, v in exc.details.items()
        if k != "scheme" and isinstance(v, str | int | float | bool | list)
    }
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


def _allowed_methods(request: Request) -> str:
    """Every method any route on this path serves (Starlette's own 405 names only the first route's).

    A literal path shadows the parametrised ones it also matches (``/projects/domains`` is not a
    ``/projects/{project_id}``), as the OpenAPI document lists them.
    """
    path = request.url.path
    matches: list[tuple[bool, set[str]]] = []
    for context in routing.iter_route_contexts(request.app.router.routes):
        regex = getattr(context, "path_regex", None)
        if regex is not None and regex.match(path):
            literal = "{" not in str(getattr(context, "path_format", "{"))
            matches.append((literal, set(context.methods or ())))
    any_literal = any(literal for literal, _ in matches)
    methods: set[str] = set()
    for literal, served in matches:
        if literal or not any_literal:
            methods |= served
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 400 and exc.detail == _UNPARSABLE:
        if "json" in request.headers.get("content-type", "json"):
            return problem(422, "malformed_json", "request body is not valid JSON (or not UTF-8)")
        return problem(400, "malformed_body", "request body could not be parsed")
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return problem(exc.status_code, code, message, headers or None)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem(500, "internal_error", "internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(BastionError, _bastion_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
