"""The default job target: load the data, train with live progress, seal the model into the vault.

Runs inside the job process (``bastion.jobs.child``). The vault artifact is the model package
(bastion.jobs.package), so the model and the JSON it needs to be loaded travel and rest together.
"""

from __future__ import annotations

from typing import Any

from bastion.jobs.child import JobContext


def artifact_id_for(job_id: str, attempt: int) -> str:
    """One artifact per attempt, so cleaning up after a lost attempt never touches another's model."""
    return f"job-{job_id}-a{attempt}"


def run_training(ctx: JobContext) -> dict[str, Any]:
    from bastion.jobs.datasets import DatasetRef, load_for_job
    from bastion.jobs.rl import RL_MODEL_TYPES, run_dqn
    from bastion.ml.train import train

    spec = ctx.spec
    if spec["model_type"] in RL_MODEL_TYPES:
        out = run_dqn(ctx)
        return _seal(ctx, out["model_bytes"], "safetensors", out["config"], out["metrics"], out["history"])
    ref = DatasetRef.from_json(spec["dataset"])
    ctx.log(f"loading dataset {ref.source}" + (f" ({ref.dataset_id})" if ref.dataset_id else ""))
    ctx.progress(0.0, {"stage": "load"})
    vault = ctx.vault() if ref.artifact_id else None
    dataset = load_for_job(
        ref, seed=int(spec.get("seed", 0)), kaggle_path=spec.get("kaggle_path"), vault=vault
    )
    ctx.log(
        f"dataset: {dataset.n_samples} rows, {dataset.n_features} features, {dataset.task}"
        + (" (synthetic fallback)" if dataset.meta.get("synthetic_fallback") else "")
    )
    result = train(
        str(spec["model_type"]),
        dataset,
        dict(spec.get("params") or {}),
        progress=ctx.progress,
        seed=int(spec.get("seed", 0)),
    )
    return _seal(
        ctx, result.model_bytes, result.model_format, result.model_config, result.metrics, result.history
    )


def _seal(
    ctx: JobContext,
    model_bytes: bytes,
    model_format: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """Pack the model with its config into the vault; the job's result points at the artifact."""
    from bastion.jobs.package import ModelPackage, pack

    spec = ctx.spec
    job_id = str(spec["job_id"])
    blob = pack(ModelPackage(job_id, str(spec["model_type"]), model_format, config, model_bytes))
    info = ctx.vault().put_bytes(
        artifact_id_for(job_id, int(spec.get("attempt") or 0)),
        blob,
        meta={"kind": "job-model", "job_id": job_id, "format": model_format, "attempt": spec.get("attempt")},
    )
    ctx.log(f"model saved: {model_format}, {len(model_bytes)} bytes (vault version {info.version})")
    return {
        "results": metrics,
        "history": history,
        "model": {"artifact_id": info.artifact_id, "version": info.version, "format": model_format},
    }
