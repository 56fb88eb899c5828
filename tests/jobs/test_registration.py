"""A completed job's model version is written in the transaction that completes the job: a client
that sees ``completed`` finds the version, and a registration that fails or a worker that dies
before the commit leaves no version behind (the retried job registers once)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bastion.audit.verify import verify_chain
from bastion.context import Context
from bastion.errors import Conflict, NotFound
from bastion.jobs.runner import artifact_id_for
from bastion.store.tables import AuditEvent, JobEvent, ModelRecord, ModelVersionRecord
from tests.conftest import Caller
from tests.jobs.support import Harness, at_completion, principal, wait_for

NAME = "alzheimer_classifier-synthetic_test_data"  # the default model name of the harness's jobs


def versions_of(ctx: Context, job_id: str) -> list[ModelVersionRecord]:
    """Every version whose lineage names the job (there is one registry: scan it)."""
    with ctx.db.session() as s:
        rows = s.scalars(select(ModelVersionRecord).order_by(ModelVersionRecord.version)).all()
    return [r for r in rows if r.lineage_json.get("job_id") == job_id]


def state_events(ctx: Context, job_id: str) -> list[str]:
    with ctx.db.session() as s:
        rows = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == "state").order_by(JobEvent.id)
        ).all()
    return [str(r.data["state"]) for r in rows]


def registrations(ctx: Context) -> int:
    with ctx.db.session() as s:
        return int(s.scalar(select(func.count()).where(AuditEvent.action == "model.register")) or 0)


class AuditFails:
    """Stands in for the registry's audit log: the version's rows are flushed by the time it is called."""

    def __init__(self, error: Exception, times: int = 1_000) -> None:
        self.error, self.left, self.real = error, times, None

    def append(self, record: Any, session: Any = None) -> int:
        if self.left > 0:
            self.left -= 1
            raise self.error
        assert self.real is not None
        return int(self.real.append(record, session))


def test_the_version_is_listed_the_moment_the_job_reads_completed(
    harness: Harness, ctx: Context, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    who = principal(alice)

    def listed(job_id: str) -> tuple[str, list[tuple[str, int | None]], list[Any]]:
        state = harness.job(job_id).state
        models, _ = ctx.services.models.list_for(who)
        history = ctx.services.models.get(who, NAME)["history"] if models else []
        return state, [(m["name"], m["latest_version"]) for m in models], history

    seen = at_completion(monkeypatch, listed)
    harness.service(harness.config("packaged"))
    harness.worker(harness.config("packaged"))
    job = harness.submit(who)
    done = harness.wait_state(job.id, "completed", "failed")
    assert done.state == "completed", done.error_message
    [(state, models, history)] = wait_for(lambda: seen, 30, what="the check at completion")
    assert state == "completed"
    assert models == [(NAME, 1)]
    assert [v["lineage"]["job_id"] for v in history] == [job.id]
    assert history[0]["metrics"] == {"accuracy": 0.5}
    # the trail is what it was: one completed event, one audited registration, an intact chain
    assert state_events(ctx, job.id) == ["pending", "running", "completed"]
    assert registrations(ctx) == 1 and verify_chain(ctx.db).ok
    [row] = versions_of(ctx, job.id)
    assert (row.artifact_id, row.artifact_version) == (done.model_artifact_id, done.model_version)


def test_a_registration_refused_in_the_transaction_fails_the_job_and_keeps_nothing(
    harness: Harness, ctx: Context, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ctx.services.models
    monkeypatch.setattr(registry, "audit", AuditFails(Conflict("the audit log refused it")))
    harness.service(harness.config("packaged"))
    harness.worker(harness.config("packaged"))
    job = harness.submit(principal(alice))
    done = harness.wait_state(job.id, "completed", "failed")
    assert done.state == "failed"
    assert done.error_message is not None and "could not be registered" in done.error_message
    assert "the audit log refused it" in done.error_message
    # the model row, the version row and the completion went back together; the package is discarded
    assert versions_of(ctx, job.id) == []
    with ctx.db.session() as s:
        assert s.scalar(select(ModelRecord).where(ModelRecord.name == NAME)) is None
    assert done.model_artifact_id is None and done.completed_at is not None
    assert state_events(ctx, job.id) == ["pending", "running", "failed"]
    with pytest.raises(NotFound):
        ctx.vault.versions(artifact_id_for(job.id, 1))
    assert registrations(ctx) == 0


def test_a_worker_failing_before_the_commit_leaves_no_version_and_the_retry_registers_once(
    harness: Harness, ctx: Context, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away in the middle of the completing transaction (as if the worker died
    there): nothing of it stays, the job stays running until recovery re-queues it, and the second
    attempt completes with exactly one version (number 1: the first try used up nothing)."""
    registry = ctx.services.models
    failing = AuditFails(OperationalError("INSERT", {}, Exception("server closed the connection")), times=1)
    failing.real = registry.audit
    monkeypatch.setattr(registry, "audit", failing)
    harness.service(harness.config("packaged"))
    harness.worker(harness.config("packaged"))
    job = harness.submit(principal(alice))
    done = harness.wait_state(job.id, "completed", "failed")
    assert done.state == "completed", done.error_message
    assert failing.left == 0 and done.attempt == 2
    [row] = versions_of(ctx, job.id)
    assert (row.version, row.artifact_id) == (1, artifact_id_for(job.id, 2))
    assert (row.artifact_id, row.artifact_version) == (done.model_artifact_id, done.model_version)
    assert state_events(ctx, job.id) == ["pending", "running", "pending", "running", "completed"]
    assert registrations(ctx) == 1 and verify_chain(ctx.db).ok
