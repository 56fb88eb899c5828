"""Where a short read runs: on the event loop for SQLite, in the threadpool otherwise.

A page of a project list is one indexed query of at most ~100 rows. Sent to the threadpool, it cost
more than it did: under 64 connections, 40 worker threads took turns at the GIL, which SQLite's
driver releases and takes back at every row it steps; a datasets page went from 2.4 ms of server
CPU to 1.0 ms run here instead (``bench/api_overhead.py``, docs/performance.md). SQLite in WAL mode
reads without waiting for writers, so the loop only waits on a lock in rare cases (an exclusive
writer, a WAL recovery); after ``INLINE_BUSY_MS`` the read gives way and runs again in the
threadpool, where waiting blocks nobody. PostgreSQL reads are network round trips: threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from bastion.store.db import Database, InlineBusy

P = ParamSpec("P")
T = TypeVar("T")


async def read(db: Database, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, a read through ``db.reader()``, run where it is cheapest."""
    if db.inline_reads:
        with db.inline():
            try:
                return fn(*args, **kwargs)
            except InlineBusy:
                pass
    return await run_in_threadpool(fn, *args, **kwargs)
