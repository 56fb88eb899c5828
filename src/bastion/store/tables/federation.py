"""Federations, their enrolled sites, rounds and the updates each round accepted.

The database is the arbiter of admission: ``UNIQUE(federation, round, participant)`` refuses a second
update from a site in one round and ``UNIQUE(nonce)`` refuses a replayed message, even when two
requests race on different API workers. The tensors themselves live encrypted in the vault; these
rows only name their artifacts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.base import Base, new_id, utcnow
from bastion.store.types import JsonText

_BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class Federation(Base):
    """One federated training run; the full validated request is kept in ``config_json``."""

    __tablename__ = "federations"
    __table_args__ = (
        UniqueConstraint("owner_id", "name", name="uq_federations_owner_name"),
        Index("ix_federations_project_created", "project_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    failure_reason: Mapped[str | None] = mapped_column(Text)
    config_json: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[dict[str, list[int]]] = mapped_column(JsonText)
    strategy: Mapped[str] = mapped_column(String(32))
    rounds: Mapped[int] = mapped_column(Integer)
    min_clients: Mapped[int] = mapped_column(Integer)
    target_clients: Mapped[int] = mapped_column(Integer)
    round_timeout_s: Mapped[float] = mapped_column(Float)
    max_round_attempts: Mapped[int] = mapped_column(Integer)
    current_round: Mapped[int] = mapped_column(Integer, default=1)
    completed_rounds: Mapped[int] = mapped_column(Integer, default=0)
    global_version: Mapped[int] = mapped_column(Integer, default=1)
    sealing_public_key: Mapped[str] = mapped_column(String(64))
    signing_public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # What invited guests see of the other parties: "aggregates" (default), "sites" or "metrics".
    visibility: Mapped[str] = mapped_column(String(16), default="aggregates", server_default="aggregates")


class FederationGuest(Base):
    """A user outside the federation's project invited to enrol their own sites."""

    __tablename__ = "fl_guests"

    federation_id: Mapped[str] = mapped_column(
        ForeignKey("federations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    invited_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    invited_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FederationParticipant(Base):
    """An enrolled site: a hashed credential and, after first contact, its Ed25519 public key."""

    __tablename__ = "fl_participants"
    __table_args__ = (UniqueConstraint("federation_id", "name", name="uq_fl_participants_federation_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    federation_id: Mapped[str] = mapped_column(ForeignKey("federations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    credential_prefix: Mapped[str] = mapped_column(String(16))
    signing_public_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Training samples the site declared when it registered: the bound on its weight (weights.py).
    registered_samples: Mapped[int | None] = mapped_column(Integer)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Who enrolled the site (a project member or an invited guest): guests always see their own sites.
    enrolled_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class FederationRound(Base):
    """One round: ``open`` -> ``closing`` -> ``closed`` | ``failed`` | ``superseded``.

    ``base_version`` and ``result_version`` are versions of the federation's global-model artifact in
    the vault; ``strategy_state_version`` is the aggregator's state saved when the round closed, so a
    restarted server resumes optimizer moments exactly.
    """

    __tablename__ = "fl_rounds"
    __table_args__ = (
        UniqueConstraint("federation_id", "number", name="uq_fl_rounds_federation_number"),
        Index("ix_fl_rounds_state_deadline", "state", "deadline"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    federation_id: Mapped[str] = mapped_column(ForeignKey("federations.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="open")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deadline: Mapped[datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    close_reason: Mapped[str | None] = mapped_column(String(32))
    base_version: Mapped[int] = mapped_column(Integer)
    result_version: Mapped[int | None] = mapped_column(Integer)
    strategy_state_version: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[int | None] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    num_samples: Mapped[int] = mapped_column(_BIGINT, default=0)
    metrics_json: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)


class FederationUpdate(Base):
    """An accepted update; the received (sealed, signed) message is the vault artifact ``artifact_id``."""

    __tablename__ = "fl_updates"
    __table_args__ = (
        UniqueConstraint("federation_id", "round", "participant_id", name="uq_fl_updates_round_participant"),
        UniqueConstraint("nonce", name="uq_fl_updates_nonce"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    federation_id: Mapped[str] = mapped_column(ForeignKey("federations.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    participant_id: Mapped[str] = mapped_column(ForeignKey("fl_participants.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(32))
    artifact_id: Mapped[str] = mapped_column(String(100))
    num_samples: Mapped[int] = mapped_column(_BIGINT)
    size_bytes: Mapped[int] = mapped_column(_BIGINT, default=0)
    metrics_json: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    accepted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
