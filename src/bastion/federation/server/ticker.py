"""A daemon thread that calls a function every few seconds until stopped; errors are logged, not fatal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog

_log = structlog.get_logger("bastion.federation")


class Ticker:
    def __init__(self, callback: Callable[[], Any], interval: float, name: str) -> None:
        self._callback = callback
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._callback()
            except Exception:
                _log.exception("ticker_failed", ticker=self._thread.name)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
