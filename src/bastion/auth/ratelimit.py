"""Rate limits on the ``limits`` library: in memory by default, Redis when several replicas share.

In memory, the fixed windows are counted here (:class:`MemoryWindows`) rather than by ``limits``'
``MemoryStorage``, which starts a ``threading.Timer`` to expire keys whenever the previous one has
fired: under load that was up to 100 thread starts a second, 5-10% of a busy server's samples
(py-spy, bench/api_overhead.py and bench/fl_round.py) and a source of p99 spikes. Same semantics:
a window opens at its first hit, lasts the item's period, and a hit counts when the window's count
stays within the limit.
"""

from __future__ import annotations

import math
import threading
import time
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from bastion.errors import ConfigError, RateLimited


@lru_cache(maxsize=32)
def _parse(spec: str) -> RateLimitItem:
    try:
        return parse(spec)
    except ValueError as exc:
        raise ConfigError(f"bad rate limit {spec!r}: use forms like '600/minute'") from exc


class MemoryWindows:
    """Fixed-window counters in one dict, expired lazily (no timer thread); bounded in size."""

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # key -> [window end (epoch s), count]

    def hit(self, item: RateLimitItem, *identifiers: str) -> tuple[bool, float, int]:
        """Count one hit; returns (allowed, window end, hits in the window so far)."""
        key, now = item.key_for(*identifiers), time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                if window is None and len(self._windows) >= self.max_keys:
                    self._evict(now)
                window = [now + item.get_expiry(), 0.0]
                self._windows[key] = window
            window[1] += 1
            return window[1] <= item.amount, window[0], int(window[1])

    def _evict(self, now: float) -> None:
        expired = [k for k, w in self._windows.items() if w[0] <= now]
        for k in expired:
            del self._windows[k]
        while len(self._windows) >= self.max_keys:  # all live: drop the oldest windows first
            del self._windows[next(iter(self._windows))]


class RateLimiter:
    def __init__(self, storage_uri: str = "memory://") -> None:
        self.storage_uri = storage_uri
        self._memory = MemoryWindows() if storage_uri == "memory://" else None
        self._limiter = None if self._memory else FixedWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, spec: str, *identifiers: str) -> int:
        """Count one hit; RateLimited past the limit, else the hits in this window so far."""
        item = _parse(spec)
        if self._memory is not None:
            allowed, reset, count = self._memory.hit(item, *identifiers)
        else:
            assert self._limiter is not None
            allowed = self._limiter.hit(item, *identifiers)
            reset, remaining = self._limiter.get_window_stats(item, *identifiers)
            count = item.amount - int(remaining)
        if not allowed:
            raise RateLimited(
                f"rate limit of {spec} exceeded", retry_after=max(1, math.ceil(reset - time.time()))
            )
        return count

    def healthy(self) -> bool:
        if self._limiter is None:
            return True
        try:
            return bool(self._limiter.storage.check())
        except Exception:
            return False
