"""JSON columns: Python values in and out, the same text on disk as the hand-written json.dumps."""

from __future__ import annotations

import json

from sqlalchemy import text

from bastion.context import Context
from bastion.store.tables import DatasetRecord

SCHEMA = [{"name": "age", "dtype": "int64", "missing": 0}, {"name": "note", "dtype": "object"}]
ACTIONS = [{"column": "name", "action": "dropped", "reason": "direct identifier"}]


def _raw(ctx: Context, dataset_id: str) -> tuple[str, str]:
    with ctx.db.session() as s:
        row = s.execute(
            text("SELECT schema_json, deid_json FROM datasets WHERE id = :i"), {"i": dataset_id}
        ).one()
    return str(row[0]), str(row[1])


def test_values_round_trip_and_the_stored_text_is_unchanged(ctx: Context) -> None:
    owner = ctx.accounts.create_user("json-owner", "user")
    record = DatasetRecord(
        owner_id=owner.id,
        name="t",
        source_format="csv",
        size_bytes=1,
        rows=1,
        columns=2,
        schema_json=SCHEMA,
        deid_json=ACTIONS,
        artifact_id="a",
    )
    with ctx.db.session() as s:
        s.add(record)
        s.flush()
        dataset_id = record.id
    assert _raw(ctx, dataset_id) == (json.dumps(SCHEMA), json.dumps(ACTIONS))
    with ctx.db.session() as s:
        row = s.get(DatasetRecord, dataset_id)
        assert row is not None
        assert row.schema_json == SCHEMA and row.deid_json == ACTIONS


def test_rows_written_as_text_before_read_as_values(ctx: Context) -> None:
    owner = ctx.accounts.create_user("json-old", "user")
    with ctx.db.session() as s:
        s.execute(
            text(
                "INSERT INTO datasets (id, owner_id, name, source_format, size_bytes, rows, columns,"
                " schema_json, deid_json, artifact_id, access_protected, created_at) VALUES ('old', :o, 'x',"
                " 'csv', 1, 1, 1, :s, '[]', 'a', false, CURRENT_TIMESTAMP)"
            ),
            {"o": owner.id, "s": json.dumps(SCHEMA)},
        )
    with ctx.db.session() as s:
        row = s.get(DatasetRecord, "old")
        assert row is not None
        assert row.schema_json == SCHEMA and row.deid_json == []
