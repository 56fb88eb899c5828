"""The error body as OpenAPI sees it, for routes to declare the statuses they can answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    success: bool = False
    error: ErrorDetail


_TEXT = {
    401: "Missing or invalid credentials",
    403: "Role, or a missing or wrong access code",
    404: "Not found (also: another user's object)",
    409: "Conflict with the object's state",
    413: "Body or upload too large",
    422: "Invalid input",
    423: "Locked out after too many wrong codes or passwords",
    429: "Rate limited",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with the one error body (401 and 429 always apply)."""
    return {s: {"model": ErrorBody, "description": _TEXT[s]} for s in sorted({401, 429, *statuses})}
