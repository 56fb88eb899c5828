"""The database as the queue: claims, guarded state changes, heartbeats and recovery.

Claiming: on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` hands each pending row to exactly one
worker without waiting on the others; on SQLite (one writer at a time) a guarded
``UPDATE … WHERE id = :id AND state = 'pending'`` does the same. Every change a worker makes to a
running job is fenced by ``(state = 'running', worker_id, attempt)``: a worker that lost its job (it
was cancelled, or re-queued after the worker looked dead) can never overwrite what came after.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bastion.jobs import states
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.tables import JobEvent, JobLogLine, JobWorker, TrainingJob


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds: everything the job process needs, and the fence for its writes."""

    job_id: str
    attempt: int
    owner_id: str
    model_type: str
    dataset: dict[str, Any]
    params: dict[str, Any]
    seed: int
    max_runtime_seconds: float
    resources: dict[str, Any] | None = None
    search: dict[str, Any] | None = None


def add_event(session: Session, job_id: str, kind: str, data: dict[str, Any]) -> None:
    session.add(JobEvent(job_id=job_id, ts=utcnow(), kind=kind, data=data))


def add_log(session: Session, job_id: str, line: str, stream: str = "system") -> None:
    session.add(JobLogLine(job_id=job_id, ts=utcnow(), stream=stream, line=line))
    session.execute(
        update(TrainingJob).where(TrainingJob.id == job_id).values(log_lines=TrainingJob.log_lines + 1)
    )


def state_event(job: TrainingJob | None = None, **data: Any) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if job is not None:
        base = {"state": job.state, "progress": job.progress, "attempt": job.attempt}
    return base | data


def _fence(job_id: str, worker_id: str, attempt: int) -> Any:
    return (
        (TrainingJob.id == job_id)
        & (TrainingJob.state == states.RUNNING.value)
        & (TrainingJob.worker_id == worker_id)
        & (TrainingJob.attempt == attempt)
    )


def _claim_values(worker_id: str, now: datetime) -> dict[str, Any]:
    return {
        "state": states.RUNNING.value,
        "worker_id": worker_id,
        "attempt": TrainingJob.attempt + 1,
        "started_at": now,
        "heartbeat_at": now,
        "updated_at": now,
        "progress": 0.0,
        "stage": None,
        "history": [],
    }


def claim(db: Database, worker_id: str, limit: int) -> list[Claim]:
    """Move up to ``limit`` of the oldest pending jobs to running, held by ``worker_id``."""
    if limit < 1:
        return []
    now = utcnow()
    oldest = (
        select(TrainingJob.id)
        .where(TrainingJob.state == states.PENDING.value)
        .order_by(TrainingJob.created_at, TrainingJob.id)
        .limit(limit)
    )
    with db.session() as s:
        if db.dialect == "postgresql":
            ids = list(s.scalars(oldest.with_for_update(skip_locked=True)))
            if ids:
                s.execute(
                    update(TrainingJob).where(TrainingJob.id.in_(ids)).values(**_claim_values(worker_id, now))
                )
        else:
            ids = []
            for job_id in list(s.scalars(oldest)):
                moved = s.execute(
                    update(TrainingJob)
                    .where(TrainingJob.id == job_id, TrainingJob.state == states.PENDING.value)
                    .values(**_claim_values(worker_id, now))
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]
                    ids.append(job_id)
        if not ids:
            return []
        rows = s.scalars(select(TrainingJob).where(TrainingJob.id.in_(ids))).all()
        claims = []
        for job in sorted(rows, key=lambda j: (j.created_at, j.id)):
            add_event(s, job.id, "state", state_event(job, worker_id=worker_id))
            add_log(s, job.id, f"attempt {job.attempt}: started by worker {worker_id}")
            claims.append(
                Claim(
                    job.id,
                    job.attempt,
                    job.owner_id,
                    job.model_type,
                    job.dataset_ref,
                    job.params,
                    job.seed,
                    job.max_runtime_seconds,
                    job.resources,
                    job.search_spec,
                )
            )
        return claims


def complete(
    db: Database,
    job_id: str,
    worker_id: str,
    attempt: int,
    results: dict[str, Any],
    history: list[dict[str, Any]],
    model: dict[str, Any] | None,
    *,
    then: Callable[[Session], None] | None = None,
) -> bool:
    """Move the job to completed; ``then`` (registering its model) runs in the same transaction after
    the fenced UPDATE won, so whoever can read ``completed`` can read what ``then`` wrote, and an error
    in ``then`` (or a crash before the commit) leaves the job running, for the worker or recovery."""
    now = utcnow()
    with db.session() as s:
        moved = s.execute(
            update(TrainingJob)
            .where(_fence(job_id, worker_id, attempt))
            .values(
                state=states.COMPLETED.value,
                progress=1.0,
                stage="done",
                results=results,
                history=history,
                completed_at=now,
                updated_at=now,
                heartbeat_at=None,
                model_artifact_id=(model or {}).get("artifact_id"),
                model_version=(model or {}).get("version"),
                model_format=(model or {}).get("format"),
            )
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        if then is not None:
            then(s)
        add_event(s, job_id, "state", {"state": "completed", "progress": 1.0, "attempt": attempt})
        add_log(s, job_id, "job completed")
        return True


def fail(db: Database, job_id: str, worker_id: str, attempt: int, reason: str) -> bool:
    now = utcnow()
    with db.session() as s:
        moved = s.execute(
            update(TrainingJob)
            .where(_fence(job_id, worker_id, attempt))
            .values(
                state=states.FAILED.value,
                error_message=reason,
                completed_at=now,
                updated_at=now,
                heartbeat_at=None,
            )
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        add_event(s, job_id, "state", {"state": "failed", "error_message": reason, "attempt": attempt})
        add_log(s, job_id, f"job failed: {reason}")
        return True


def requeue(
    db: Database, job_id: str, worker_id: str, attempt: int, reason: str, *, count_attempt: bool
) -> bool:
    """Put a running job back in the queue; a graceful hand-back does not use up an attempt."""
    now = utcnow()
    values: dict[str, Any] = {
        "state": states.PENDING.value,
        "worker_id": None,
        "heartbeat_at": None,
        "started_at": None,
        "progress": 0.0,
        "stage": None,
        "history": [],
        "updated_at": now,
    }
    if not count_attempt:
        values["attempt"] = TrainingJob.attempt - 1
    with db.session() as s:
        moved = s.execute(update(TrainingJob).where(_fence(job_id, worker_id, attempt)).values(**values))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        add_event(
            s, job_id, "state", {"state": "pending", "progress": 0.0, "attempt": attempt, "reason": reason}
        )
        add_log(s, job_id, f"re-queued: {reason}")
        return True


# -- workers ------------------------------------------------------------------------------------


def host_key() -> str:
    """This host and PID namespace: pids are only comparable between workers that share both."""
    import socket

    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{socket.gethostname()}|{ns}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register_worker(db: Database, worker_id: str, max_concurrent: int) -> None:
    import socket

    now = utcnow()
    with db.session() as s:
        s.merge(
            JobWorker(
                id=worker_id,
                hostname=socket.gethostname()[:255],
                host_key=host_key()[:255],
                pid=os.getpid(),
                max_concurrent=max_concurrent,
                started_at=now,
                heartbeat_at=now,
                stopped_at=None,
            )
        )


def stop_worker(db: Database, worker_id: str) -> None:
    with db.session() as s:
        s.execute(update(JobWorker).where(JobWorker.id == worker_id).values(stopped_at=utcnow()))


def heartbeat(db: Database, worker_id: str, job_ids: Iterable[str]) -> None:
    now = utcnow()
    ids = list(job_ids)
    with db.session() as s:
        s.execute(
            update(JobWorker).where(JobWorker.id == worker_id).values(heartbeat_at=now, stopped_at=None)
        )
        if ids:
            s.execute(
                update(TrainingJob)
                .where(
                    TrainingJob.id.in_(ids),
                    TrainingJob.worker_id == worker_id,
                    TrainingJob.state == states.RUNNING.value,
                )
                .values(heartbeat_at=now)
            )


def lost_jobs(db: Database, worker_id: str, held: dict[str, int]) -> dict[str, str]:
    """Jobs this worker runs that the store no longer gives it: job id -> their state now."""
    if not held:
        return {}
    with db.session() as s:
        rows = s.execute(
            select(TrainingJob.id, TrainingJob.state, TrainingJob.worker_id, TrainingJob.attempt).where(
                TrainingJob.id.in_(list(held))
            )
        ).all()
    seen = {r.id: r for r in rows}
    out: dict[str, str] = {}
    for job_id, attempt in held.items():
        row = seen.get(job_id)
        if row is None:
            out[job_id] = "deleted"
        elif row.state != states.RUNNING.value or row.worker_id != worker_id or row.attempt != attempt:
            out[job_id] = row.state
    return out


def recover(
    db: Database,
    *,
    me: str,
    held: Iterable[str],
    stale_after: float,
    max_attempts: int,
    is_alive: Callable[[int], bool] = pid_alive,
) -> list[tuple[str, str]]:
    """Re-queue (or fail, once attempts are spent) running jobs whose worker is gone.

    A worker is gone when its row is missing or stopped, when it shares our host and PID namespace
    and its pid no longer exists (found at once after a restart), or when the job's heartbeat is
    older than ``stale_after`` seconds. Our own jobs count as gone only if we are not running them.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after)
    mine, local = set(held), host_key()
    with db.session() as s:
        rows = s.execute(
            select(
                TrainingJob.id,
                TrainingJob.worker_id,
                TrainingJob.attempt,
                TrainingJob.heartbeat_at,
                TrainingJob.started_at,
                JobWorker.host_key,
                JobWorker.pid,
                JobWorker.stopped_at,
            )
            .outerjoin(JobWorker, JobWorker.id == TrainingJob.worker_id)
            .where(TrainingJob.state == states.RUNNING.value)
        ).all()
    orphans: list[tuple[str, str, int, str]] = []
    for r in rows:
        beat = r.heartbeat_at or r.started_at or now
        if r.worker_id == me:
            why = None if r.id in mine else "this worker no longer runs it"
        elif r.host_key is None:
            why = "its worker is unknown"
        elif r.stopped_at is not None:
            why = "its worker stopped"
        elif r.host_key == local and r.pid is not None and not is_alive(r.pid):
            why = "its worker process died"
        elif beat < cutoff:
            why = f"no heartbeat for over {stale_after:g} s"
        else:
            why = None
        if why is not None:
            orphans.append((r.id, r.worker_id or "", r.attempt, why))
    done: list[tuple[str, str]] = []
    for job_id, worker_id, attempt, why in orphans:
        if attempt < max_attempts:
            reason = f"interrupted ({why}); retrying, attempt {attempt + 1} of {max_attempts}"
            if requeue(db, job_id, worker_id, attempt, reason, count_attempt=True):
                done.append((job_id, "pending"))
        else:
            reason = f"interrupted: {why} while the job ran (attempt {attempt} of {max_attempts})"
            if fail(db, job_id, worker_id, attempt, reason):
                done.append((job_id, "failed"))
    return done


def live_workers(db: Database, stale_after: float) -> list[JobWorker]:
    cutoff = utcnow() - timedelta(seconds=stale_after)
    with db.session() as s:
        return list(
            s.scalars(
                select(JobWorker)
                .where(JobWorker.stopped_at.is_(None), JobWorker.heartbeat_at >= cutoff)
                .order_by(JobWorker.started_at)
            )
        )


def counts_by_state(db: Database) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(TrainingJob.state, func.count()).group_by(TrainingJob.state)).all()
    out = dict.fromkeys(states.ALL_STATES, 0)
    out.update({str(state): int(n) for state, n in rows})
    return out
