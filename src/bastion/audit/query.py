"""Reading the audit log a page at a time, newest first, with the filters the admin views offer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from bastion.store import Database
from bastion.store.tables import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None  # prefix: "auth." matches every auth action
    actor: str | None = None
    outcome: str | None = None
    since: datetime | None = None


def filtered(where: AuditFilter) -> Select[Any]:
    """The audit rows matching ``where`` (unordered): shared by the API's keyset pages and the dashboard."""
    stmt = select(AuditEvent)
    if where.action:
        stmt = stmt.where(AuditEvent.action.startswith(where.action, autoescape=True))
    if where.actor:
        stmt = stmt.where(AuditEvent.actor == where.actor)
    if where.outcome:
        stmt = stmt.where(AuditEvent.outcome == where.outcome)
    if where.since:
        stmt = stmt.where(AuditEvent.ts >= where.since.isoformat())
    return stmt


def row_dict(r: AuditEvent) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "ts": r.ts,
        "actor_id": r.actor_id,
        "actor": r.actor,
        "action": r.action,
        "outcome": r.outcome,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "source_ip": r.source_ip,
        "details": json.loads(r.details),
        "hash": r.hash,
    }


def audit_page(db: Database, limit: int, before: int | None, where: AuditFilter) -> list[dict[str, Any]]:
    """One query, whatever the page size: rows as plain dicts (details parsed)."""
    stmt = filtered(where).order_by(AuditEvent.seq.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(AuditEvent.seq < before)
    with db.session() as s:
        return [row_dict(r) for r in s.scalars(stmt)]
