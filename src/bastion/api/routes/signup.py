"""Self-service sign-up (off unless enabled) and the admin's queue of sign-ups to approve."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import AdminPrincipal, ContextDep, SignupsDep, client_ip
from bastion.api.openapi import errors
from bastion.api.routing import PrefixRouter
from bastion.contract.accounts import UserInfo

router = PrefixRouter(prefix="/api/v1/auth", tags=["auth"])
admin_router = PrefixRouter(prefix="/api/v1/admin/signups", tags=["admin"])


class SignupBody(BaseModel):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    password: str = Field(min_length=1, max_length=1024)


class SignupReceived(BaseModel):
    success: bool = True
    message: str


class SignupInfo(BaseModel):
    id: str
    username: str
    email: str
    created_at: datetime


class SignupPage(BaseModel):
    data: list[SignupInfo]
    next_cursor: str | None


@router.post("/signup", response_model=SignupReceived, status_code=202, responses=errors(403, 422, 429))
async def signup(body: SignupBody, request: Request, ctx: ContextDep, signups: SignupsDep) -> SignupReceived:
    """Register; the answer is the same whether the name was free or taken (no enumeration)."""
    ip = client_ip(request)
    await run_in_threadpool(ctx.limiter.hit, ctx.settings.login_rate_limit, "login", ip or "unknown")
    message = await run_in_threadpool(signups.register, body.username, body.email, body.password, ip)
    return SignupReceived(message=message)


@admin_router.get("", response_model=SignupPage, responses=errors(401, 403, 422))
def list_signups(
    _admin: AdminPrincipal,
    signups: SignupsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> SignupPage:
    page, next_cursor = signups.pending(limit=limit, cursor=cursor)
    return SignupPage(
        data=[SignupInfo.model_validate(r, from_attributes=True) for r in page], next_cursor=next_cursor
    )


@admin_router.post(
    "/{ref}/approve", response_model=UserInfo, status_code=201, responses=errors(401, 403, 404, 409)
)
def approve_signup(ref: str, admin: AdminPrincipal, signups: SignupsDep, response: Response) -> UserInfo:
    user = signups.approve(ref, admin)
    response.headers["Location"] = f"/api/v1/admin/users/{user.id}"
    return UserInfo.model_validate(user, from_attributes=True)


@admin_router.delete("/{ref}", status_code=204, responses=errors(401, 403, 404))
def reject_signup(ref: str, admin: AdminPrincipal, signups: SignupsDep) -> Response:
    signups.reject(ref, admin)
    return Response(status_code=204)
