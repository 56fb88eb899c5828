"""Every table of the database as JSON lines, and back: the same code for SQLite and PostgreSQL.

The dump reads all tables in one transaction (REPEATABLE READ on PostgreSQL, a read transaction on
SQLite), so it is one consistent snapshot. Values are typed by their column: date-times as ISO
text, bytes as base64; restore converts them back and then moves PostgreSQL's sequences past the
restored ids.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Table, func, insert, select, text
from sqlalchemy.engine import Connection

from bastion.store import Database
from bastion.store.base import Base

BATCH = 1000


def tables() -> list[Table]:
    import bastion.store.tables  # noqa: F401  (registers every table on Base.metadata)

    return list(Base.metadata.sorted_tables)


def _encode(table: Table, row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        value = row._mapping[col.name]
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes | memoryview):
            value = base64.b64encode(bytes(value)).decode()
        out[col.name] = value
    return out


def _decode(table: Table, doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        value = doc.get(col.name)
        if value is not None and isinstance(col.type, DateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(col.type, LargeBinary):
            value = base64.b64decode(value)
        out[col.name] = value
    return out


def snapshot(db: Database) -> Iterator[tuple[str, int, Iterator[bytes]]]:
    """``(table, rows, JSON-lines chunks)`` per table, all read in one transaction."""
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        else:
            conn.exec_driver_sql("BEGIN")
        for table in tables():
            rows = [_encode(table, r) for r in conn.execute(select(table))]
            body = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in rows)
            yield table.name, len(rows), iter((body,))
        conn.rollback()


def revision_heads(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return revision_heads_conn(conn)


def is_empty(db: Database) -> bool:
    """No user and no audit record yet: a fresh database a restore may fill."""
    from bastion.store.tables import AuditEvent, User

    with db.session() as s:
        return not s.scalar(select(func.count()).select_from(User)) and not s.scalar(
            select(func.count()).select_from(AuditEvent)
        )


def load(conn: Connection, table_name: str, lines: Iterator[bytes]) -> int:
    """Insert one table's JSON lines (in batches) into the fresh schema; returns the row count."""
    table = next(t for t in tables() if t.name == table_name)
    buffer = b""
    batch: list[dict[str, Any]] = []
    count = 0
    for chunk in lines:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                batch.append(_decode(table, json.loads(line)))
            if len(batch) >= BATCH:
                conn.execute(insert(table), batch)
                count += len(batch)
                batch = []
    if buffer.strip():
        batch.append(_decode(table, json.loads(buffer)))
    if batch:
        conn.execute(insert(table), batch)
        count += len(batch)
    return count


def fix_sequences(conn: Connection) -> None:
    """PostgreSQL: serial columns continue after the restored ids (SQLite needs nothing)."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables():
        pk = list(table.primary_key.columns)
        if len(pk) == 1 and pk[0].autoincrement is not False and pk[0].type.python_type is int:
            # names come from our own table metadata, never from input
            t, c = table.name, pk[0].name
            sql = f"SELECT setval(pg_get_serial_sequence('{t}', '{c}'), COALESCE(MAX({c}), 1), MAX({c}) IS NOT NULL) FROM {t}"  # noqa: S608
            conn.execute(text(sql))


def revision_heads_conn(conn: Connection) -> list[str]:
    return sorted(str(r[0]) for r in conn.execute(text("SELECT version_num FROM alembic_version")))
