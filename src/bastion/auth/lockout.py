"""Brute-force lockout, per account and per source address, kept in the database.

Kept in the store (not in memory) so every API replica and a restart see the same counters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bastion.errors import Locked
from bastion.store.base import utcnow
from bastion.store.tables import Lockout


def account_subject(username: str) -> str:
    return f"user:{username.lower()}"


def source_subject(address: str | None) -> str:
    return f"ip:{address or 'unknown'}"


def pair_subject(address: str | None, username: str) -> str:
    """One account guessed from one address: what a login locks, so a NAT's neighbours stay free."""
    return f"pair:{address or 'unknown'}|{username.lower()}"


def locked_error(until: datetime) -> Locked:
    """The 423 for a subject locked until ``until`` (with its Retry-After)."""
    return Locked("too many failed attempts; try again later", retry_after=_seconds_until(until, utcnow()))


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
        row = self._locked_row(session, subject)
        if now - row.first_failure_at > self.duration or (row.locked_until and row.locked_until <= now):
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= self.max_failures and row.locked_until is None:
            row.locked_until = now + self.duration
            return row.locked_until
        return None

    def reserve(self, session: Session, subject: str) -> tuple[datetime | None, datetime | None]:
        """Count an attempt *before* it is checked: ``(refused_until, locked_now_until)``.

        ``refused_until`` is set when the subject is already locked (the attempt must not be checked;
        the caller rolls back, so a refused attempt is not counted). Otherwise the attempt counts as
        a failure until a success clears it, and the attempt that reaches ``max_failures`` sets the
        lock (``locked_now_until``) while still being checked: so at most ``max_failures`` guesses
        are ever checked per window, however many arrive at once (the row lock serialises them).
        """
        row = self._locked_row(session, subject)
        now = utcnow()
        if row.locked_until is not None and row.locked_until > now:
            return row.locked_until, None
        if now - row.first_failure_at > self.duration or row.locked_until is not None:
            row.failures, row.first_failure_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= self.max_failures:
            row.locked_until = now + self.duration
            return None, row.locked_until
        return None, None

    def failures(self, session: Session, subject: str) -> int:
        """Failures counted in the current window (0 once it has passed)."""
        row = session.scalar(select(Lockout).where(Lockout.subject == subject))
        if row is None or utcnow() - row.first_failure_at > self.duration:
            return 0
        return int(row.failures)

    def _locked_row(self, session: Session, subject: str) -> Lockout:
        """The subject's row, created if missing and locked for this transaction.

        Write first: an upsert creates the row without racing a concurrent insert, and on SQLite a
        write is what opens the transaction and takes the lock (pysqlite runs a bare SELECT outside
        any transaction, so SELECT ... FOR UPDATE alone would let parallel attempts be lost).
        """
        now = utcnow()
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(Lockout)
            .values(subject=subject, failures=0, first_failure_at=now)
            .on_conflict_do_nothing(index_elements=["subject"])
        )
        return session.scalars(
            select(Lockout)
            .where(Lockout.subject == subject)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()

    def unlock(self, session: Session, *, username: str | None = None, address: str | None = None) -> int:
        """Lift lockouts: an account (and its address pairs), an address (and its pairs), or both."""
        conditions = []
        if username:
            name = username.lower()
            conditions += [
                Lockout.subject == account_subject(name),
                Lockout.subject.like(f"pair:%|{_like(name)}", escape="\\"),
            ]
        if address:
            conditions += [
                Lockout.subject == source_subject(address),
                Lockout.subject.like(f"pair:{_like(address)}|%", escape="\\"),
            ]
        if username and address:
            conditions.append(Lockout.subject == pair_subject(address, username))
        if not conditions:
            return 0
        rows = session.scalars(select(Lockout).where(or_(*conditions))).all()
        for row in rows:
            session.delete(row)
        return len(rows)

    def clear(self, session: Session, subject: str) -> None:
        row = session.scalar(select(Lockout).where(Lockout.subject == subject))
        if row is not None:
            session.delete(row)


def _seconds_until(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
