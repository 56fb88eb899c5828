"""Base language models: the registry of local model directories an admin registered.

What a directory must be to be registered (safetensors only, no remote code) is checked by
:mod:`bastion.llm.modeldir`; the registry keeps its name, path, architecture, parameter count and
weights hash, and every later load checks that hash again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.errors import Conflict, Invalid, NotFound
from bastion.llm.modeldir import context_length, inspect_model_dir, load_base
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.tables import LlmBaseModel

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
__all__ = ["BaseModels", "context_length", "inspect_model_dir", "load_base", "view"]


def view(row: LlmBaseModel) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "model",
        "name": row.name,
        "architecture": row.architecture,
        "model_type": row.model_type,
        "parameter_count": row.parameter_count,
        "weights_sha256": row.weights_sha256,
        "created_at": row.created_at.isoformat(),
    }


class BaseModels:
    """The registry of base models (admins write, every user reads)."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def register(self, principal: Principal, path: str, name: str) -> dict[str, Any]:
        if not NAME.fullmatch(name):
            raise Invalid("base model names are 1-100 letters, digits, '.', '_' or '-'", code="invalid_name")
        info = inspect_model_dir(path)
        row = LlmBaseModel(
            name=name,
            path=str(Path(path).expanduser().resolve()),
            architecture=info.architecture,
            model_type=info.model_type,
            parameter_count=info.parameter_count,
            weights_sha256=info.weights_sha256,
            config_json=info.config,
            created_by=principal.user_id,
            created_at=utcnow(),
        )
        try:
            with self.db.session() as s:
                s.add(row)
                s.flush()
                self.audit.append(
                    AuditRecord(
                        "llm.base_model.register",
                        actor_id=principal.user_id,
                        actor=principal.username,
                        target_type="llm_base_model",
                        target_id=row.id,
                        details={"name": name, "sha256": info.weights_sha256},
                    ),
                    s,
                )
                return view(row)
        except DBIntegrityError:
            raise Conflict(f"a base model named {name!r} exists", code="base_model_exists") from None

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [view(r) for r in s.scalars(select(LlmBaseModel).order_by(LlmBaseModel.name))]

    def get(self, name_or_id: str) -> LlmBaseModel:
        with self.db.session() as s:
            row = s.scalar(select(LlmBaseModel).where(LlmBaseModel.name == name_or_id)) or s.get(
                LlmBaseModel, name_or_id[:36]
            )
        if row is None:
            raise NotFound(f"unknown base model {name_or_id[:100]!r}", code="unknown_base_model")
        return row
