"""What the registry records of a finished fine-tuning job's adapter: its name, metrics and lineage.

The version's bytes are the adapter's safetensors (never the base weights); its config says which
base model (name and weights hash) it adapts, so loading it later checks the same hash. The job
registrar (bastion.jobs.registration) writes the version in the transaction that completes the job,
so ``fine_tuned_model`` names an existing version as soon as the job reads ``succeeded``.
"""

from __future__ import annotations

from typing import Any

from bastion.store.tables import TrainingJob


def fine_tuned_name(base: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's ``ft:<base>:<suffix>:<id>`` naming (the job id keeps it unique)."""
    return ":".join(p for p in ("ft", base, suffix, job_id[:8]) if p)


def adapter_version(job: TrainingJob, results: dict[str, Any]) -> dict[str, Any]:
    """``ModelVersions.register``'s name, format, metrics, lineage and primary metric for the adapter
    of ``job`` (``results`` as the job reported them: they reach the row in the same transaction)."""
    params, ref = job.params, job.dataset_ref
    base = params["base_model"]
    hyper = {k: v for k, v in params.items() if k not in ("base_model", "suffix")}
    return {
        "name": fine_tuned_name(base["name"], params.get("suffix"), job.id),
        "model_format": "safetensors",
        "metrics": {
            k: v for k, v in results.items() if isinstance(v, int | float) and not isinstance(v, bool)
        },
        "lineage": {
            "job_id": job.id,
            "kind": "lora_adapter",
            "base_model": {"id": base["id"], "name": base["name"], "sha256": base["sha256"]},
            "training_file": ref.get("training_file"),
            "validation_file": ref.get("validation_file"),
            "hyperparameters": hyper,
            "seed": job.seed,
        },
        "primary_metric": "eval_loss",
    }
