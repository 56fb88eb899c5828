"""The server's one wall clock: every ``utcnow()`` in the code reads it, so a test moves time by
swapping it (``with use(ManualClock(t)):``) instead of patching ``utcnow`` in the module that reads it.

Naive UTC, as ``bastion.store.base.utcnow`` always returned: SQLite and PostgreSQL (timestamp without
time zone) round-trip it identically. Monotonic timers (deadlines measured in seconds, rate-limit
windows) are not wall-clock time and stay on ``time``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


class ManualClock:
    """A clock that stands still until told to move (tests)."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


_clock: Clock = SystemClock()


def utcnow() -> datetime:
    """Now, in naive UTC, from the installed clock."""
    return _clock.now()


def aware_utcnow() -> datetime:
    """Now, timezone-aware UTC, from the installed clock (for timestamps written out as text)."""
    return _clock.now().replace(tzinfo=UTC)


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` for the duration of the block (the previous one comes back after it)."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous
