"""Per-federation change counters that long-polling sites wait on, woken at once instead of polling.

Every round or session transition bumps its federation's epoch (from any thread: request workers, the
deadline ticker). A long poll reads the epoch *before* it reads the state it answers with, then waits
for the epoch to move: :meth:`Epochs.wait` returns as soon as :meth:`Epochs.bump` runs, and at once if
the epoch already moved between the read and the wait, so no transition can be missed. Waiters are
futures on the waiting request's event loop, resolved through ``call_soon_threadsafe``: an idle long
poll costs no wake-ups at all (the previous loop woke every 20 ms to compare counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Epochs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def get(self, key: str) -> int:
        return self._epochs.get(key, 0)

    def bump(self, key: str) -> None:
        """Move ``key``'s epoch on and wake everyone waiting on it (safe from any thread)."""
        with self._lock:
            self._epochs[key] = self._epochs.get(key, 0) + 1
            waiters = self._waiters.pop(key, [])
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, key: str, seen: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``key``'s epoch to differ from ``seen``; True if it did."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._epochs.get(key, 0) != seen:
                return True
            self._waiters.setdefault(key, []).append(entry)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            pass
        finally:
            with self._lock:
                waiting = self._waiters.get(key)
                if waiting is not None and entry in waiting:
                    waiting.remove(entry)
                    if not waiting:
                        del self._waiters[key]
        return self._epochs.get(key, 0) != seen

    def waiting(self, key: str) -> int:
        """How many long polls wait on ``key`` now (for tests and diagnostics)."""
        with self._lock:
            return len(self._waiters.get(key, ()))
