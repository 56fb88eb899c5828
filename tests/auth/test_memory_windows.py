"""The in-memory fixed windows count like limits' FixedWindowRateLimiter, expire lazily, stay bounded."""

from __future__ import annotations

import threading

import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from bastion.auth.ratelimit import MemoryWindows, RateLimiter
from bastion.errors import RateLimited


def test_same_decisions_as_limits_within_a_window() -> None:
    item = parse("5/minute")
    ours, ref = MemoryWindows(), FixedWindowRateLimiter(MemoryStorage())
    for who in ("alice", "bob", "alice", "alice", "alice", "alice", "alice", "bob", "alice"):
        assert ours.hit(item, who)[0] == ref.hit(item, who)


def test_a_window_reopens_after_its_period(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("bastion.auth.ratelimit.time.time", lambda: now[0])
    windows, item = MemoryWindows(), parse("2/second")
    assert [windows.hit(item, "k")[0] for _ in range(3)] == [True, True, False]
    assert windows.hit(item, "k")[1] == 1001.0
    now[0] = 1001.0
    assert windows.hit(item, "k") == (True, 1002.0, 1)


def test_limiter_raises_with_retry_after() -> None:
    limiter = RateLimiter()
    assert limiter.hit("1/minute", "u") == 1, "the hits so far in the window"
    with pytest.raises(RateLimited) as info:
        limiter.hit("1/minute", "u")
    assert 1 <= info.value.retry_after <= 60
    assert limiter.healthy()
    assert not any(t.name.startswith("Timer") for t in threading.enumerate())


def test_bounded_by_evicting_expired_then_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("bastion.auth.ratelimit.time.time", lambda: now[0])
    windows, item = MemoryWindows(max_keys=3), parse("10/second")
    for key in ("a", "b", "c"):
        windows.hit(item, key)
    windows.hit(item, "d")  # all live: the oldest ("a") goes
    assert set(windows._windows) == {item.key_for(k) for k in ("b", "c", "d")}
    now[0] = 5.0
    windows.hit(item, "e")  # everything expired: all dropped, then "e"
    assert set(windows._windows) == {item.key_for("e")}
