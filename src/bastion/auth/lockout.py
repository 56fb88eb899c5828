"""Brute-force lockout, per account and per source address, kept in the database.

Kept in the store (not in memory) so every API replica and a restart see the same counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bastion.errors import Locked
from bastion.store.base import utcnow
from bastion.store.models import Lockout


def account_subject(username: str) -> str:
    return f"user:{username.lower()}"


def source_subject(address: str | None) -> str:
    return f"ip:{address or 'unknown'}"


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int
    duration: timedelta

    def check(self, session: Session, *subjects: str) -> None:
        """Raise Locked if any subject is locked now."""
        now = utcnow()
        rows = session.scalars(select(Lockout).where(Lockout.subject.in_(subjects))).all()
        until = max((r.locked_until for r in rows if r.locked_until and r.locked_until > now), default=None)
        if until is not None:
            raise Locked(
                "too many failed attempts; try again later",
                retry_after=_seconds_until(until, now),
            )

    def record_failure(self, session: Session, subject: str) -> datetime | None:
        """Count one failure; return the lock expiry when this failure triggers a lock."""
        now = utcnow()
        # Write first: an upsert creates the row without racing a concurrent insert, and on SQLite
        # a write is what opens the transaction and takes the lock (pysqlite runs a bare SELECT
        # outside any transaction, so SELECT … FOR UPDATE alone would let parallel failures be lost).
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(Lockout)
            .values(subject=subject, failures=0, first_failure_at=now)
            .on_conflict_do_nothing(index_elements=["subject"])
        )
        row = session.scalars(
            select(Lockout)
            .where(Lockout.subject == subject)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        if now - row.first_failure_at > self.duration or (row.locked_until and row.locked_until <= now):
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= self.max_failures and row.locked_until is None:
            row.locked_until = now + self.duration
            return row.locked_until
        return None

    def clear(self, session: Session, subject: str) -> None:
        row = session.scalar(select(Lockout).where(Lockout.subject == subject))
        if row is not None:
            session.delete(row)


def _seconds_until(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))
