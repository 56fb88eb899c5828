"""Login, token refresh, logout, the caller's own profile and API keys."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Body, Request, Response
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CurrentPrincipal, client_ip
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.api.routing import PrefixRouter
from bastion.auth.service import TokenPair
from bastion.contract.accounts import (
    KeyCreate,
    KeyInfo,
    LoginRequest,
    LogoutRequest,
    Me,
    NewKeyResponse,
    RefreshRequest,
    TokenResponse,
)
from bastion.contract.common import Ack
from bastion.errors import Unauthorized

router = PrefixRouter(prefix="/api/v1/auth", tags=["auth"])
# Re-exported for the admin routes and older imports.
__all__ = ["KeyCreate", "KeyInfo", "NewKeyResponse", "key_info", "router"]


def tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


def key_info(key: object) -> KeyInfo:
    return KeyInfo.model_validate(key, from_attributes=True)


@router.post("/login", response_model=TokenResponse, responses=errors(401, 423, 429))
async def login(body: LoginRequest, request: Request, ctx: ContextDep) -> TokenResponse:
    ip = client_ip(request)
    await run_in_threadpool(ctx.limiter.hit, ctx.settings.login_rate_limit, "login", ip or "unknown")
    try:
        pair = await run_in_threadpool(ctx.auth.login, body.username, body.password, ip)
    except Unauthorized as exc:
        if exc.slow_down:  # progressive delay for an address that keeps failing (not a thread held)
            await anyio.sleep(exc.slow_down)
        raise
    return tokens(pair)


@router.post("/refresh", response_model=TokenResponse, responses=errors(401, 423, 429))
def refresh(body: RefreshRequest, request: Request, ctx: ContextDep) -> TokenResponse:
    ctx.limiter.hit(ctx.settings.login_rate_limit, "login", client_ip(request) or "unknown")
    return tokens(ctx.auth.refresh(body.refresh_token, client_ip(request)))


@router.post("/logout", response_model=Ack)
def logout(
    principal: CurrentPrincipal,
    request: Request,
    ctx: ContextDep,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Ack:
    ctx.auth.logout(principal, body.refresh_token if body else None, client_ip(request))
    return Ack(message="logged out")


@router.get("/me", response_model=Me)
def me(principal: CurrentPrincipal) -> Me:
    # Sync on purpose, though nothing here blocks: as `async def` the rate doubled (1.05-1.4x a bare
    # endpoint), but wrk then reports the ~1 s p99 tail it shows for any saturated event-loop route,
    # which neither the server's own timings nor another client see (docs/performance.md, stop 23).
    return Me(
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role,
        authenticated_via=principal.via,
    )


@router.get("/keys", response_model=Page[KeyInfo])
def list_keys(
    principal: CurrentPrincipal, ctx: ContextDep, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> Page[KeyInfo]:
    """Your API keys, oldest first (revoked and expired ones too, with their dates)."""
    rows, next_cursor = ctx.accounts.page_keys(principal.user_id, limit, cursor)
    return Page[KeyInfo](data=[key_info(k) for k in rows], next_cursor=next_cursor)


@router.post("/keys", response_model=NewKeyResponse, status_code=201)
def create_key(
    body: KeyCreate, principal: CurrentPrincipal, ctx: ContextDep, response: Response
) -> NewKeyResponse:
    """A new key; the key itself is in this answer only (so no Idempotency-Key: it is not kept)."""
    new = ctx.accounts.create_key(
        principal.user_id, body.name, expires_in_days=body.expires_in_days, actor=principal
    )
    response.headers["Location"] = f"/api/v1/auth/keys/{new.key.id}"
    return NewKeyResponse(**key_info(new.key).model_dump(), key=new.plaintext)


@router.get("/keys/{key_id}", response_model=KeyInfo)
def get_key(key_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> KeyInfo:
    return key_info(ctx.accounts.get_key(key_id, principal.user_id))


@router.delete("/keys/{key_id}", response_model=KeyInfo)
def revoke_key(key_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> KeyInfo:
    """Revoke a key. Repeating it answers the same (the revoked key, with its revocation time)."""
    return key_info(ctx.accounts.revoke_key(key_id, owner_id=principal.user_id, actor=principal))
