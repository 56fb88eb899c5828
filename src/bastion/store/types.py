"""Column types shared by the tables.

``JsonText`` holds JSON in a TEXT column: the code reads and writes Python values, and the stored
text is exactly what the hand-written ``json.dumps`` used to write (the default separators), so
existing rows read unchanged and no migration is needed on either database. SQLAlchemy's own
``JSON`` would be a json column on PostgreSQL (a migration) with no gain for columns that are never
queried inside. JSON whose exact bytes are hashed or signed (the audit chain, envelopes) stays text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator


class JsonText(TypeDecorator[Any]):
    """``encode`` is ``json.dumps``'s ``default`` (e.g. ``str``) for columns that always wrote with one."""

    impl = Text
    cache_ok = True

    def __init__(self, encode: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self.encode = encode

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, default=self.encode)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)
