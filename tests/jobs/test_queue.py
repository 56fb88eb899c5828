"""The database queue on SQLite and PostgreSQL: claims, fences, heartbeats and recovery."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update

from bastion.jobs import queue
from bastion.store.base import utcnow
from bastion.store.tables import JobWorker, TrainingJob
from tests.conftest import Caller
from tests.jobs.support import Harness, principal


def _pending(harness: Harness, caller: Caller, n: int) -> list[str]:
    harness.service()
    return [harness.submit(principal(caller)).id for _ in range(n)]


def test_claim_takes_the_oldest_and_fences_the_rest(harness: Harness, alice: Caller) -> None:
    db = harness.ctx.db
    ids = _pending(harness, alice, 3)
    first = queue.claim(db, "w1", 2)
    assert [c.job_id for c in first] == ids[:2]
    assert all(c.attempt == 1 for c in first)
    assert [c.job_id for c in queue.claim(db, "w2", 5)] == ids[2:]
    assert queue.claim(db, "w3", 5) == []
    job = harness.job(ids[0])
    assert job.state == "running" and job.worker_id == "w1" and job.started_at is not None
    # only the holder (worker and attempt) may finish it
    assert not queue.complete(db, ids[0], "w2", 1, {}, [], None)
    assert not queue.fail(db, ids[0], "w1", 2, "wrong attempt")
    assert queue.complete(db, ids[0], "w1", 1, {"accuracy": 1.0}, [], None)
    assert not queue.fail(db, ids[0], "w1", 1, "too late"), "a finished job never moves again"
    assert harness.job(ids[0]).state == "completed"


def test_concurrent_claims_never_share_a_job(harness: Harness, alice: Caller) -> None:
    db = harness.ctx.db
    ids = _pending(harness, alice, 40)
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def drain(name: str) -> None:
        barrier.wait()
        mine = got.setdefault(name, [])
        while True:
            claims = queue.claim(db, name, 3)
            if not claims:
                return
            mine.extend(c.job_id for c in claims)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [job_id for jobs in got.values() for job_id in jobs]
    assert sorted(claimed) == sorted(ids), "each job claimed exactly once"
    for name, jobs in got.items():
        assert all(harness.job(j).worker_id == name for j in jobs)


def test_recovery_by_stale_heartbeat(harness: Harness, alice: Caller) -> None:
    db = harness.ctx.db
    (job_id,) = _pending(harness, alice, 1)
    queue.register_worker(db, "far-away", 1)
    with db.session() as s:  # a worker on another host: its pid means nothing here
        s.execute(update(JobWorker).where(JobWorker.id == "far-away").values(host_key="elsewhere|1"))
    queue.claim(db, "far-away", 1)
    assert queue.recover(db, me="me", held=[], stale_after=30, max_attempts=2) == []
    old = utcnow() - timedelta(seconds=60)
    with db.session() as s:
        s.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(heartbeat_at=old))
    assert queue.recover(db, me="me", held=[], stale_after=30, max_attempts=2) == [(job_id, "pending")]
    job = harness.job(job_id)
    assert job.state == "pending" and job.attempt == 1 and job.worker_id is None
    assert queue.claim(db, "me", 1)[0].attempt == 2


def test_recovery_of_a_stopped_or_unknown_worker(harness: Harness, alice: Caller) -> None:
    db = harness.ctx.db
    a, b = _pending(harness, alice, 2)
    queue.register_worker(db, "stopped", 1)
    queue.claim(db, "stopped", 1)
    queue.stop_worker(db, "stopped")
    queue.claim(db, "never-registered", 1)
    found = dict(queue.recover(db, me="me", held=[], stale_after=30, max_attempts=1))
    assert found == {a: "failed", b: "failed"}, "max_attempts=1: interrupted jobs are not retried"
    assert "interrupted" in (harness.job(a).error_message or "")


def test_heartbeat_and_lost_jobs(harness: Harness, alice: Caller) -> None:
    db = harness.ctx.db
    a, _ = _pending(harness, alice, 2)
    queue.register_worker(db, "w", 2)
    claims = {c.job_id: c.attempt for c in queue.claim(db, "w", 2)}
    queue.heartbeat(db, "w", list(claims))
    assert queue.lost_jobs(db, "w", claims) == {}
    svc = harness.ctx.services.jobs
    svc.cancel(principal(alice), a)
    assert queue.lost_jobs(db, "w", claims) == {a: "cancelled"}
    assert [w.id for w in queue.live_workers(db, 30)] == ["w"]
    counts = queue.counts_by_state(db)
    assert counts["running"] == 1 and counts["cancelled"] == 1 and counts["pending"] == 0
