"""The default job target: load the data, train with live progress, seal the model into the vault.

Runs inside the job process (``bastion.jobs.child``). The vault artifact is the model package
(bastion.jobs.package), so the model and the JSON it needs to be loaded travel and rest together.
On Ray the same steps are split at the trust boundary: the worker loads the data and stores the
model (:func:`store_model`), the Ray task only trains and packs (:func:`train_package`).
"""

from __future__ import annotations

from typing import Any

from bastion.jobs.child import JobContext


def artifact_id_for(job_id: str, attempt: int) -> str:
    """One artifact per attempt, so cleaning up after a lost attempt never touches another's model."""
    return f"job-{job_id}-a{attempt}"


def train_package(spec: dict[str, Any], dataset: Any, progress: Any) -> tuple[Any, bytes]:
    """Train the spec's model on ``dataset``; the result and its model package (bytes)."""
    from bastion.jobs.package import ModelPackage, pack
    from bastion.ml.train import train

    result = train(
        str(spec["model_type"]),
        dataset,
        dict(spec.get("params") or {}),
        progress=progress,
        seed=int(spec.get("seed", 0)),
    )
    blob = pack(
        ModelPackage(
            str(spec["job_id"]),
            str(spec["model_type"]),
            result.model_format,
            result.model_config,
            result.model_bytes,
        )
    )
    return result, blob


def store_model(vault: Any, spec: dict[str, Any], blob: bytes, model_format: str) -> dict[str, Any]:
    """Seal a model package into the vault as this attempt's artifact; the job's ``model`` entry."""
    job_id = str(spec["job_id"])
    info = vault.put_bytes(
        artifact_id_for(job_id, int(spec.get("attempt") or 0)),
        blob,
        meta={"kind": "job-model", "job_id": job_id, "format": model_format, "attempt": spec.get("attempt")},
    )
    return {"artifact_id": info.artifact_id, "version": info.version, "format": model_format}


def load_dataset(spec: dict[str, Any], vault: Any) -> Any:
    from bastion.jobs.datasets import DatasetRef, load_for_job

    ref = DatasetRef.from_json(spec["dataset"])
    return load_for_job(
        ref,
        seed=int(spec.get("seed", 0)),
        kaggle_path=spec.get("kaggle_path"),
        vault=vault if ref.artifact_id else None,
    )


def run_training(ctx: JobContext) -> dict[str, Any]:
    if ctx.spec.get("model_type") == "llm_lora":  # fine-tuning: the same queue, another trainer
        from bastion.llm.train import run_finetune

        return run_finetune(ctx)
    from bastion.jobs.datasets import DatasetRef
    from bastion.jobs.rl import RL_MODEL_TYPES, pack_dqn, run_dqn

    spec = ctx.spec
    if spec["model_type"] in RL_MODEL_TYPES:  # DQN: an environment or a transitions table, no frame
        out = run_dqn(ctx)
        blob = pack_dqn(spec, out)
        model = store_model(ctx.vault(), spec, blob, "safetensors")
        ctx.log(
            f"model saved: safetensors, {len(out['model_bytes'])} bytes (vault version {model['version']})"
        )
        return {"results": out["metrics"], "history": out["history"], "model": model}
    ref = DatasetRef.from_json(spec["dataset"])
    ctx.log(f"loading dataset {ref.source}" + (f" ({ref.dataset_id})" if ref.dataset_id else ""))
    ctx.progress(0.0, {"stage": "load"})
    dataset = load_dataset(spec, ctx.vault() if ref.artifact_id else None)
    ctx.log(
        f"dataset: {dataset.n_samples} rows, {dataset.n_features} features, {dataset.task}"
        + (" (synthetic fallback)" if dataset.meta.get("synthetic_fallback") else "")
    )
    result, blob = train_package(spec, dataset, ctx.progress)
    model = store_model(ctx.vault(), spec, blob, result.model_format)
    ctx.log(
        f"model saved: {result.model_format}, {len(result.model_bytes)} bytes (vault version {model['version']})"
    )
    return {"results": result.metrics, "history": result.history, "model": model}
