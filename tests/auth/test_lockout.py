"""Lockout counters under concurrency: parallel failures are all counted (SQLite and PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import select

from bastion.auth.lockout import LockoutPolicy
from bastion.context import Context
from bastion.store.tables import Lockout


def test_parallel_failures_are_all_counted(ctx: Context) -> None:
    policy = LockoutPolicy(max_failures=100, duration=timedelta(minutes=15))

    def fail(_: int) -> None:
        with ctx.db.session() as s:
            policy.record_failure(s, "ip:203.0.113.9")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, range(16)))
    with ctx.db.session() as s:
        row = s.scalars(select(Lockout).where(Lockout.subject == "ip:203.0.113.9")).one()
    assert row.failures == 16


def test_lock_triggers_exactly_once_under_a_burst(ctx: Context) -> None:
    policy = LockoutPolicy(max_failures=5, duration=timedelta(minutes=15))

    def fail(_: int) -> bool:
        with ctx.db.session() as s:
            return policy.record_failure(s, "user:mallory") is not None

    with ThreadPoolExecutor(8) as pool:
        triggered = list(pool.map(fail, range(12)))
    assert sum(triggered) == 1
