"""Federations as their coordinator sees them, and the participant (site) answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.contract.common import STRICT, UtcDateTime


class EnrollRequest(BaseModel):
    model_config = STRICT

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")


class Participant(BaseModel):
    id: str
    name: str
    credential_prefix: str | None = Field(description="null for another party's site, seen by a guest")
    registered: bool
    signing_public_key: str | None
    created_at: UtcDateTime | None
    registered_at: UtcDateTime | None
    last_seen_at: UtcDateTime | None
    revoked_at: UtcDateTime | None
    metrics: dict[str, Any] | None = Field(
        None,
        description="the site's latest reported metrics (hidden from guests unless visibility is 'metrics')",
    )
    yours: bool = Field(False, description="you enrolled this site")


class Enrolled(Participant):
    federation_id: str
    token: str = Field(description="The site's bsp_ credential. Shown once: hand it to the site.")
    server_signing_key: str


class Round(BaseModel):
    round: int
    state: str
    attempt: int
    opened_at: UtcDateTime | None
    deadline: UtcDateTime | None
    closed_at: UtcDateTime | None
    close_reason: str | None
    updates: int
    num_samples: int
    metrics: dict[str, Any]
    base_version: int | None
    global_version: int | None
    model_version: int | None


class FederationSummary(BaseModel):
    id: str
    project_id: str | None = Field(None, description="The project that owns the federation")
    name: str
    state: str
    failure_reason: str | None
    strategy: str
    rounds: int
    current_round: int
    completed_rounds: int
    min_clients: int
    target_clients: int
    round_timeout_s: float
    max_round_attempts: int
    global_version: int
    server_signing_key: str
    server_sealing_key: str
    created_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class FederationDetail(FederationSummary):
    config: dict[str, Any]
    history: list[Round]
    participants: list[Participant]
    privacy: dict[str, Any] | None = None
    secure_aggregation: dict[str, Any] | None = None


class FederationStatus(BaseModel):
    """seeds/001's ``/status`` shape (round, pending/required updates, clients online), and more."""

    federation_id: str
    state: str
    round: int
    round_state: str | None
    pending_updates: int
    required_updates: int
    min_updates: int
    clients_online: int
    participants: int
    attempt: int | None
    deadline: UtcDateTime | None
    completed_rounds: int
    rounds: int
    failure_reason: str | None
    privacy: dict[str, Any] | None = None
    secure_aggregation: dict[str, Any] | None = None


class SiteAnswer(BaseModel):
    """A participant route's answer (site-internal protocol; its fields are in docs/federated.md)."""

    model_config = ConfigDict(extra="allow")


class UploadedModel(BaseModel):
    """A coordinator's model upload, now the federation's global version."""

    model_config = ConfigDict(protected_namespaces=())

    federation_id: str
    global_version: int
    bytes: int
    model_version: int | None
    superseded_round: int | None = None
    discarded_updates: int | None = None


class FederationGuest(BaseModel):
    user_id: str
    username: str
    invited_at: UtcDateTime


class Sharing(BaseModel):
    """Who outside the coordinator's project takes part, and what they see of the others."""

    visibility: Literal["aggregates", "sites", "metrics"] = Field(
        description="aggregates: guests see rounds and aggregate metrics and their own sites only; "
        "sites: also the other sites' names; metrics: also each site's latest metrics"
    )
    guests: list[FederationGuest]


class VisibilityBody(BaseModel):
    model_config = STRICT
    visibility: Literal["aggregates", "sites", "metrics"]


class GuestInvite(BaseModel):
    model_config = STRICT
    user: str = Field(min_length=1, max_length=64, description="user name or id")
