"""Admin: users and the audit log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query, Response
from pydantic import BaseModel, BeforeValidator, Field

from bastion.api.deps import AdminPrincipal, ContextDep
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.api.routes.auth import key_info
from bastion.api.routing import PrefixRouter
from bastion.audit.query import AuditFilter, filtered, row_dict
from bastion.contract.accounts import (
    AuditEntry,
    KeyCreate,
    NewKeyResponse,
    UserCreate,
    UserInfo,
    UserUpdate,
)
from bastion.errors import Invalid
from bastion.store.paging import Keyset
from bastion.store.tables import AuditEvent

router = PrefixRouter(prefix="/api/v1/admin", tags=["admin"])
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}.*)?$")
AUDIT = Keyset(AuditEvent.seq)  # newest first


def _date_time(value: object) -> object:
    """RFC 3339 text only (pydantic would also read a bare number as a Unix time)."""
    if (isinstance(value, str) and not value[:4].isdigit()) or (isinstance(value, str) and len(value) < 10):
        raise ValueError("since must be an RFC 3339 date-time")
    return value


def user_info(user: object) -> UserInfo:
    return UserInfo.model_validate(user, from_attributes=True)


@router.get("/users", response_model=Page[UserInfo])
def list_users(
    _: AdminPrincipal, ctx: ContextDep, limit: LimitQuery = 100, cursor: CursorQuery = None
) -> Page[UserInfo]:
    rows, next_cursor = ctx.accounts.page_users(limit, cursor)
    return Page[UserInfo](data=[user_info(u) for u in rows], next_cursor=next_cursor)


@router.post("/users", response_model=UserInfo, status_code=201, responses=errors(409))
def create_user(
    body: UserCreate, admin: AdminPrincipal, ctx: ContextDep, idem: Idempotent, response: Response
) -> UserInfo | Response:
    if (replay := idem.replay()) is not None:
        return replay
    user = user_info(
        ctx.accounts.create_user(
            body.username, body.role, password=body.password, email=body.email, actor=admin
        )
    )
    return idem.created(response, user, f"/api/v1/admin/users/{user.id}")


@router.get("/users/{user_id}", response_model=UserInfo)
def get_user(user_id: str, _: AdminPrincipal, ctx: ContextDep) -> UserInfo:
    """A user by id (or username)."""
    return user_info(ctx.accounts.find_user(user_id))


@router.patch("/users/{user_id}", response_model=UserInfo, responses=errors(409))
def update_user(user_id: str, body: UserUpdate, admin: AdminPrincipal, ctx: ContextDep) -> UserInfo:
    """Role, disable, password. The last admin cannot be demoted or disabled (409 ``last_admin``);
    changing your own role or password needs ``current_password`` (403 ``reauthentication_required``)."""
    return user_info(
        ctx.accounts.update_user(
            user_id,
            disabled=body.disabled,
            role=body.role,
            password=body.password,
            actor=admin,
            current_password=body.current_password,
        )
    )


@router.post("/users/{user_id}/keys", response_model=NewKeyResponse, status_code=201)
def create_user_key(
    user_id: str, body: KeyCreate, admin: AdminPrincipal, ctx: ContextDep, response: Response
) -> NewKeyResponse:
    new = ctx.accounts.create_key(user_id, body.name, expires_in_days=body.expires_in_days, actor=admin)
    response.headers["Location"] = f"/api/v1/admin/users/{new.key.user_id}/keys"
    return NewKeyResponse(**key_info(new.key).model_dump(), key=new.plaintext)


class UnlockRequest(BaseModel):
    username: str | None = Field(None, max_length=200, description="account to unlock (every address)")
    address: str | None = Field(None, max_length=64, description="client address to unlock")


class UnlockResult(BaseModel):
    cleared: int = Field(description="lockout counters removed")


@router.post("/lockouts/unlock", response_model=UnlockResult, responses=errors(422))
def unlock(body: UnlockRequest, admin: AdminPrincipal, ctx: ContextDep) -> UnlockResult:
    """Lift a lockout before it expires: an account's (from every address), an address's, or both."""
    if not body.username and not body.address:
        raise Invalid("give a username, an address, or both", code="nothing_to_unlock")
    return UnlockResult(cleared=ctx.auth.unlock(username=body.username, address=body.address, actor=admin))


@router.get("/audit", response_model=Page[AuditEntry])
def audit_log(
    _: AdminPrincipal,
    ctx: ContextDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
    action: Annotated[str | None, Query(max_length=64, description="Prefix, e.g. auth.")] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[Literal["success", "denied", "failure"] | None, Query()] = None,
    since: Annotated[datetime | None, Query(), BeforeValidator(_date_time)] = None,
) -> Page[AuditEntry]:
    """The audit log, newest first."""
    stmt = filtered(AuditFilter(action, actor, outcome, since))
    with ctx.db.session() as s:
        rows = s.scalars(AUDIT.apply(stmt, cursor, limit)).all()
        events = [AuditEntry(**row_dict(r)) for r in rows[:limit]]
    return Page[AuditEntry](data=events, next_cursor=AUDIT.next_cursor(rows, limit))
