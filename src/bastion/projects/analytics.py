"""Per-project analytics: who contributed what, models over time, training history, resource use and
federation participation. Each view is a handful of grouped queries over the rows themselves (no
stored counters that could drift), computed for one project after the policy allowed reading it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.jobs.pricing import Price
from bastion.jobs.resources import resolve as resolve_resources
from bastion.store.tables import (
    DatasetRecord,
    Federation,
    FederationGuest,
    FederationParticipant,
    FederationUpdate,
    ModelRecord,
    ModelVersionRecord,
    ProjectMember,
    TrainingJob,
    User,
)

HISTORY_LIMIT = 500


def _names(s: Session, user_ids: set[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    rows = s.execute(select(User.id, User.username).where(User.id.in_(list(user_ids)))).all()
    return {str(i): str(n) for i, n in rows}


def _rounds_by_member(s: Session, project_id: str) -> dict[str, set[tuple[str, int]]]:
    """(federation, round) pairs each user's sites sent an accepted update in, for the project's federations."""
    rows = s.execute(
        select(FederationParticipant.enrolled_by, FederationUpdate.federation_id, FederationUpdate.round)
        .join(FederationParticipant, FederationParticipant.id == FederationUpdate.participant_id)
        .join(Federation, Federation.id == FederationUpdate.federation_id)
        .where(Federation.project_id == project_id)
    ).all()
    out: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for user_id, fed_id, rnd in rows:
        if user_id is not None:
            out[str(user_id)].add((str(fed_id), int(rnd)))
    return out


def contributions(s: Session, project_id: str) -> list[dict[str, Any]]:
    """Per person (members, and anyone who left something behind): datasets, rows, jobs, rounds."""
    roles = dict(
        s.execute(
            select(ProjectMember.user_id, ProjectMember.role).where(ProjectMember.project_id == project_id)
        ).all()
    )
    data = s.execute(
        select(DatasetRecord.owner_id, func.count(), func.coalesce(func.sum(DatasetRecord.rows), 0))
        .where(DatasetRecord.project_id == project_id, DatasetRecord.deleted_at.is_(None))
        .group_by(DatasetRecord.owner_id)
    ).all()
    jobs = dict(
        s.execute(
            select(TrainingJob.owner_id, func.count())
            .where(TrainingJob.project_id == project_id)
            .group_by(TrainingJob.owner_id)
        ).all()
    )
    rounds = _rounds_by_member(s, project_id)
    users = set(roles) | {str(u) for u, _, _ in data} | set(jobs) | set(rounds)
    names = _names(s, users)
    by_data = {str(u): (int(n), int(r)) for u, n, r in data}
    out = [
        {
            "user_id": u,
            "username": names.get(u),
            "role": roles.get(u),
            "datasets": by_data.get(u, (0, 0))[0],
            "rows": by_data.get(u, (0, 0))[1],
            "jobs": int(jobs.get(u, 0)),
            "federation_rounds": len(rounds.get(u, ())),
        }
        for u in users
    ]
    return sorted(out, key=lambda r: (r["username"] or "", r["user_id"]))


def model_performance(s: Session, project_id: str) -> list[dict[str, Any]]:
    """Every model of the project with its versions in order: when, and the metrics each reached."""
    rows = s.execute(
        select(ModelRecord, ModelVersionRecord)
        .join(ModelVersionRecord, ModelVersionRecord.model_id == ModelRecord.id)
        .where(ModelRecord.project_id == project_id)
        .order_by(ModelRecord.created_at, ModelRecord.id, ModelVersionRecord.version)
    ).all()
    models: dict[str, dict[str, Any]] = {}
    for model, version in rows:
        entry = models.setdefault(
            model.id,
            {
                "model_id": model.id,
                "name": model.name,
                "primary_metric": model.primary_metric,
                "versions": [],
            },
        )
        entry["versions"].append(
            {
                "version": version.version,
                "created_at": version.created_at.isoformat(),
                "metrics": {
                    k: v for k, v in (version.metrics_json or {}).items() if isinstance(v, int | float)
                },
            }
        )
    return list(models.values())


def _hours(job: TrainingJob) -> float:
    if job.started_at is None or job.completed_at is None:
        return 0.0
    return max(0.0, (job.completed_at - job.started_at).total_seconds() / 3600.0)


def _reserved(job: TrainingJob) -> dict[str, float]:
    stored = job.resources
    return stored if isinstance(stored, dict) else resolve_resources(None, job.resource_profile)


def _jobs(s: Session, project_id: str, limit: int | None = None) -> list[TrainingJob]:
    stmt = (
        select(TrainingJob)
        .where(TrainingJob.project_id == project_id)
        .order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc())
    )
    return list(s.scalars(stmt.limit(limit) if limit else stmt))


def training_history(s: Session, project_id: str) -> dict[str, Any]:
    """The newest jobs (training and fine-tuning) with their outcome and duration, and counts by state."""
    jobs = _jobs(s, project_id, HISTORY_LIMIT)
    names = _names(s, {j.owner_id for j in jobs})
    counts = dict(
        s.execute(
            select(TrainingJob.state, func.count())
            .where(TrainingJob.project_id == project_id)
            .group_by(TrainingJob.state)
        ).all()
    )
    return {
        "by_state": {str(k): int(v) for k, v in counts.items()},
        "jobs": [
            {
                "job_id": j.id,
                "owner": names.get(j.owner_id),
                "model_type": j.model_type,
                "state": j.state,
                "created_at": j.created_at.isoformat(),
                "completed_at": j.completed_at.isoformat() if j.completed_at else None,
                "duration_seconds": round(_hours(j) * 3600.0, 3),
                "metrics": {
                    k: v
                    for k, v in (j.results or {}).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                },
            }
            for j in jobs
        ],
    }


def resource_use(s: Session, project_id: str, prices: dict[str, Price]) -> dict[str, Any]:
    """CPU-hours, GPU-hours and cost (today's price table) of every finished job, per person and in all."""
    per: dict[str, dict[str, float]] = defaultdict(lambda: {"cpu_hours": 0.0, "gpu_hours": 0.0, "cost": 0.0})
    currency = None
    for job in _jobs(s, project_id):
        hours = _hours(job)
        if hours == 0.0:
            continue
        res = _reserved(job)
        price = prices.get(job.resource_profile)
        row = per[job.owner_id]
        row["cpu_hours"] += float(res.get("cpus", 0)) * hours
        row["gpu_hours"] += float(res.get("gpus", 0)) * hours
        if price is not None:
            row["cost"] += price.hourly_cost * hours
            currency = currency or price.currency
    names = _names(s, set(per))
    people = [
        {"user_id": u, "username": names.get(u), **{k: round(v, 6) for k, v in row.items()}}
        for u, row in per.items()
    ]
    total = {k: round(sum(r[k] for r in per.values()), 6) for k in ("cpu_hours", "gpu_hours", "cost")}
    return {
        "currency": currency or "USD",
        "total": total,
        "by_member": sorted(people, key=lambda r: r["user_id"]),
    }


def federation_participation(s: Session, project_id: str) -> list[dict[str, Any]]:
    """Each federation of the project: progress, sites and guests, and rounds each person's sites took part in."""
    feds = list(
        s.scalars(
            select(Federation).where(Federation.project_id == project_id).order_by(Federation.created_at)
        )
    )
    ids = [f.id for f in feds]
    sites = dict(
        s.execute(
            select(FederationParticipant.federation_id, func.count())
            .where(FederationParticipant.federation_id.in_(ids))
            .group_by(FederationParticipant.federation_id)
        ).all()
    )
    guests = dict(
        s.execute(
            select(FederationGuest.federation_id, func.count())
            .where(FederationGuest.federation_id.in_(ids))
            .group_by(FederationGuest.federation_id)
        ).all()
    )
    per: dict[str, dict[str, int]] = defaultdict(dict)
    for user_id, pairs in _rounds_by_member(s, project_id).items():
        for fed_id, _rnd in pairs:
            per[fed_id][user_id] = per[fed_id].get(user_id, 0) + 1
    names = _names(s, {u for d in per.values() for u in d})
    return [
        {
            "federation_id": f.id,
            "name": f.name,
            "state": f.state,
            "completed_rounds": f.completed_rounds,
            "rounds": f.rounds,
            "sites": int(sites.get(f.id, 0)),
            "guests": int(guests.get(f.id, 0)),
            "rounds_by_member": [
                {"user_id": u, "username": names.get(u), "rounds": n}
                for u, n in sorted(per.get(f.id, {}).items())
            ],
        }
        for f in feds
    ]
