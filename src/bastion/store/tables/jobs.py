"""Training jobs (the queue is this table), their events and logs, workers, prices, download keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.base import Base, new_id, utcnow
from bastion.store.types import JsonText

_BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class TrainingJob(Base):
    """One job. Workers claim rows in ``pending``; every state change is a guarded UPDATE."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        Index("ix_training_jobs_state_created", "state", "created_at"),
        Index("ix_training_jobs_project_created", "project_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_type: Mapped[str] = mapped_column(String(64))
    dataset_source: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    # The registry model its result joins (default: "<model_type>-<dataset>"); see catalog/model_versions.py.
    model_name: Mapped[str | None] = mapped_column(String(200))
    dataset_ref: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    resource_profile: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    max_runtime_seconds: Mapped[float] = mapped_column(Float)
    estimated_seconds: Mapped[float | None] = mapped_column(Float)

    state: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(32))
    # Written with json.dumps(default=str) always: what a target returns need not be JSON-able.
    history: Mapped[list[Any]] = mapped_column(JsonText(str), default=list)
    results: Mapped[dict[str, Any] | None] = mapped_column(JsonText(str))
    error_message: Mapped[str | None] = mapped_column(Text)

    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(128), index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    log_lines: Mapped[int] = mapped_column(Integer, default=0)

    model_artifact_id: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[int | None] = mapped_column(Integer)
    model_format: Mapped[str | None] = mapped_column(String(16))
    # JSON {cpus, gpus, memory} the executor reserves (Ray); None = from the resource profile.
    resources: Mapped[dict[str, Any] | None] = mapped_column(JsonText)
    # JSON search spec: set only on hyper-parameter search jobs (bastion.jobs.search).
    search_spec: Mapped[dict[str, Any] | None] = mapped_column(JsonText)


class JobEvent(Base):
    """What the SSE stream replays: state changes, progress and per-epoch metrics, in order."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JsonText(str))


class JobLogLine(Base):
    """A captured line of a job's output (stdout, stderr, progress or the worker's own notes)."""

    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    ts: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stream: Mapped[str] = mapped_column(String(8))
    line: Mapped[str] = mapped_column(Text)


class JobWorker(Base):
    """A live (or dead) worker: its heartbeat tells the others whether its running jobs are orphans."""

    __tablename__ = "job_workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    # hostname + PID-namespace: workers sharing it can tell a dead peer by its pid, at once.
    host_key: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    max_concurrent: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)


class TrainingPrice(Base):
    """Admin-set price of one resource profile; the table overrides the built-in defaults."""

    __tablename__ = "training_prices"

    profile: Mapped[str] = mapped_column(String(32), primary_key=True)
    hourly_cost: Mapped[float] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    speedup: Mapped[float] = mapped_column(Float, default=1.0)
    description: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(36))


class SearchJournalEntry(Base):
    """One line of an Optuna study's journal: a search's trials live in Bastion's own database."""

    __tablename__ = "search_journal"
    __table_args__ = (UniqueConstraint("study", "seq", name="uq_search_journal_study_seq"),)

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    study: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    entry: Mapped[dict[str, Any]] = mapped_column(JsonText)


class DownloadKey(Base):
    """A user's X25519 public key: models downloaded by that user are sealed to it."""

    __tablename__ = "download_keys"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
