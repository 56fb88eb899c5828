"""Workers running real job processes (fake targets): results, cancel in every state, faults, limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastion.errors import Conflict, NotFound, RateLimited
from bastion.jobs import queue
from bastion.store.tables import JobEvent
from tests.conftest import Caller
from tests.jobs.support import Harness, pid_gone, principal, wait_for


def test_job_runs_in_its_own_process_and_reports(harness: Harness, alice: Caller) -> None:
    svc = harness.service()
    harness.worker()
    job = harness.submit(principal(alice))
    done = harness.wait_state(job.id, "completed", "failed")
    assert done.state == "completed", done.error_message
    assert (done.results or {}) == {"accuracy": 0.8, "model_type": "alzheimer_classifier"}
    history = done.history
    assert [h["epoch"] for h in history] == [1, 2, 3], "epochs reported during training become the history"
    assert done.attempt == 1 and done.progress == 1.0 and done.started_at and done.completed_at
    lines = [ln["line"] for ln in svc.logs(done)["lines"]]
    assert "hello from the job" in lines and "evaluated" in lines and "job completed" in lines
    with harness.ctx.db.session() as s:
        kinds = [e.kind for e in s.query(JobEvent).filter_by(job_id=job.id).order_by(JobEvent.id)]
    assert kinds[0] == "state" and kinds[-1] == "state" and kinds.count("metrics") == 3
    assert "progress" in kinds


def test_secrets_never_reach_the_job_environment(harness: Harness, alice: Caller) -> None:
    harness.service(harness.config("env"))
    harness.worker(harness.config("env"))
    job = harness.wait_state(harness.submit(principal(alice)).id, "completed", "failed")
    results = job.results or {}
    assert results["env"] == [] and "secrets" not in results["spec_keys"]


def test_cancel_pending_never_runs(harness: Harness, alice: Caller) -> None:
    svc = harness.service()
    me = principal(alice)
    doomed = harness.submit(me)
    job, already = svc.cancel(me, doomed.id)
    assert job.state == "cancelled" and not already and job.attempt == 0
    harness.worker()
    other = harness.wait_state(harness.submit(me).id, "completed")
    assert other.state == "completed", "the worker ran, and still never touched the cancelled job"
    again = harness.job(doomed.id)
    assert again.state == "cancelled" and again.attempt == 0 and again.started_at is None
    assert not harness.marker(doomed.id, 1, "started").exists()


def test_cancel_running_kills_at_once_then_is_idempotent(harness: Harness, alice: Caller) -> None:
    svc = harness.service(harness.config("block"))
    harness.worker(harness.config("block"))
    me = principal(alice)
    job = harness.submit(me)
    pid = harness.started_pid(job.id)
    cancelled, already = svc.cancel(me, job.id)
    assert cancelled.state == "cancelled" and not already
    wait_for(lambda: pid_gone(pid), 10, what="the job process to be killed")
    assert svc.cancel(me, job.id)[1] is True, "a second cancel succeeds"
    wait_for(lambda: not harness.workers[0].running(), 10, what="the worker to let go of the job")
    assert harness.job(job.id).state == "cancelled", "the killed process does not turn it into failed"
    assert any("killed" in ln["line"] for ln in svc.logs(cancelled)["lines"])


def test_cancel_finished_is_conflict_and_foreign_is_not_found(
    harness: Harness, alice: Caller, bob: Caller
) -> None:
    svc = harness.service()
    harness.worker()
    job = harness.wait_state(harness.submit(principal(alice)).id, "completed")
    with pytest.raises(Conflict) as err:
        svc.cancel(principal(alice), job.id)
    assert err.value.code == "job_finished"
    for call in (svc.get, svc.cancel):
        with pytest.raises(NotFound):
            call(principal(bob), job.id)  # type: ignore[operator]


def test_cancel_through_another_server_reaches_the_worker(harness: Harness, alice: Caller) -> None:
    """The API that cancels may not hold the worker: the worker notices on its own and kills."""
    svc = harness.service(harness.config("block"))
    harness.worker(harness.config("block"), embedded=False)
    harness.ctx.services.worker = None
    job = harness.submit(principal(alice))
    pid = harness.started_pid(job.id)
    assert svc.cancel(principal(alice), job.id)[0].state == "cancelled"
    wait_for(lambda: pid_gone(pid), 10, what="the remote worker to kill the job")


@pytest.mark.parametrize(
    ("target", "reason", "log_line"),
    [
        ("fail", "boom: the data was bad", "about to fail"),
        ("die", "killed by SIGKILL", "dying now"),
        ("silent_exit", "exited with status 3", "fatal: giving up"),
        ("foreign_model", "the job reported a model it did not write", "claiming a model"),
    ],
)
def test_faults_fail_the_job_with_the_reason_and_keep_logs(
    harness: Harness, alice: Caller, target: str, reason: str, log_line: str
) -> None:
    svc = harness.service(harness.config(target))
    harness.worker(harness.config(target))
    job = harness.wait_state(harness.submit(principal(alice)).id, "failed", "completed")
    assert job.state == "failed" and reason in (job.error_message or "")
    lines = [ln["line"] for ln in svc.logs(job)["lines"]]
    assert log_line in lines
    assert not any("Traceback" in ln for ln in lines), "the owner sees the message, never the traceback"
    assert harness.workers[0].alive, "a crashing job never takes the worker down"


def test_out_of_memory_fails_with_the_reason(harness: Harness, alice: Caller) -> None:
    config = harness.config("hog", memory_limit_mb=1024)
    harness.service(config)
    harness.worker(config)
    job = harness.wait_state(harness.submit(principal(alice)).id, "failed", "completed")
    assert job.state == "failed" and "out of memory" in (job.error_message or "")


def test_maximum_runtime(harness: Harness, alice: Caller) -> None:
    harness.service(harness.config("block"))
    harness.worker(harness.config("block"))
    job = harness.submit(principal(alice), max_runtime_seconds=1.0)
    pid = harness.started_pid(job.id)
    done = harness.wait_state(job.id, "failed", "completed")
    assert done.error_message == "exceeded the maximum runtime of 1 s and was stopped"
    wait_for(lambda: pid_gone(pid), 10, what="the timed-out process to die")


def test_graceful_close_hands_jobs_back_without_using_an_attempt(harness: Harness, alice: Caller) -> None:
    harness.service(harness.config("block"))
    first = harness.worker(harness.config("block"))
    job = harness.submit(principal(alice))
    pid = harness.started_pid(job.id)
    first.close()
    assert pid_gone(pid)
    back = harness.job(job.id)
    assert back.state == "pending" and back.attempt == 0 and back.worker_id is None
    harness.release(job.id)
    harness.worker(harness.config("block"))
    done = harness.wait_state(job.id, "completed")
    assert done.attempt == 1


def test_dead_worker_jobs_are_requeued_once_then_failed(harness: Harness, alice: Caller) -> None:
    """A worker that died (its pid is gone) loses its jobs to the next worker at start-up."""
    import subprocess
    import sys

    svc = harness.service(harness.config("block"))
    me = principal(alice)
    jobs = [harness.submit(me), harness.submit(me)]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    queue.register_worker(harness.ctx.db, "ghost", 2)
    from sqlalchemy import update

    from bastion.store.tables import JobWorker, TrainingJob

    with harness.ctx.db.session() as s:
        s.execute(update(JobWorker).where(JobWorker.id == "ghost").values(pid=dead.pid))
    claimed = queue.claim(harness.ctx.db, "ghost", 2)
    assert {c.job_id for c in claimed} == {j.id for j in jobs}
    with harness.ctx.db.session() as s:  # the second job already used its last attempt
        s.execute(update(TrainingJob).where(TrainingJob.id == jobs[1].id).values(attempt=2))
    harness.release(jobs[0].id)
    harness.worker(harness.config("block"))
    retried = harness.wait_state(jobs[0].id, "completed")
    assert retried.attempt == 2
    failed = harness.job(jobs[1].id)
    assert failed.state == "failed" and "interrupted" in (failed.error_message or "")
    assert "died" in (failed.error_message or "")
    assert any("re-queued" in ln["line"] for ln in svc.logs(retried)["lines"])


def test_log_lines_are_capped_newest_kept(harness: Harness, alice: Caller) -> None:
    config = harness.config("chatty", log_line_cap=100)
    svc = harness.service(config)
    harness.worker(config)
    job = harness.wait_state(harness.submit(principal(alice)).id, "completed")
    page = svc.logs(job, limit=5000)
    lines = [ln["line"] for ln in page["lines"]]
    # the newest 100 lines of the run are kept, then the worker's note on how the job ended
    assert len(lines) == 101 and lines[-1] == "job completed"
    assert lines[:100] == [f"line {i}" for i in range(200, 300)]
    assert page["total_lines"] >= 300 and page["dropped_lines"] == page["total_lines"] - 101


def test_per_user_active_job_cap(harness: Harness, alice: Caller, bob: Caller) -> None:
    svc = harness.service(harness.config(max_active_per_user=2))
    harness.submit(principal(alice))
    harness.submit(principal(alice))
    with pytest.raises(RateLimited) as err:
        harness.submit(principal(alice))
    assert err.value.code == "active_job_limit" and "limit is 2" in err.value.message
    harness.submit(principal(bob))
    first = svc.list_for(principal(alice))[0][0]
    svc.cancel(principal(alice), first.id)
    harness.submit(principal(alice))  # room again


def test_two_hundred_submissions_from_four_users(
    harness: Harness, make_caller: Callable[..., Caller]
) -> None:
    """Each submission persisted once, each job run once, concurrency never above the limit."""
    from concurrent.futures import ThreadPoolExecutor

    config = harness.config("record", max_concurrent=2, max_active_per_user=100)
    svc = harness.service(config)
    users = [principal(make_caller("user")) for _ in range(4)]
    workers = [harness.worker(config), harness.worker(config, embedded=False)]

    def submit_many(who: object) -> list[str]:
        return [harness.submit(who).id for _ in range(50)]  # type: ignore[arg-type]

    with ThreadPoolExecutor(4) as pool:
        submitted = [job_id for ids in pool.map(submit_many, users) for job_id in ids]
    assert len(submitted) == len(set(submitted)) == 200
    for who in users:
        assert len(svc.list_for(who, limit=100)[0]) == 50
    wait_for(lambda: queue.counts_by_state(harness.ctx.db)["completed"] == 200, 240, 0.2, "all 200 jobs")
    runs = harness.intervals()
    assert sorted(r["job_id"] for r in runs) == sorted(submitted), "every job ran exactly once"
    assert {r["attempt"] for r in runs} == {1}
    by_worker = {w.id: [(r["start"], r["end"]) for r in runs if r["worker"] == w.id] for w in workers}
    assert sum(len(v) for v in by_worker.values()) == 200
    from tests.jobs.support import max_overlap

    for intervals in by_worker.values():
        assert max_overlap(intervals) <= config.max_concurrent
    assert max_overlap([(r["start"], r["end"]) for r in runs]) <= config.max_concurrent * len(workers)
