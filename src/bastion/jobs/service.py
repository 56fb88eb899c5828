"""Submitting, reading, listing and cancelling jobs, for the API and the CLI.

Every lookup of a user's job is scoped to its owner: somebody else's job raises NotFound, exactly
as a job that does not exist. Only the ``admin_*`` methods see every job.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, func, select, update

from bastion.audit import AuditRecord
from bastion.contract.jobs import SubmitRequest
from bastion.errors import Conflict, NotFound, RateLimited
from bastion.jobs import queue, rl, states
from bastion.jobs.config import JobConfig
from bastion.jobs.datasets import resolve_dataset
from bastion.jobs.pricing import RESOURCE_PROFILE_NOTE, PriceTable, estimate
from bastion.jobs.resources import resolve as resolve_resources
from bastion.jobs.rl import RL_MODEL_TYPES
from bastion.projects import policy
from bastion.store.base import utcnow
from bastion.store.paging import Keyset
from bastion.store.tables import JobEvent, JobLogLine, TrainingJob, User

if TYPE_CHECKING:
    from bastion.auth.principal import Principal
    from bastion.context import Context

MAX_LIST = 100


def default_model_name(model_type: str, dataset_source: str, dataset_id: str | None) -> str:
    """Versions of one named model share inputs: the model type joined with the dataset it read."""
    return (
        f"{model_type}-{dataset_id if dataset_source == 'user_provided' and dataset_id else dataset_source}"
    )


JOBS = Keyset(TrainingJob.created_at, TrainingJob.id)  # newest first
_LIST = policy.ScopedList(
    select(TrainingJob.__table__), TrainingJob.project_id, JOBS, filters={"state": TrainingJob.state}
)


class _LimitReached(Exception):
    def __init__(self, active: int) -> None:
        self.active = active


def _valid_id(job_id: str) -> bool:
    try:
        return str(uuid.UUID(job_id)) == job_id.lower() and len(job_id) == 36
    except (ValueError, AttributeError, TypeError):
        return False


class JobService:
    def __init__(self, ctx: Context, config: JobConfig) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.audit = ctx.audit
        self.config = config
        self.prices = PriceTable(ctx.db)

    # -- submit -----------------------------------------------------------------------------------

    def submit(self, principal: Principal, req: SubmitRequest, *, ip: str | None = None) -> TrainingJob:
        """Validate everything a job needs, then queue it (or refuse: per-user active-job cap)."""
        from bastion.ml import model_types

        model_types.get_model_type(req.model_type)
        params = model_types.validate_params(req.model_type, req.params).model_dump(mode="json")
        if req.model_type in RL_MODEL_TYPES:
            ref = rl.resolve(self.ctx, principal, req.dataset_source, req.dataset_id, params)
        else:
            ref = resolve_dataset(self.ctx, principal, req.dataset_source, req.dataset_id, req.target)
        if ref.task:
            model_types.check_task(req.model_type, ref.task, ref.source)
        price = self.prices.get(req.resource_profile)
        resources = resolve_resources(req.resources, price.profile)
        search = None
        if req.search is not None:
            from bastion.jobs.search_space import validate_search

            search = validate_search(req.model_type, req.search, ref.task)
        est: float | None = None
        if ref.n_samples and ref.n_features:
            est = estimate(price, req.model_type, ref.n_samples, ref.n_features, params)["estimated_seconds"]
        return self.enqueue(
            principal,
            model_type=req.model_type,
            dataset_source=ref.source,
            dataset_id=ref.dataset_id,
            target=ref.target,
            dataset_ref=ref.to_json(),
            params=params,
            profile=price.profile,
            max_runtime_seconds=req.max_runtime_seconds,
            seed=req.seed,
            estimated_seconds=est,
            model_name=req.model_name,
            resources=resources,
            search=search,
            ip=ip,
            project=req.project,
        )

    def enqueue(
        self,
        principal: Principal,
        *,
        model_type: str,
        dataset_source: str,
        dataset_id: str | None,
        target: str | None,
        dataset_ref: dict[str, Any],
        params: dict[str, Any],
        profile: str,
        max_runtime_seconds: float | None,
        seed: int,
        estimated_seconds: float | None,
        model_name: str | None = None,
        resources: dict[str, Any] | None = None,
        search: dict[str, Any] | None = None,
        ip: str | None = None,
        action: str = "training.submit",
        project: str | None = None,
    ) -> TrainingJob:
        """Queue a validated job (any kind: the trainers and fine-tuning share this), or refuse it when
        the owner already has the maximum of active jobs, or its storage quota is used up (the job
        would store a model)."""
        from bastion.catalog import quota

        quota.check(
            self.db, principal.user_id, getattr(self.ctx.settings, "user_storage_quota_bytes", None), 1
        )
        runtime = min(max_runtime_seconds or self.config.max_runtime_seconds, self.config.max_runtime_seconds)
        cap = self.config.max_active_per_user
        try:
            with self.db.session() as s:
                # A no-op write on the owner's row: a row lock on PostgreSQL, the write lock on SQLite.
                # Concurrent submits of one user then count active jobs one after the other.
                s.execute(update(User).where(User.id == principal.user_id).values(role=User.role))
                project_id = policy.target(s, principal, project)
                active = s.scalar(
                    select(func.count())
                    .select_from(TrainingJob)
                    .where(
                        TrainingJob.owner_id == principal.user_id, TrainingJob.state.in_(list(states.ACTIVE))
                    )
                )
                if int(active or 0) >= cap:
                    raise _LimitReached(int(active or 0))
                now = utcnow()
                job = TrainingJob(
                    owner_id=principal.user_id,
                    project_id=project_id,
                    model_type=model_type,
                    dataset_source=dataset_source,
                    dataset_id=dataset_id,
                    target=target,
                    dataset_ref=dataset_ref,
                    params=params,
                    resource_profile=profile,
                    seed=seed,
                    model_name=model_name or default_model_name(model_type, dataset_source, dataset_id),
                    max_runtime_seconds=float(runtime),
                    estimated_seconds=estimated_seconds,
                    resources=resources if resources is not None else resolve_resources(None, profile),
                    search_spec=search,
                    state=states.PENDING.value,
                    progress=0.0,
                    history=[],
                    attempt=0,
                    log_lines=0,
                    created_at=now,
                    updated_at=now,
                )
                s.add(job)
                s.flush()
                queue.add_event(s, job.id, "state", {"state": "pending", "progress": 0.0, "attempt": 0})
                queue.add_log(s, job.id, f"submitted: {model_type} on {dataset_source} ({profile})")
                self.audit.append(
                    AuditRecord(
                        action,
                        "success",
                        principal.user_id,
                        principal.username,
                        "training_job",
                        job.id,
                        ip,
                        {"model_type": model_type, "dataset_source": dataset_source, "profile": profile},
                    ),
                    s,
                )
        except _LimitReached as limit:
            self.audit.append(
                AuditRecord(
                    action,
                    "denied",
                    principal.user_id,
                    principal.username,
                    "training_job",
                    None,
                    ip,
                    {"reason": "active_job_limit", "active": limit.active, "limit": cap},
                )
            )
            raise RateLimited(
                f"you already have {limit.active} active jobs (the limit is {cap} per user); "
                "wait for one to finish or cancel one, then submit again",
                code="active_job_limit",
                retry_after=30,
                active_jobs=limit.active,
                limit=cap,
            ) from None
        worker = self.ctx.services.worker
        if worker is not None:
            worker.wake()
        return job

    # -- reading ----------------------------------------------------------------------------------

    def get(
        self, principal: Principal, job_id: str, action: policy.Action = policy.Action.READ
    ) -> TrainingJob:
        """A job the project policy lets the caller ``action``, or NotFound (also for one of a project
        they are not in) / Forbidden (a role too small)."""
        job = self._load(job_id)
        missing = NotFound("training job not found", code="job_not_found")
        if job is None:
            raise missing
        with self.db.session() as s:
            policy.authorize(s, principal, job.project_id, action, missing, owner_id=job.owner_id)
        return job

    def get_any(self, job_id: str) -> TrainingJob:
        job = self._load(job_id)
        if job is None:
            raise NotFound("training job not found", code="job_not_found")
        return job

    def _load(self, job_id: str) -> TrainingJob | None:
        if not _valid_id(job_id):
            return None
        with self.db.session() as s:
            return s.get(TrainingJob, job_id.lower())

    def list_for(
        self,
        principal: Principal,
        limit: int = 10,
        state: str | None = None,
        cursor: str | None = None,
        project: str | None = None,
    ) -> tuple[list[Row[Any]], str | None]:
        """The jobs of the caller's projects (or of one), newest first, and the next page's cursor:
        plain rows (the job's columns), read on a bare connection."""
        limit = min(limit, MAX_LIST)
        with self.db.reader() as conn:
            rows = _LIST.rows(conn, principal, project, cursor, limit, state=state)
        return list(rows[:limit]), JOBS.next_cursor(rows, limit)

    def admin_list(
        self,
        limit: int = 50,
        state: str | None = None,
        owner_id: str | None = None,
        cursor: str | None = None,
    ) -> tuple[list[TrainingJob], str | None]:
        return self._list(limit, state, owner_id, cursor)

    def usernames(self, user_ids: set[str]) -> dict[str, str]:
        """Owner names for an admin's job list (ids alone say nothing to a person)."""
        if not user_ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(select(User.id, User.username).where(User.id.in_(list(user_ids)))).all()
        return {str(i): str(n) for i, n in rows}

    def _list(
        self,
        limit: int,
        state: str | None,
        owner_id: str | None,
        cursor: str | None,
    ) -> tuple[list[TrainingJob], str | None]:
        limit = min(limit, MAX_LIST)
        stmt = select(TrainingJob)
        if owner_id is not None:
            stmt = stmt.where(TrainingJob.owner_id == owner_id)
        if state is not None:
            stmt = stmt.where(TrainingJob.state == state)
        with self.db.session() as s:
            rows = list(s.scalars(JOBS.apply(stmt, cursor, limit)))
        return rows[:limit], JOBS.next_cursor(rows, limit)

    def logs(self, job: TrainingJob, after: int = 0, limit: int = 500) -> dict[str, Any]:
        with self.db.session() as s:
            rows = s.scalars(
                select(JobLogLine)
                .where(JobLogLine.job_id == job.id, JobLogLine.id > after)
                .order_by(JobLogLine.id)
                .limit(limit)
            ).all()
            kept = int(s.scalar(select(func.count()).where(JobLogLine.job_id == job.id)) or 0)
            total = int(s.scalar(select(TrainingJob.log_lines).where(TrainingJob.id == job.id)) or 0)
        lines = [{"seq": r.id, "ts": r.ts.isoformat(), "stream": r.stream, "line": r.line} for r in rows]
        return {
            "job_id": job.id,
            "status": job.state,
            "lines": lines,
            "next_after": lines[-1]["seq"] if lines else after,
            "total_lines": total,
            "dropped_lines": max(0, total - kept),
        }

    def events_after(self, job_id: str, after: int, limit: int = 200) -> list[JobEvent]:
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.id > after)
                    .order_by(JobEvent.id)
                    .limit(limit)
                )
            )

    # -- cancel -----------------------------------------------------------------------------------

    def cancel(
        self, principal: Principal, job_id: str, *, ip: str | None = None, as_admin: bool = False
    ) -> tuple[TrainingJob, bool]:
        """Cancel a pending or running job at once; returns (job, already_cancelled).

        Cancelling a cancelled job succeeds again; cancelling a completed or failed one is a Conflict.
        """
        try:
            job = self.get_any(job_id) if as_admin else self.get(principal, job_id, policy.Action.WRITE)
        except NotFound:
            self._audit_cancel(principal, job_id[:64], ip, "denied", {"reason": "not_found"})
            raise
        for _ in range(3):
            if job.state == states.CANCELLED.value:
                return job, True
            if states.is_terminal(job.state):
                raise Conflict(
                    f"the job is already {job.state}; only pending or running jobs can be cancelled",
                    code="job_finished",
                    state=job.state,
                )
            now = utcnow()
            who = "an admin" if as_admin and job.owner_id != principal.user_id else "its owner"
            with self.db.session() as s:
                moved = s.execute(
                    update(TrainingJob)
                    .where(TrainingJob.id == job.id, TrainingJob.state.in_(states.sources("cancelled")))
                    .values(
                        state=states.CANCELLED.value,
                        completed_at=now,
                        updated_at=now,
                        heartbeat_at=None,
                        error_message=f"cancelled by {who}",
                    )
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]
                    queue.add_event(s, job.id, "state", {"state": "cancelled", "previous": job.state})
                    queue.add_log(s, job.id, f"cancelled by {who} ({principal.username}) while {job.state}")
                    self._audit_cancel(principal, job.id, ip, "success", {"previous": job.state}, s)
                    break
            job = self.get_any(job.id)
        else:
            raise Conflict("the job changed state while being cancelled; try again", code="cancel_race")
        worker = self.ctx.services.worker
        if worker is not None:
            worker.kill(job.id, "cancelled")
        return self.get_any(job.id), False

    def _audit_cancel(
        self,
        principal: Principal,
        target: str,
        ip: str | None,
        outcome: Any,
        details: dict[str, Any],
        s: Any = None,
    ) -> None:
        record = AuditRecord(
            "training.cancel",
            outcome,
            principal.user_id,
            principal.username,
            "training_job",
            target,
            ip,
            details,
        )
        self.audit.append(record, s)

    # -- estimates and capacity -------------------------------------------------------------------

    def cost_estimate(
        self,
        principal: Principal,
        model_type: str,
        dataset_source: str,
        resource_profile: str | None = None,
        dataset_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        from bastion.ml import model_types

        model_types.get_model_type(model_type)
        parsed = model_types.validate_params(model_type, params or {}).model_dump(mode="json")
        if model_type in RL_MODEL_TYPES:
            ref = rl.resolve(self.ctx, principal, dataset_source, dataset_id, parsed)
        else:
            ref = resolve_dataset(self.ctx, principal, dataset_source, dataset_id, None, require_target=False)
        price = self.prices.get(resource_profile)
        out = estimate(price, model_type, max(1, ref.n_samples), max(1, ref.n_features), parsed)
        return {"dataset_source": dataset_source, **out, "params": parsed, "note": RESOURCE_PROFILE_NOTE}

    def admin_status(self) -> dict[str, Any]:
        counts = queue.counts_by_state(self.db)
        workers = queue.live_workers(self.db, self.config.stale_after_seconds)
        with self.db.session() as s:
            per_worker = dict(
                s.execute(
                    select(TrainingJob.worker_id, func.count())
                    .where(TrainingJob.state == states.RUNNING.value)
                    .group_by(TrainingJob.worker_id)
                ).all()
            )
        capacity = sum(w.max_concurrent for w in workers)
        busy = sum(min(w.max_concurrent, int(per_worker.get(w.id, 0))) for w in workers)
        return {
            "active_jobs": counts["running"],
            "pending_jobs": counts["pending"],
            "completed_jobs": counts["completed"],
            "failed_jobs": counts["failed"],
            "cancelled_jobs": counts["cancelled"],
            "max_concurrent_jobs": capacity,
            "capacity_available": max(0, capacity - busy),
            "system_healthy": bool(workers) and self.db.ping(),
            "max_active_jobs_per_user": self.config.max_active_per_user,
            "workers": [
                {
                    "id": w.id,
                    "hostname": w.hostname,
                    "pid": w.pid,
                    "max_concurrent": w.max_concurrent,
                    "running": int(per_worker.get(w.id, 0)),
                    "started_at": w.started_at.isoformat(),
                    "heartbeat_at": w.heartbeat_at.isoformat(),
                }
                for w in workers
            ],
        }
