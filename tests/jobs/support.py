"""A harness for job tests: services and real workers whose job processes run fake targets."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.jobs.config import JobConfig
from bastion.jobs.hooks import make_worker
from bastion.jobs.service import JobService, SubmitRequest
from bastion.jobs.worker import Worker
from bastion.store.tables import TrainingJob

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
QUICK_PARAMS = {"estimator": "logistic_regression", "importance_repeats": 0, "max_iter": 200}


def principal(caller: Any) -> Principal:
    return Principal(caller.user_id, caller.username, caller.role, "api_key")


def wait_for(
    predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def at_completion(monkeypatch: Any, check: Callable[[str], T]) -> list[T]:
    """Run ``check(job_id)`` the moment a worker's ``queue.complete`` has committed ``completed`` (and
    before the worker does anything after it): what a client polling the status sees first. The list
    fills with what each check returned."""
    from bastion.jobs import queue

    seen: list[T] = []
    original = queue.complete

    def complete(db: Any, job_id: str, *args: Any, **kw: Any) -> bool:
        done = original(db, job_id, *args, **kw)
        if done:
            seen.append(check(job_id))
        return done

    monkeypatch.setattr(queue, "complete", complete)
    return seen


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes: it runs nothing (its parent may not have reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


class Harness:
    def __init__(self, ctx: Context, tmp_path: Path) -> None:
        self.ctx = ctx
        self.dir = tmp_path / "job-markers"
        self.dir.mkdir()
        self.workers: list[Worker] = []
        # Builds each worker's executor (the Ray tests connect to their cluster); None = local.
        self.executor_factory: Callable[[], Any] | None = None

    def config(self, target: str = "quick", **overrides: Any) -> JobConfig:
        values: dict[str, Any] = {
            "target": target if ":" in target else f"tests.jobs.fake_targets:{target}",
            "child_env": {"PYTHONPATH": str(REPO), "BASTION_TEST_JOB_DIR": str(self.dir)},
            "poll_seconds": 0.05,
            "heartbeat_seconds": 0.5,
            "max_active_per_user": 50,
        }
        values.update(overrides)
        return JobConfig(**values)

    def service(self, config: JobConfig | None = None) -> JobService:
        svc = JobService(self.ctx, config or self.config())
        self.ctx.services.jobs = svc
        return svc

    def worker(self, config: JobConfig | None = None, *, embedded: bool = True, start: bool = True) -> Worker:
        executor = self.executor_factory() if self.executor_factory is not None else None
        worker = make_worker(self.ctx, config or self.config(), executor=executor)
        if embedded:
            old = self.ctx.services.worker
            if isinstance(old, Worker) and old is not worker:
                old.close()
            self.ctx.services.worker = worker
        self.workers.append(worker)
        if start:
            worker.start()
        return worker

    def submit(self, who: Principal, svc: JobService | None = None, **kw: Any) -> TrainingJob:
        svc = svc or self.ctx.services.jobs
        request = SubmitRequest(
            model_type=kw.pop("model_type", "alzheimer_classifier"),
            dataset_source=kw.pop("dataset_source", "synthetic_test_data"),
            params=kw.pop("params", {}),
            **kw,
        )
        return svc.submit(who, request)

    def job(self, job_id: str) -> TrainingJob:
        return self.ctx.services.jobs.get_any(job_id)

    def wait_state(self, job_id: str, *states: str, timeout: float = 60.0) -> TrainingJob:
        return wait_for(
            lambda: j if (j := self.job(job_id)).state in states else None,
            timeout,
            what=f"{job_id} in {states}",
        )

    def marker(self, job_id: str, attempt: int, what: str) -> Path:
        return self.dir / f"{job_id}.{attempt}.{what}"

    def started_pid(self, job_id: str, attempt: int = 1, timeout: float = 60.0) -> int:
        path = self.marker(job_id, attempt, "started")
        wait_for(path.exists, timeout, what=f"{job_id} to start")
        return int(json.loads(path.read_text())["pid"])

    def release(self, job_id: str) -> None:
        (self.dir / f"{job_id}.release").write_text("go")

    def intervals(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.dir.glob("*.interval")):
            job_id, attempt, _pid, _ = path.name.split(".")
            out.append({"job_id": job_id, "attempt": int(attempt), **json.loads(path.read_text())})
        return out

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (ends sort before starts at a tie)."""
    points = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


ApiFactory = Callable[..., Any]


def api_factory(
    ctx: Context, tmp_path: Path, prepare: Callable[[Harness], None] | None = None
) -> Iterator[ApiFactory]:
    """Body of an ``api`` fixture: ``api(target, **config)`` gives a started TestClient whose embedded
    worker runs ``target`` in real job processes; ``client.harness`` is the Harness behind it
    (``prepare`` sets it up first, e.g. for the Ray executor)."""
    from fastapi.testclient import TestClient

    from bastion.api.app import create_app

    harness = Harness(ctx, tmp_path)
    if prepare is not None:
        prepare(harness)
    clients: list[TestClient] = []

    def make(target: str = "quick", **config: Any) -> TestClient:
        cfg = harness.config(target, **config)
        harness.service(cfg)
        harness.worker(cfg, start=False)  # the app's lifespan starts it
        client = TestClient(create_app(context=ctx), raise_server_exceptions=False)
        client.__enter__()
        client.harness = harness  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    harness.close()


def spawn_worker(settings: Any, **env: str) -> Any:
    """A real ``bastion worker`` process on the test's store and vault (its own session, so a test can
    SIGKILL it like a crashed machine)."""
    import subprocess
    import sys

    from tests.conftest import MASTER

    full = dict(os.environ) | {
        "BASTION_DATA_DIR": str(settings.data_dir),
        "BASTION_DATABASE_URL": str(settings.database_url),
        "BASTION_MASTER_KEY": MASTER,
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "worker"],
        env=full | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
