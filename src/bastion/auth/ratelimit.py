"""Rate limits on the ``limits`` library: in memory by default, Redis when several replicas share."""

from __future__ import annotations

import math
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


class RateLimiter:
    def __init__(self, storage_uri: str = "memory://") -> None:
        self.storage_uri = storage_uri
        self._limiter = FixedWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, spec: str, *identifiers: str) -> None:
        item = _parse(spec)
        if not self._limiter.hit(item, *identifiers):
            reset, _remaining = self._limiter.get_window_stats(item, *identifiers)
            raise RateLimited(
                f"rate limit of {spec} exceeded", retry_after=max(1, math.ceil(reset - time.time()))
            )

    def healthy(self) -> bool:
        try:
            return bool(self._limiter.storage.check())
        except Exception:
            return False
