"""One pure-ASGI middleware: body limit, security headers, metrics, access log, request audit.

Pure ASGI (not BaseHTTPMiddleware) because it sits on every request and must stay cheap.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import structlog
from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.api.problems import PROBLEM_JSON, problem_body
from bastion.audit import AuditLog, AuditRecord
from bastion.audit.coalesce import DenialCoalescer
from bastion.audit.log import Outcome
from bastion.logs import redact_text

_log = structlog.get_logger("bastion.access")
_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Pages load only same-origin assets (Swagger UI from the swagger-ui-py package): no CDN, nothing
# inline. Swagger UI's React components set styles through the CSSOM (element.style), which CSP does
# not govern; tests/web/test_docs_page.py renders the page in Chromium and fails on any violation.
_PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
)
# The dashboard: nothing inline, nothing from elsewhere (every asset is served by Bastion itself).
_DASHBOARD_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'",
)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# The two header sets, built once rather than per response.
_API_HEADERS = [*_SECURITY_HEADERS, _API_CSP, (b"cache-control", b"no-store")]
_PAGE_HEADERS = [*_SECURITY_HEADERS, _PAGE_CSP]
# Pages send their Origin to themselves (a form POST under no-referrer says "Origin: null", which the
# dashboard's CSRF check would have to refuse); nothing leaves for other sites.
_DASHBOARD_HEADERS = [
    *(h for h in _SECURITY_HEADERS if h[0] != b"referrer-policy"),
    (b"referrer-policy", b"same-origin"),
    _DASHBOARD_CSP,
]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bastion_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        # Labelled children by (method, route, status): ``labels()`` validates and locks on every
        # call; the set is bounded (route templates, not paths; "unmatched" for the rest).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class _TooLarge(HTTPException):
    """An HTTPException so FastAPI's body parser re-raises it as is (it wraps other errors as 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        audit: AuditLog | None,
        body_limit: Callable[[str], int],
        denials: DenialCoalescer | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.audit = audit
        self.body_limit = body_limit
        self.denials = denials or DenialCoalescer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        request_id = os.urandom(8).hex()  # 64 random bits, as uuid4().hex[:16] gave, far cheaper
        scope.setdefault("state", {})["request_id"] = request_id
        limit = self.body_limit(path)
        status = 500
        started = False
        tls = scope.get("scheme") == "https"

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _reject_too_large(send, limit)
            self._finish(scope, method, path, 413, start, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                if path.startswith("/docs"):
                    headers.extend(_PAGE_HEADERS)
                elif path.startswith("/api/") or path in ("/metrics", "/openapi.json"):
                    headers.extend(_API_HEADERS)
                else:
                    headers.extend(_DASHBOARD_HEADERS)
                if tls:
                    headers.append(_HSTS)
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            if not started:
                await _reject_too_large(send_with_headers, limit)
            status = 413
        finally:
            self._finish(scope, method, path, status, start, request_id)
            if method in _STATE_CHANGING or (status == 404 and method == "GET"):
                await self._audit(scope, method, status, request_id)

    def _finish(
        self, scope: Scope, method: str, path: str, status: int, start: float, request_id: str
    ) -> None:
        elapsed = time.perf_counter() - start
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe(method, route, status, elapsed)
        principal = scope.get("state", {}).get("principal")
        query: bytes = scope.get("query_string", b"")
        _log.info(
            "request",
            method=method,
            path=path,
            query=redact_text(query.decode("latin-1")) if query else "",
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            request_id=request_id,
            user=getattr(principal, "username", None),
        )

    async def _audit(self, scope: Scope, method: str, status: int, request_id: str) -> None:
        """Every state-changing request leaves an audit row, whatever its outcome.

        A route marked with :func:`audits_success` writes its own row when it succeeds (one domain row
        per accepted model update, say); only its refusals get the generic row here.
        """
        endpoint = scope.get("route")
        route = getattr(endpoint, "path", None)
        if self.audit is None or route is None:
            return
        principal = scope.get("state", {}).get("principal")
        if method not in _STATE_CHANGING and (principal is None or "{" not in route):
            return  # only an authenticated caller's 404 on an object route: the enumeration signature
        if status < 400 and getattr(getattr(endpoint, "endpoint", None), SELF_AUDITED, False):
            return
        client = scope.get("client")
        outcome: Outcome = (
            "success" if status < 400 else "denied" if status in (401, 403, 404, 423, 429) else "failure"
        )
        record = AuditRecord(
            f"http.{method.lower()}",
            outcome,
            actor_id=getattr(principal, "user_id", None),
            actor=getattr(principal, "username", None),
            target_type="route",
            target_id=route[:64],
            source_ip=client[0] if client else None,
            details={"status": status, "request_id": request_id},
        )
        if outcome == "denied":  # a burst of identical refusals: one row per window, with a count
            admitted = self.denials.admit(record)
            if admitted is None:
                return
            record = admitted
        try:
            await anyio.to_thread.run_sync(self.audit.append, record)
        except Exception:
            _log.exception("audit_write_failed", request_id=request_id)


SELF_AUDITED = "__bastion_audits_success__"
F = TypeVar("F", bound=Callable[..., Any])


def audits_success(endpoint: F) -> F:
    """Mark a route whose handler appends its own audit row on success (the gateway skips its own)."""
    setattr(endpoint, SELF_AUDITED, True)
    return endpoint


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject_too_large(send: Any, limit: int) -> None:
    message = f"request body exceeds the limit of {limit} bytes"
    body = json.dumps(problem_body(413, "payload_too_large", message, limit=limit)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
