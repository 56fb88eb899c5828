"""The one list convention: ``limit`` + an opaque ``cursor`` in, ``{"data": [...], "next_cursor": ...}`` out.

    KEYSET = Keyset(Table.created_at, Table.id)                 # bastion.store.paging; newest first
    rows = s.scalars(KEYSET.apply(select(Table).where(...), cursor, limit)).all()
    return Page(data=[view(r) for r in rows[:limit]], next_cursor=KEYSET.next_cursor(rows, limit))

Routes take ``limit: LimitQuery = 50, cursor: CursorQuery = None`` and answer ``Page[Item]``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from bastion.contract.common import DB_INT_MAX, Page

MAX_LIMIT = 500
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
CursorQuery = Annotated[
    str | None,
    Query(max_length=512, pattern=r"^[A-Za-z0-9_-]*$", description="next_cursor of the previous page"),
]
# A position in an append-only sequence (log lines, events, audit rows), bounded like the column.
SeqQuery = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="A sequence number from this API")]

__all__ = ["MAX_LIMIT", "CursorQuery", "LimitQuery", "Page", "SeqQuery"]
