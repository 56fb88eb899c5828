"""How a job looks from the outside: seeds/000's fields first, Bastion's additions after them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from bastion.store.tables import TrainingJob


def iso(value: datetime | None) -> str | None:
    """Stored times are naive UTC; the API says so explicitly."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC).isoformat(timespec="milliseconds")


def summary(job: TrainingJob | Row[Any]) -> dict[str, Any]:
    """One row of ``GET /training/jobs`` (from the list's plain row or a loaded job)."""
    return {
        "job_id": job.id,
        "project_id": job.project_id,
        "status": job.state,
        "progress": round(float(job.progress), 4),
        "created_at": iso(job.created_at),
        "results": job.results,
        "model_type": job.model_type,
        "dataset_source": job.dataset_source,
        "model_name": job.model_name,
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "error_message": job.error_message,
    }


def status(job: TrainingJob) -> dict[str, Any]:
    """``GET /training/status/{id}``: seeds/000's shape plus params, stage, attempts and history."""
    return {
        "job_id": job.id,
        "project_id": job.project_id,
        "status": job.state,
        "progress": round(float(job.progress), 4),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "results": job.results,
        "error_message": job.error_message,
        "model_type": job.model_type,
        "dataset_source": job.dataset_source,
        "dataset_id": job.dataset_id,
        "target": job.target,
        "model_name": job.model_name,
        "params": job.params,
        "resource_profile": job.resource_profile,
        "stage": job.stage,
        "attempt": job.attempt,
        "history": job.history,
        "estimated_seconds": job.estimated_seconds,
        "max_runtime_seconds": job.max_runtime_seconds,
        "updated_at": iso(job.updated_at),
        "model_available": job.state == "completed" and job.model_artifact_id is not None,
        "model_format": job.model_format,
        "resources": job.resources,
        "search": job.search_spec,
    }


def admin_summary(job: TrainingJob | Row[Any], owner: str | None = None) -> dict[str, Any]:
    return summary(job) | {
        "owner_id": job.owner_id,
        "owner": owner,
        "worker_id": job.worker_id,
        "attempt": job.attempt,
    }
