"""What the vault holds, as the API sees it: uploaded datasets and the model registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.base import Base, new_id, utcnow
from bastion.store.types import JsonText


class DatasetRecord(Base):
    __tablename__ = "datasets"
    # Project lists are keyset pages in (created_at, id) order: one range scan of this index.
    __table_args__ = (Index("ix_datasets_project_created", "project_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    source_format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[int] = mapped_column(Integer)
    # Tables: a list of plain column stats and of de-identification actions; fine-tuning files: dicts.
    schema_json: Mapped[Any] = mapped_column(JsonText)
    deid_json: Mapped[Any] = mapped_column(JsonText)
    artifact_id: Mapped[str] = mapped_column(String(100))
    access_protected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Set by DELETE (the payload is gone, the row stays) so a repeated DELETE answers like the first.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


class ModelRecord(Base):
    """A named model of one owner; its trained artifacts are versions."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_models_project_name"),
        Index("ix_models_project_created", "project_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    primary_metric: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelVersionRecord(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # Where the bytes are (see bastion.catalog.stored): the version's own artifact (latest version,
    # ``artifact_version`` NULL), or one vault version shared with the job or federation that made it.
    artifact_id: Mapped[str] = mapped_column(String(100), index=True)
    artifact_version: Mapped[int | None] = mapped_column(Integer)
    artifact_layout: Mapped[str] = mapped_column(String(16), default="raw", server_default="raw")
    model_format: Mapped[str] = mapped_column(String(16))
    config_json: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    # Metrics may hold numpy scalars: written as floats, as json.dumps(default=float) always did.
    metrics_json: Mapped[dict[str, Any]] = mapped_column(JsonText(float), default=dict)
    lineage_json: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    input_schema_json: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    access_protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
