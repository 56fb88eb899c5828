"""The error body every route can answer with, for the ``responses=`` of route declarations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid credential",
    403: "The caller's role does not allow this",
    404: "Not found (or somebody else's)",
    409: "Conflict with the object's state",
    413: "Body or upload too large",
    415: "Unsupported media type",
    422: "Invalid input (a stable code says which check failed)",
    429: "Rate or concurrency limit reached",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    success: bool = False
    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}
