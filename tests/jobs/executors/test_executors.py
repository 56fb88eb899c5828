"""The job suite's core cases on both executors: a local process per job, and a Ray task per job.

The Ray cases run against the session's real Ray cluster (token auth, 127.0.0.1) on SQLite only,
which keeps them to a few seconds each.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from bastion.store.tables import JobEvent
from tests.conftest import Caller
from tests.jobs.ray_cluster import RayCluster
from tests.jobs.support import Harness, pid_gone, principal, spawn_worker, wait_for


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Executor behaviour does not depend on the database; SQLite keeps the Ray cases quick."""
    return f"sqlite:///{tmp_path / 'bastion.db'}"


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def use_ray(harness: Harness, cluster: RayCluster) -> None:
    from bastion.jobs.executors.ray import RayExecutor

    harness.dir = cluster.markers  # the cluster's workers write markers there
    harness.executor_factory = lambda: RayExecutor.connect(
        cluster.address, insecure=False, vault=harness.ctx.vault
    )


@pytest.fixture
def runs(executor: str, ctx: Context, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(ctx, tmp_path)
    if executor == "ray":
        use_ray(h, request.getfixturevalue("ray_cluster"))
    yield h
    h.close()


def events(harness: Harness, job_id: str) -> list[tuple[str, dict[str, object]]]:
    with harness.ctx.db.session() as s:
        rows = s.query(JobEvent).filter_by(job_id=job_id).order_by(JobEvent.id).all()
        return [(e.kind, e.data) for e in rows]


def test_submit_and_complete(runs: Harness, alice: Caller, executor: str) -> None:
    svc = runs.service()
    runs.worker()
    job = runs.submit(principal(alice))
    done = runs.wait_state(job.id, "completed", "failed")
    assert done.state == "completed", done.error_message
    assert (done.results or {}) == {"accuracy": 0.8, "model_type": "alzheimer_classifier"}
    assert [h["epoch"] for h in done.history] == [1, 2, 3]
    lines = [ln["line"] for ln in svc.logs(done)["lines"]]
    assert "hello from the job" in lines and "evaluated" in lines and "job completed" in lines
    assert [k for k, _ in events(runs, job.id)].count("metrics") == 3


def test_cancel_running(runs: Harness, alice: Caller) -> None:
    svc = runs.service(runs.config("block"))
    runs.worker(runs.config("block"))
    me = principal(alice)
    job = runs.submit(me)
    pid = runs.started_pid(job.id)
    cancelled, already = svc.cancel(me, job.id)
    assert cancelled.state == "cancelled" and not already
    wait_for(lambda: pid_gone(pid), 20, what="the job's process to be killed")
    wait_for(lambda: not runs.workers[0].running(), 20, what="the worker to let go of the job")
    assert runs.job(job.id).state == "cancelled"


def test_killed_job_process_is_retried_or_failed_with_the_reason(
    runs: Harness, alice: Caller, executor: str
) -> None:
    """Local: the job's own process dying fails the job with the signal. Ray: the Ray worker dying is
    a lost machine, retried under the attempt counter (then failed once attempts are spent)."""
    runs.service(runs.config("block", max_attempts=2))
    runs.worker(runs.config("block", max_attempts=2))
    job = runs.submit(principal(alice))
    os.kill(runs.started_pid(job.id, 1), signal.SIGKILL)
    if executor == "local":
        failed = runs.wait_state(job.id, "failed")
        assert "SIGKILL" in (failed.error_message or "")
        return
    second = runs.started_pid(job.id, 2)
    assert runs.job(job.id).attempt == 2
    os.kill(second, signal.SIGKILL)
    failed = runs.wait_state(job.id, "failed")
    assert failed.attempt == 2 and "Ray worker running the job died" in (failed.error_message or "")
    assert "attempt 2 of 2" in (failed.error_message or "")
    reasons = [d.get("reason", "") for k, d in events(runs, job.id) if d.get("state") == "pending"]
    assert any("retrying, attempt 2 of 2" in str(r) for r in reasons)


def test_maximum_runtime(runs: Harness, alice: Caller) -> None:
    runs.service(runs.config("block"))
    runs.worker(runs.config("block"))
    job = runs.submit(principal(alice), max_runtime_seconds=3)
    pid = runs.started_pid(job.id)
    failed = runs.wait_state(job.id, "failed", timeout=60)
    assert "maximum runtime" in (failed.error_message or "")
    wait_for(lambda: pid_gone(pid), 20, what="the timed-out job to be killed")


def test_bastion_worker_killed_with_a_job_in_flight(
    runs: Harness, alice: Caller, executor: str, request: pytest.FixtureRequest
) -> None:
    """A ``bastion worker`` process dies (SIGKILL) while its job runs. Local: the job process sees its
    stdin close and exits. Ray: Ray ends the tasks of their dead owner. Either way the next worker
    re-queues the job under the attempt counter and runs it once to completion."""
    env = {"BASTION_JOB_TARGET": "tests.jobs.fake_targets:block", "BASTION_TEST_JOB_DIR": str(runs.dir)}
    if executor == "ray":
        cluster = request.getfixturevalue("ray_cluster")
        env |= cluster.env() | {"BASTION_EXECUTOR": "ray", "BASTION_RAY_ADDRESS": cluster.address}
    runs.service(runs.config("block"))
    job = runs.submit(principal(alice), resources={"cpus": 1})
    first = spawn_worker(runs.ctx.settings, **env)
    try:
        task_pid = runs.started_pid(job.id, 1, timeout=120)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    wait_for(lambda: pid_gone(task_pid), 60, what="the orphaned attempt to end")
    runs.worker(runs.config("block"))
    runs.started_pid(job.id, 2, timeout=120)
    runs.release(job.id)
    done = runs.wait_state(job.id, "completed")
    assert done.attempt == 2, "attempt 1 died with its worker; only attempt 2 ran to completion"
