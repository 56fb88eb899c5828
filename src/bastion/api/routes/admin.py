"""Admin: users and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from bastion.api.deps import AdminPrincipal, ContextDep
from bastion.api.routes.auth import KeyCreate, NewKeyResponse, key_info
from bastion.audit.query import AuditFilter, audit_page
from bastion.errors import Invalid

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
RoleName = Literal["admin", "user", "viewer"]


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: RoleName = "user"
    password: str | None = Field(None, min_length=12, max_length=1024)
    email: str | None = Field(None, max_length=254)


class UserUpdate(BaseModel):
    role: RoleName | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=12, max_length=1024)


class UserInfo(BaseModel):
    id: str
    username: str
    email: str | None
    role: str
    disabled: bool
    created_at: datetime


class AuditEntry(BaseModel):
    seq: int
    ts: str
    actor_id: str | None
    actor: str | None
    action: str
    outcome: str
    target_type: str | None
    target_id: str | None
    source_ip: str | None
    details: dict[str, object]
    hash: str


class AuditPage(BaseModel):
    events: list[AuditEntry]
    next_before: int | None


def user_info(user: object) -> UserInfo:
    return UserInfo.model_validate(user, from_attributes=True)


@router.get("/users", response_model=list[UserInfo])
def list_users(_: AdminPrincipal, ctx: ContextDep) -> list[UserInfo]:
    return [user_info(u) for u in ctx.accounts.list_users()]


@router.post("/users", response_model=UserInfo, status_code=201)
def create_user(body: UserCreate, admin: AdminPrincipal, ctx: ContextDep) -> UserInfo:
    return user_info(
        ctx.accounts.create_user(
            body.username, body.role, password=body.password, email=body.email, actor=admin
        )
    )


@router.patch("/users/{user_id}", response_model=UserInfo)
def update_user(user_id: str, body: UserUpdate, admin: AdminPrincipal, ctx: ContextDep) -> UserInfo:
    return user_info(
        ctx.accounts.update_user(
            user_id, disabled=body.disabled, role=body.role, password=body.password, actor=admin
        )
    )


@router.post("/users/{user_id}/keys", response_model=NewKeyResponse, status_code=201)
def create_user_key(user_id: str, body: KeyCreate, admin: AdminPrincipal, ctx: ContextDep) -> NewKeyResponse:
    new = ctx.accounts.create_key(user_id, body.name, expires_in_days=body.expires_in_days, actor=admin)
    return NewKeyResponse(**key_info(new.key).model_dump(), key=new.plaintext)


class UnlockRequest(BaseModel):
    username: str | None = Field(None, max_length=200, description="account to unlock (every address)")
    address: str | None = Field(None, max_length=64, description="client address to unlock")


class UnlockResult(BaseModel):
    cleared: int = Field(description="lockout counters removed")


@router.post(
    "/lockouts/unlock",
    response_model=UnlockResult,
    responses={422: {"description": "neither username nor address given"}},
)
def unlock(body: UnlockRequest, admin: AdminPrincipal, ctx: ContextDep) -> UnlockResult:
    """Lift a lockout before it expires: an account's (from every address), an address's, or both."""
    if not body.username and not body.address:
        raise Invalid("give a username, an address, or both", code="nothing_to_unlock")
    return UnlockResult(cleared=ctx.auth.unlock(username=body.username, address=body.address, actor=admin))


@router.get("/audit", response_model=AuditPage)
def audit_log(
    _: AdminPrincipal,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, description="page backwards from this seq")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[Literal["success", "denied", "failure"] | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
) -> AuditPage:
    rows = audit_page(ctx.db, limit, before, AuditFilter(action, actor, outcome, since))
    events = [AuditEntry(**row) for row in rows]
    return AuditPage(events=events, next_before=events[-1].seq if len(events) == limit else None)
