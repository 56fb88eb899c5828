"""Login, tokens, the caller, API keys, users and the audit log."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bastion.contract.common import STRICT, UtcDateTime

RoleName = Literal["admin", "user", "viewer"]


class LoginRequest(BaseModel):
    model_config = STRICT

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    model_config = STRICT

    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(BaseModel):
    model_config = STRICT

    refresh_token: str | None = Field(None, max_length=4096)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class Me(BaseModel):
    user_id: str
    username: str
    role: str
    authenticated_via: str


class KeyCreate(BaseModel):
    model_config = STRICT

    name: str = Field("default", min_length=1, max_length=100)
    expires_in_days: float | None = Field(None, gt=0, le=3650)


class KeyInfo(BaseModel):
    id: str
    name: str
    prefix: str
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    last_used_at: UtcDateTime | None
    revoked_at: UtcDateTime | None


class NewKeyResponse(KeyInfo):
    key: str = Field(description="The API key itself. Shown once: store it now.")


class UserCreate(BaseModel):
    model_config = STRICT

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: RoleName = "user"
    password: str | None = Field(None, min_length=12, max_length=1024)
    email: str | None = Field(None, max_length=254)


class UserUpdate(BaseModel):
    model_config = STRICT

    role: RoleName | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=12, max_length=1024)
    current_password: str | None = Field(
        None,
        max_length=1024,
        description="Required when admins change their own role or password (re-authentication)",
    )


class UserInfo(BaseModel):
    id: str
    username: str
    email: str | None
    role: str
    disabled: bool
    created_at: UtcDateTime


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
    details: dict[str, Any]
    hash: str
