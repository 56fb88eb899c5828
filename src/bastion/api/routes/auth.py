"""Login, token refresh, logout, the caller's own profile and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CurrentPrincipal, client_ip
from bastion.auth.service import TokenPair
from bastion.errors import Unauthorized

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(BaseModel):
    refresh_token: str | None = Field(None, max_length=4096)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type=pair.token_type,
            expires_in=pair.expires_in,
        )


class Me(BaseModel):
    user_id: str
    username: str
    role: str
    authenticated_via: str


class KeyCreate(BaseModel):
    name: str = Field("default", min_length=1, max_length=100)
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class KeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewKeyResponse(KeyInfo):
    key: str = Field(description="The API key itself. Shown once: store it now.")


def key_info(key: object) -> KeyInfo:
    return KeyInfo.model_validate(key, from_attributes=True)


@router.post("/login", response_model=TokenResponse)
async def login(body: LoginRequest, request: Request, ctx: ContextDep) -> TokenResponse:
    ip = client_ip(request)
    await run_in_threadpool(ctx.limiter.hit, ctx.settings.login_rate_limit, "login", ip or "unknown")
    try:
        pair = await run_in_threadpool(ctx.auth.login, body.username, body.password, ip)
    except Unauthorized as exc:
        if exc.slow_down:  # progressive delay for an address that keeps failing (not a thread held)
            await anyio.sleep(exc.slow_down)
        raise
    return TokenResponse.of(pair)


@router.post("/refresh", response_model=TokenResponse)
def refresh(body: RefreshRequest, request: Request, ctx: ContextDep) -> TokenResponse:
    ctx.limiter.hit(ctx.settings.login_rate_limit, "login", client_ip(request) or "unknown")
    return TokenResponse.of(ctx.auth.refresh(body.refresh_token, client_ip(request)))


@router.post("/logout")
def logout(
    principal: CurrentPrincipal,
    request: Request,
    ctx: ContextDep,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> dict[str, object]:
    ctx.auth.logout(principal, body.refresh_token if body else None, client_ip(request))
    return {"success": True, "message": "logged out"}


@router.get("/me", response_model=Me)
def me(principal: CurrentPrincipal) -> Me:
    return Me(
        user_id=principal.user_id,
        username=principal.username,
        role=principal.role,
        authenticated_via=principal.via,
    )


@router.get("/keys", response_model=list[KeyInfo])
def list_keys(principal: CurrentPrincipal, ctx: ContextDep) -> list[KeyInfo]:
    return [key_info(k) for k in ctx.accounts.list_keys(principal.user_id)]


@router.post("/keys", response_model=NewKeyResponse, status_code=201)
def create_key(body: KeyCreate, principal: CurrentPrincipal, ctx: ContextDep) -> NewKeyResponse:
    new = ctx.accounts.create_key(
        principal.user_id, body.name, expires_in_days=body.expires_in_days, actor=principal
    )
    return NewKeyResponse(**key_info(new.key).model_dump(), key=new.plaintext)


@router.delete("/keys/{key_id}", response_model=KeyInfo)
def revoke_key(key_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> KeyInfo:
    return key_info(ctx.accounts.revoke_key(key_id, owner_id=principal.user_id, actor=principal))
