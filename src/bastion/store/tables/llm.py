"""Base language models an admin registered: where they are and what their weights hash to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.base import Base, new_id, utcnow
from bastion.store.types import JsonText

_BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class LlmBaseModel(Base):
    __tablename__ = "llm_base_models"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    path: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(String(100))
    model_type: Mapped[str] = mapped_column(String(64))
    parameter_count: Mapped[int] = mapped_column(_BIGINT)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    config_json: Mapped[dict[str, Any]] = mapped_column(JsonText, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
