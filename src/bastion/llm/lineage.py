"""A finished fine-tuning job's adapter becomes a model version, with its lineage.

The version's bytes are the adapter's safetensors (never the base weights); its config says which
base model (name and weights hash) it adapts, so loading it later checks the same hash.
"""

from __future__ import annotations

from typing import Any

import structlog

from bastion.store.tables import TrainingJob

_log = structlog.get_logger("bastion.llm")


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's ``ft:<base>:<suffix>:<id>`` naming (the job id keeps it unique)."""
    return ":".join(p for p in ("ft", base, suffix, job_id[:8]) if p)


def register_adapter(ctx: Any, registry: Any, job_id: str, package: Any, stored: Any = None) -> None:
    """Register the adapter; ``stored`` names the job's package so the bytes are not copied."""
    with ctx.db.session() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None
        owner, params, ref = job.owner_id, job.params, job.dataset_ref
        results, seed = job.results or {}, job.seed
    base = params["base_model"]
    hyper = {k: v for k, v in params.items() if k not in ("base_model", "suffix")}
    view = registry.register(
        owner,
        fine_tuned_name(base["name"], params.get("suffix"), job_id),
        package.model_bytes,
        "safetensors",
        config=package.model_config,
        metrics={k: v for k, v in results.items() if isinstance(v, int | float) and not isinstance(v, bool)},
        lineage={
            "job_id": job_id,
            "kind": "lora_adapter",
            "base_model": {"id": base["id"], "name": base["name"], "sha256": base["sha256"]},
            "training_file": ref.get("training_file"),
            "validation_file": ref.get("validation_file"),
            "hyperparameters": hyper,
            "seed": seed,
        },
        primary_metric="eval_loss",
        stored=stored,
    )
    _log.info("adapter_registered", job_id=job_id, model_id=view.model_id, version=view.version)
