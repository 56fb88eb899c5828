"""A completed job's model becomes a version in the model registry, with the job as its lineage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from bastion.context import Context
from bastion.jobs.service import default_model_name
from bastion.store.tables import TrainingJob

_log = structlog.get_logger("bastion.jobs")


def registrar(ctx: Context) -> Callable[[str], None]:
    """What the worker calls after a job completes. A failure here never fails the finished job."""

    def register(job_id: str) -> None:
        from bastion.catalog.stored import PACKAGE, StoredRef
        from bastion.jobs.package import unpack

        registry = ctx.services.models
        try:
            with ctx.db.session() as s:
                job = s.get(TrainingJob, job_id)
                if job is None or job.model_artifact_id is None:
                    return
                owner, artifact, version = job.owner_id, job.model_artifact_id, job.model_version
                model_type, results = job.model_type, job.results or {}
                source, dataset_id, target, seed = job.dataset_source, job.dataset_id, job.target, job.seed
                name = job.model_name or default_model_name(model_type, source, dataset_id)
            package = unpack(ctx.vault.get_bytes(artifact, version))
            # The version refers to the job's package: the model is stored once (bastion.catalog.stored).
            stored = StoredRef(artifact, version, PACKAGE) if version is not None else None
            if model_type == "llm_lora":
                from bastion.llm.lineage import register_adapter

                register_adapter(ctx, registry, job_id, package, stored=stored)
                return
            view = registry.register(
                owner,
                name,
                package.model_bytes,
                package.model_format,
                config=package.model_config,
                metrics={k: v for k, v in results.items() if isinstance(v, int | float)},
                lineage={
                    "job_id": job_id,
                    "model_type": model_type,
                    "dataset_source": source,
                    "dataset_id": dataset_id,
                    "target": target,
                    "seed": seed,
                    **_validation(results),
                },
                input_schema={"features": package.model_config.get("feature_names", [])},
                stored=stored,
            )
            _log.info("job_model_registered", job_id=job_id, model_id=view.model_id, version=view.version)
        except Exception as exc:
            _log.warning("job_model_not_registered", job_id=job_id, error=type(exc).__name__)

    return register


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
