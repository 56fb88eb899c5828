"""The one wall clock: installing a manual clock moves every ``utcnow`` reader, and only for the block."""

from __future__ import annotations

from datetime import datetime, timedelta

from bastion import clock
from bastion.store.base import utcnow


def test_manual_clock_moves_store_time_and_is_restored() -> None:
    start = datetime(2030, 1, 2, 3, 4, 5)
    with clock.use(clock.ManualClock(start)) as manual:
        assert utcnow() == start
        assert isinstance(manual, clock.ManualClock)
        manual.advance(timedelta(minutes=16))
        assert utcnow() == start + timedelta(minutes=16)
    assert abs(utcnow() - clock.SystemClock().now()) < timedelta(minutes=1)  # back on the system clock


def test_system_time_is_naive_utc() -> None:
    now = utcnow()
    assert now.tzinfo is None
