"""JSON columns: Python values in and out, the same text on disk as the hand-written json.dumps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text, update

from bastion.context import Context
from bastion.store.tables import DatasetRecord, JobEvent, TrainingJob

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


def test_job_columns_keep_the_default_str_text_and_core_updates_encode(ctx: Context) -> None:
    """results/history were always written with ``default=str``: a datetime stays its str() text.
    A Core ``update().values()`` (how the queue completes a job) goes through the type as well."""
    owner = ctx.accounts.create_user("json-job", "user")
    when = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    job = TrainingJob(
        owner_id=owner.id,
        model_type="alzheimer_classifier",
        dataset_source="synthetic_test_data",
        resource_profile="cpu-small",
        max_runtime_seconds=60.0,
        params={"epochs": 2},
        resources={"cpus": 1.0, "gpus": 0.0},
    )
    with ctx.db.session() as s:
        s.add(job)
        s.flush()
        job_id = job.id
        s.add(JobEvent(job_id=job_id, ts=job.created_at, kind="metrics", data={"at": when}))
    results, history = {"accuracy": 0.5, "finished": when}, [{"epoch": 1, "at": when}]
    with ctx.db.session() as s:
        s.execute(
            update(TrainingJob).where(TrainingJob.id == job_id).values(results=results, history=history)
        )
    with ctx.db.session() as s:
        raw = s.execute(
            text("SELECT params, results, history, resources, dataset_ref FROM training_jobs WHERE id = :i"),
            {"i": job_id},
        ).one()
        event = s.execute(text("SELECT data FROM job_events WHERE job_id = :i"), {"i": job_id}).scalar_one()
    assert tuple(raw) == (
        json.dumps({"epochs": 2}),
        json.dumps(results, default=str),
        json.dumps(history, default=str),
        json.dumps({"cpus": 1.0, "gpus": 0.0}),
        "{}",
    )
    assert event == json.dumps({"at": when}, default=str)
    with ctx.db.session() as s:
        row = s.get(TrainingJob, job_id)
        assert row is not None
        assert row.results == {"accuracy": 0.5, "finished": str(when)}
        assert row.history == [{"epoch": 1, "at": str(when)}] and row.search_spec is None
