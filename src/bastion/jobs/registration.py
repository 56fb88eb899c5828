"""A completed job's model becomes a version in the model registry, with the job as its lineage.

The version is written in the transaction that completes the job (``queue.complete(…, then=step)``),
so a client that sees ``completed`` (the status route, ``client.jobs.wait``) already finds it, and
there is never a version without a completed job: a worker that dies before the commit leaves
neither (recovery re-queues the job, whose next attempt registers once), a cancel that wins the race
leaves neither. The slow part (reading and checking the package in the vault) happens before, outside
the transaction: :func:`registrar` gives the worker a ``prepare`` that returns the in-transaction step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.orm import Session

from bastion.context import Context
from bastion.errors import NotFound
from bastion.jobs.service import default_model_name
from bastion.store.tables import TrainingJob

_log = structlog.get_logger("bastion.jobs")

Step = Callable[[Session], None]
"""Writes the version inside the completing transaction (after the fenced state change)."""
Prepare = Callable[[str, dict[str, Any], dict[str, Any]], Step]
"""``(job_id, results, model)`` -> the step; raises when the model cannot be registered."""


def registrar(ctx: Context) -> Prepare:
    """What the worker calls before it completes a job that wrote a model (``model``: the job's
    ``{artifact_id, version, format}``). A failure here fails the job: a completed job has its version."""

    def prepare(job_id: str, results: dict[str, Any], model: dict[str, Any]) -> Step:
        from bastion.catalog.stored import PACKAGE, StoredRef
        from bastion.jobs.package import unpack

        with ctx.db.session() as s:
            job = s.get(TrainingJob, job_id)
            if job is None:
                raise NotFound("job not found")
        artifact, version = str(model["artifact_id"]), int(model["version"])
        package = unpack(ctx.vault.get_bytes(artifact, version))
        if job.model_type == "llm_lora":
            from bastion.llm.lineage import adapter_version

            fields = adapter_version(job, results)
        else:
            fields = _job_version(job, results, package.model_format, package.model_config)
        # The version refers to the job's package: the model is stored once (bastion.catalog.stored).
        stored = StoredRef(artifact, version, PACKAGE)
        registry, owner = ctx.services.models, job.owner_id
        name, model_format = fields.pop("name"), fields.pop("model_format")

        def step(s: Session) -> None:
            view = registry.register(
                owner,
                name,
                package.model_bytes,
                model_format,
                config=package.model_config,
                stored=stored,
                session=s,
                **fields,
            )
            _log.info("job_model_registered", job_id=job_id, model_id=view.model_id, version=view.version)

        return step

    return prepare


def _job_version(
    job: TrainingJob, results: dict[str, Any], model_format: str, config: dict[str, Any]
) -> dict[str, Any]:
    """``ModelVersions.register``'s name, format, metrics, lineage and input schema for a job's model."""
    return {
        "name": job.model_name or default_model_name(job.model_type, job.dataset_source, job.dataset_id),
        "model_format": model_format,
        "metrics": {k: v for k, v in results.items() if isinstance(v, int | float)},
        "lineage": {
            "job_id": job.id,
            "model_type": job.model_type,
            "dataset_source": job.dataset_source,
            "dataset_id": job.dataset_id,
            "target": job.target,
            "seed": job.seed,
            **_validation(results),
        },
        "input_schema": {"features": config.get("feature_names", [])},
    }


def _validation(results: dict[str, Any]) -> dict[str, Any]:
    """Cross-validation behind the model: a plain job's ``cv`` block, or a search's best trial."""
    out: dict[str, Any] = {}
    if isinstance(results.get("cv"), dict):
        out["cv"] = results["cv"]
    search = results.get("search")
    if isinstance(search, dict):
        out["search"] = {
            k: search.get(k)
            for k in ("best_trial", "best_params", "best_cv", "defaults_cv", "n_complete", "n_pruned")
        }
        out["cv"] = search.get("best_cv")
    return out
