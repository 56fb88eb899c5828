"""The job target of one search trial: cross-validate one point of the space, fold by fold.

Runs where any job runs (a local job process, or a Ray task). Each fold's score leaves as a
progress event ``{"stage": "cv", "fold": i, "score": s}`` as soon as it is measured, so the search
driver can report it to Optuna's pruner and stop a hopeless trial between folds.
"""

from __future__ import annotations

from typing import Any


def run_trial(ctx: Any) -> dict[str, Any]:
    from bastion.jobs.runner import load_dataset
    from bastion.ml.cv import cross_validate

    spec = ctx.spec
    inputs = getattr(ctx, "inputs", None)
    if inputs and "dataset" in inputs:
        dataset = inputs["dataset"]
    else:
        from bastion.jobs.datasets import DatasetRef

        needs_vault = bool(DatasetRef.from_json(spec["dataset"]).artifact_id)
        dataset = load_dataset(spec, ctx.vault() if needs_vault else None)
    k = int(spec["search"]["cv"])

    def on_fold(i: int, score: float) -> None:
        ctx.progress((i + 1) / k, {"stage": "cv", "fold": i, "score": score})

    result = cross_validate(
        str(spec["model_type"]),
        dataset,
        dict(spec.get("params") or {}),
        k,
        seed=int(spec.get("seed", 0)),
        on_fold=on_fold,
    )
    return {"results": {"cv": result}}
