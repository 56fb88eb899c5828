"""Projects and members on the wire (shared by the routes and the SDK)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bastion.contract.common import STRICT, UtcDateTime

ProjectRoleName = Literal["owner", "maintainer", "member", "viewer"]


class ProjectCreate(BaseModel):
    model_config = STRICT
    name: str = Field(min_length=1, max_length=200)
    domain: str = Field(
        min_length=1, max_length=64, description="one of the server's domains (GET /projects/domains)"
    )
    subdomain: str | None = Field(None, max_length=64)


class ProjectUpdate(BaseModel):
    model_config = STRICT
    name: str | None = Field(None, min_length=1, max_length=200)
    domain: str | None = Field(None, min_length=1, max_length=64)
    subdomain: str | None = Field(None, max_length=64)


class MemberAdd(BaseModel):
    model_config = STRICT
    user: str = Field(min_length=1, max_length=64, description="user name or id")
    role: ProjectRoleName = "member"


class MemberRole(BaseModel):
    model_config = STRICT
    role: ProjectRoleName


class Member(BaseModel):
    user_id: str
    username: str
    role: ProjectRoleName


class Project(BaseModel):
    id: str
    name: str
    domain: str
    subdomain: str | None
    personal: bool = Field(description="every user's own project, where objects go when no project is named")
    your_role: ProjectRoleName | None = Field(description="null for a platform admin who is no member")
    created_by: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    member_count: int | None


class ProjectDetail(Project):
    members: list[Member]


class Domains(BaseModel):
    domains: dict[str, list[str]] = Field(description="domain -> allowed subdomains (empty: any short slug)")
