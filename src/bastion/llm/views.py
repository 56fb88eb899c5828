"""Fine-tuning jobs in OpenAI's shapes (``fine_tuning.job``, ``fine_tuning.job.event``, checkpoints)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.llm.lineage import fine_tuned_name
from bastion.store.tables import JobEvent, TrainingJob

_STATUS = {
    "pending": "queued",
    "running": "running",
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


def unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.replace(tzinfo=UTC).timestamp())


def status_of(job: TrainingJob) -> str:
    if job.state == "running" and job.stage in (None, "validating_files"):
        return "validating_files"
    return _STATUS[job.state]


def job_view(job: TrainingJob, hourly_cost: float | None = None) -> dict[str, Any]:
    params = job.params
    ref = job.dataset_ref
    results = job.results
    base = params.get("base_model", {})
    hyper = {
        k: params[k]
        for k in ("n_epochs", "batch_size", "learning_rate", "lora", "packing", "dp")
        if k in params
    }
    hyper["lora"] = {**hyper.get("lora", {}), "target_modules": params.get("target_modules")}
    actual_seconds = None
    if job.started_at and job.completed_at:
        actual_seconds = (job.completed_at - job.started_at).total_seconds()
    cost: dict[str, Any] = {
        "resource_profile": job.resource_profile,
        "estimated_seconds": job.estimated_seconds,
    }
    if hourly_cost is not None:
        cost["hourly_cost"] = hourly_cost
        if job.estimated_seconds is not None:
            cost["estimated_cost"] = round(job.estimated_seconds / 3600 * hourly_cost, 6)
        if actual_seconds is not None:
            cost["actual_seconds"] = round(actual_seconds, 3)
            cost["actual_cost"] = round(actual_seconds / 3600 * hourly_cost, 6)
    error = None
    if job.state == "failed":
        error = {"code": "job_failed", "message": job.error_message or "the job failed", "param": None}
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "model": base.get("name"),
        "created_at": unix(job.created_at),
        "finished_at": unix(job.completed_at) if job.state in ("completed", "failed", "cancelled") else None,
        "fine_tuned_model": (
            fine_tuned_name(base.get("name", ""), params.get("suffix"), job.id)
            if job.state == "completed"
            else None
        ),
        "status": status_of(job),
        "training_file": ref.get("training_file"),
        "validation_file": ref.get("validation_file"),
        "hyperparameters": hyper,
        "suffix": params.get("suffix"),
        "seed": job.seed,
        "trained_tokens": (results or {}).get("trained_tokens"),
        "result_files": [],
        "error": error,
        "progress": round(float(job.progress), 4),
        "attempt": job.attempt,
        "metrics": results,
        "cost": cost,
    }


def _message(kind: str, data: dict[str, Any]) -> tuple[str, str]:
    if kind == "state":
        state = data.get("state", "")
        status = _STATUS.get(state, state)
        level = "error" if state == "failed" else "info"
        extra = f": {data['error_message']}" if data.get("error_message") else ""
        return level, f"Job {status}{extra}"
    if kind == "metrics" and "epoch" in data:
        parts = [
            f"{k} {data[k]:.4f}"
            for k in ("train_loss", "eval_loss", "perplexity", "epsilon")
            if isinstance(data.get(k), int | float)
        ]
        return "info", f"Epoch {data['epoch']} done: " + ", ".join(parts)
    return (
        "info",
        f"Progress {round(float(data.get('progress', 0)) * 100)}% ({data.get('stage') or 'starting'})",
    )


def event_view(row: JobEvent) -> dict[str, Any]:
    data = row.data
    level, message = _message(row.kind, data)
    return {
        "id": str(row.id),
        "object": "fine_tuning.job.event",
        "created_at": unix(row.ts),
        "level": level,
        "message": message,
        "type": "metrics" if row.kind == "metrics" else "message",
        "data": data,
    }


def checkpoint_view(job: TrainingJob, entry: dict[str, Any]) -> dict[str, Any]:
    metrics = {k: entry.get(k) for k in ("train_loss", "eval_loss", "perplexity", "epsilon") if k in entry}
    return {
        "id": entry["checkpoint"],
        "object": "fine_tuning.job.checkpoint",
        "created_at": unix(entry["ts"]),
        "fine_tuning_job_id": job.id,
        "step_number": entry.get("step"),
        "epoch": entry.get("epoch"),
        "metrics": metrics,
    }
