"""Keyset pagination (no OFFSET) behind the API's list convention (see :mod:`bastion.api.pagination`).

The cursor holds the sort key of the last row sent, so a page is one indexed range scan and rows
inserted meanwhile neither repeat nor vanish. Every sort key ends with a unique column, so the order
is total and paging stable. The cursor is base64url JSON: opaque to clients, checked on the way in (a
bad one is 422 ``invalid_cursor``, never a 500).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from bastion.errors import Invalid


def _encode_value(value: Any) -> Any:
    return {"t": value.isoformat()} if isinstance(value, datetime) else value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("t"), str):
        return datetime.fromisoformat(value["t"])
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    raise ValueError("bad cursor value")


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_encode_value(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != width:
            raise ValueError("wrong width")
        return [_decode_value(v) for v in values]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not one this server issued", code="invalid_cursor") from None


def _fits(column: InstrumentedAttribute[Any], value: Any) -> bool:
    """A decoded value the column can be compared with (a wrong type or a huge int would crash the driver)."""
    expected = column.type.python_type
    if expected is int:
        return isinstance(value, int) and -(2**63) <= value < 2**63
    if expected is datetime:
        return isinstance(value, datetime) and value.tzinfo is None
    if expected is str:
        return isinstance(value, str) and len(value) <= 512 and "\x00" not in value
    return isinstance(value, expected)


def _legacy(column: InstrumentedAttribute[Any], value: Any) -> Any:
    """A time as a plain ISO string: how the fine-tuning and sign-up lists wrote cursors before they
    used this class. Read as the time it names, so a cursor issued then still pages on."""
    if isinstance(value, str) and column.type.python_type is datetime:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value  # refused by _fits
    return value


class Keyset:
    """A total sort order over columns (the last one unique) and paging along it."""

    def __init__(self, *columns: InstrumentedAttribute[Any], descending: bool = True) -> None:
        self.columns = columns
        self.descending = descending

    def decode(self, cursor: str) -> list[Any]:
        """The sort key a cursor holds, checked against the columns (422 ``invalid_cursor`` if not)."""
        values = [
            _legacy(c, v) for c, v in zip(self.columns, decode_cursor(cursor, len(self.columns)), strict=True)
        ]
        for column, value in zip(self.columns, values, strict=True):
            if not _fits(column, value):
                raise Invalid("cursor is not one this server issued", code="invalid_cursor")
        return values

    def apply(self, stmt: Select[Any], cursor: str | None, limit: int) -> Select[Any]:
        """Order, start after the cursor, and fetch one row more than the page (to know if more exist)."""
        if cursor:
            values = self.decode(cursor)
            key = tuple_(*self.columns)
            stmt = stmt.where(key < tuple_(*values) if self.descending else key > tuple_(*values))
        order = [c.desc() if self.descending else c.asc() for c in self.columns]
        return stmt.order_by(*order).limit(limit + 1)

    def first(self, stmt: Select[Any]) -> Select[Any]:
        """The first page, prepared once: the page size (plus one) is the bound ``page_limit``."""
        order = [c.desc() if self.descending else c.asc() for c in self.columns]
        return stmt.order_by(*order).limit(bindparam("page_limit"))

    def next_cursor(self, rows: Sequence[Any], limit: int) -> str | None:
        if len(rows) <= limit:
            return None
        last = rows[limit - 1]
        return encode_cursor([getattr(last, c.key) for c in self.columns])
