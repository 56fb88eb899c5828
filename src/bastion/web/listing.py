"""Whole lists for the pages, read a page at a time through the services' keyset cursors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
PAGE = 200
MAX_ROWS = 2_000  # a page that lists more than this should page itself


def gather(fetch: Callable[[int, str | None], tuple[list[T], str | None]], cap: int = MAX_ROWS) -> list[T]:
    """Every row ``fetch(limit, cursor)`` yields, oldest first, up to ``cap``."""
    rows: list[T] = []
    cursor: str | None = None
    while len(rows) < cap:
        page, cursor = fetch(min(PAGE, cap - len(rows)), cursor)
        rows.extend(page)
        if cursor is None:
            break
    return rows
