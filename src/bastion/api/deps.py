"""Annotated dependencies: the context, the caller, and role gates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from bastion.audit import AuditRecord
from bastion.auth.principal import Principal
from bastion.auth.roles import Role
from bastion.context import Context
from bastion.errors import Forbidden, Unauthorized


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _credential(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("Authorization header must be 'Bearer <token or key>'", code="bad_auth_scheme")
    return request.query_params.get("api_key") or None


def current_principal(request: Request, ctx: ContextDep) -> Principal:
    """Authenticate, then charge the caller's rate limit. Runs in the threadpool (sync DB work)."""
    credential = _credential(request)
    ip = client_ip(request)
    if credential is None:
        ctx.audit.append(AuditRecord("auth.denied", "denied", source_ip=ip, details={"reason": "missing"}))
        raise Unauthorized(
            "authentication required: send X-API-Key or Authorization: Bearer", code="missing_credentials"
        )
    principal = ctx.auth.authenticate(credential, ip)
    request.state.principal = principal
    ctx.limiter.hit(ctx.settings.rate_limit, "caller", principal.user_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(minimum: Role) -> Callable[..., Principal]:
    def gate(request: Request, principal: CurrentPrincipal, ctx: ContextDep) -> Principal:
        if not principal.has(minimum):
            ctx.audit.append(
                AuditRecord(
                    "auth.forbidden",
                    "denied",
                    principal.user_id,
                    principal.username,
                    "route",
                    request.url.path[:64],
                    client_ip(request),
                    {"required": minimum.value, "role": principal.role},
                )
            )
            raise Forbidden(f"this action needs the {minimum.value} role", code="insufficient_role")
        return principal

    return gate


AdminPrincipal = Annotated[Principal, Depends(require(Role.ADMIN))]
UserPrincipal = Annotated[Principal, Depends(require(Role.USER))]
