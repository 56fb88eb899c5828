"""Appending to the chain. Each row hashes the previous row's hash and its own canonical JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.orm import Session

from bastion.audit.canonical import HASHED_FIELDS, canonical_json, row_hash, scrub
from bastion.clock import aware_utcnow
from bastion.store import Database
from bastion.store.tables import AuditEvent, AuditHead

Outcome = Literal["success", "denied", "failure"]

# Core statements on the tables, built once: the ORM's bulk-update and unit-of-work paths cost more
# than the three statements themselves (py-spy: the audit append was 17% of a federation round's
# server CPU, most of it in statement construction and ORM bookkeeping).
_HEAD, _EVENTS = cast(Table, AuditHead.__table__), cast(Table, AuditEvent.__table__)
_BUMP = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.hash)
_INSERT = insert(_EVENTS)
_SET_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("new_hash"))


@dataclass
class AuditRecord:
    action: str
    outcome: Outcome = "success"
    actor_id: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    source_ip: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, record: AuditRecord, session: Session | None = None) -> int:
        """Append inside ``session`` (atomic with the change it records) or a transaction of its own."""
        if session is not None:
            return self._append(session, record)
        with self.db.session() as s:
            return self._append(s, record)

    @staticmethod
    def _append(session: Session, record: AuditRecord) -> int:
        # Bumping the head first takes its row lock (PostgreSQL) or the write lock (SQLite), so two
        # appenders can never both read the same predecessor and fork the chain.
        # One statement takes the lock, the number and the predecessor's hash (no ORM load of the head).
        session.flush()  # the ORM statements this used to run flushed pending changes first: keep that order
        conn = session.connection()
        seq, prev_hash = conn.execute(_BUMP).one()
        fields: dict[str, Any] = {
            "seq": seq,
            "ts": aware_utcnow().isoformat(timespec="microseconds"),
            "actor_id": record.actor_id,
            "actor": record.actor,
            "action": record.action,
            "outcome": record.outcome,
            "target_type": record.target_type,
            "target_id": record.target_id,
            "source_ip": record.source_ip,
            "details": canonical_json(scrub(record.details)),
        }
        assert tuple(fields) == HASHED_FIELDS
        digest = row_hash(prev_hash, fields)
        conn.execute(_INSERT, {**fields, "prev_hash": prev_hash, "hash": digest})
        conn.execute(_SET_HASH, {"new_hash": digest})
        return int(seq)
