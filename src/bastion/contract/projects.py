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


class Contribution(BaseModel):
    user_id: str
    username: str | None
    role: ProjectRoleName | None = Field(description="null: no longer a member")
    datasets: int
    rows: int = Field(description="rows of the datasets they uploaded (kept ones)")
    jobs: int = Field(description="training and fine-tuning jobs they started")
    federation_rounds: int = Field(
        description="rounds of the project's federations their sites sent an update in"
    )


class VersionPoint(BaseModel):
    version: int
    created_at: UtcDateTime
    metrics: dict[str, float]


class ModelPerformance(BaseModel):
    model_id: str
    name: str
    primary_metric: str | None
    versions: list[VersionPoint]


class HistoryJob(BaseModel):
    job_id: str
    owner: str | None
    model_type: str
    state: str
    created_at: UtcDateTime
    completed_at: UtcDateTime | None
    duration_seconds: float
    metrics: dict[str, float]


class TrainingHistory(BaseModel):
    by_state: dict[str, int]
    jobs: list[HistoryJob] = Field(description="the newest 500, newest first")


class Usage(BaseModel):
    cpu_hours: float
    gpu_hours: float
    cost: float


class MemberUsage(Usage):
    user_id: str
    username: str | None


class ResourceUse(BaseModel):
    currency: str
    total: Usage
    by_member: list[MemberUsage]


class MemberRounds(BaseModel):
    user_id: str
    username: str | None
    rounds: int


class FederationParticipation(BaseModel):
    federation_id: str
    name: str
    state: str
    completed_rounds: int
    rounds: int
    sites: int
    guests: int
    rounds_by_member: list[MemberRounds]


class Contributions(BaseModel):
    data: list[Contribution]


class ModelsOverTime(BaseModel):
    data: list[ModelPerformance]


class Participation(BaseModel):
    data: list[FederationParticipation]
