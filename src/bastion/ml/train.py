"""The one training entry point a job runs: validate, split, fit, measure, serialize.

Every figure in ``metrics`` is computed here from the held-out rows (or, for ``training_accuracy``,
the training rows); nothing is assumed or hard-coded.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from bastion.data.dataset import Dataset
from bastion.ml.base import FitContext, Progress
from bastion.ml.features import FeatureSpec

# Share of the progress bar each phase takes: fitting dominates; evaluation and saving follow.
FIT_START, FIT_END, EVAL_END = 0.05, 0.85, 0.95
_DATASET_META_KEYS = ("source", "synthetic", "synthetic_fallback", "fallback_reason", "dropped_columns")


@dataclass
class TrainResult:
    model_bytes: bytes
    model_format: str
    model_config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


class _MonotonicProgress:
    """Forwards progress, never letting the fraction go backwards or leave 0..1."""

    def __init__(self, sink: Callable[[float, dict[str, Any]], None] | None) -> None:
        self.sink = sink
        self.last = 0.0

    def __call__(self, fraction: float, event: dict[str, Any]) -> None:
        self.last = min(1.0, max(self.last, float(fraction)))
        if self.sink is not None:
            self.sink(self.last, event)

    def scaled(self, start: float, end: float) -> Progress:
        def report(fraction: float, event: dict[str, Any]) -> None:
            self(start + (end - start) * min(1.0, max(0.0, fraction)), event)

        return report


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("scikit-learn", "torch", "skops", "safetensors", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def train(
    model_type: str,
    dataset: Dataset,
    params: dict[str, Any] | None = None,
    *,
    progress: Callable[[float, dict[str, Any]], None] | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train ``model_type`` on ``dataset``; ``progress(fraction, event)`` is called as work is done.

    Raises Invalid for an unknown model type, bad params, a task the model type cannot learn, or
    data too small to hold out a fair test set. Exceptions raised by ``progress`` propagate, so a
    runner may use one to stop training early.
    """
    from bastion.ml import model_types
    from bastion.ml.metrics import classification_metrics, permutation_importance, regression_metrics
    from bastion.ml.serialize import dump_model
    from bastion.ml.split import held_out_split

    spec_type = model_types.get_model_type(model_type)
    parsed = model_types.validate_params(model_type, params)
    model_types.check_task(model_type, dataset.task, str(dataset.meta.get("source") or "") or None)
    report = _MonotonicProgress(progress)
    started = time.perf_counter()
    report(0.0, {"stage": "split"})

    split = held_out_split(dataset, float(getattr(parsed, "test_size", 0.2)), seed)
    X_train, y_train = split.train(dataset)
    X_test, y_test = split.test(dataset)
    feature_spec = FeatureSpec(list(dataset.feature_names), dict(dataset.categories))
    ctx = FitContext(feature_spec, dataset.task, dataset.target_names)
    report(FIT_START, {"stage": "fit", "training_samples": len(y_train), "test_samples": len(y_test)})

    output = spec_type.module.fit(X_train, y_train, ctx, parsed, report.scaled(FIT_START, FIT_END), seed)
    fit_seconds = time.perf_counter() - started
    model = output.model
    report(FIT_END, {"stage": "evaluate"})

    metrics: dict[str, Any] = {"model_type": model_type}
    if dataset.task == "classification":
        assert dataset.target_names is not None
        predicted = model.predict(X_test)
        metrics.update(
            classification_metrics(y_test, predicted, model.predict_proba(X_test), dataset.target_names)
        )
        metrics["training_accuracy"] = round(float((model.predict(X_train) == y_train).mean()), 6)
    else:
        predicted = model.predict(X_test)
        metrics.update(regression_metrics(y_test, predicted))
        metrics["training_r2"] = regression_metrics(y_train, model.predict(X_train))["r2"]
    repeats = int(getattr(parsed, "importance_repeats", 0))
    metrics["feature_importance"] = permutation_importance(
        model.predict, X_test, y_test, dataset.feature_names, dataset.task, repeats=repeats, seed=seed
    )
    report(EVAL_END, {"stage": "serialize"})

    model_bytes, model_format = dump_model(model)
    metrics.update(
        {
            "training_samples": len(y_train),
            "test_samples": len(y_test),
            "feature_count": dataset.n_features,
            "grouped_split": split.grouped,
            "fit_seconds": round(fit_seconds, 3),
            "training_duration_seconds": round(time.perf_counter() - started, 3),
            "dataset": {k: dataset.meta[k] for k in _DATASET_META_KEYS if k in dataset.meta},
        }
    )
    if output.history:
        metrics["epochs_run"] = len(output.history)
    folds = getattr(parsed, "cv", None)
    if folds:
        from bastion.ml.cv import cross_validate

        report(EVAL_END, {"stage": "cross_validate", "folds": folds})
        metrics["cv"] = cross_validate(model_type, dataset, parsed, int(folds), seed=seed)
    clash = set(metrics) & set(output.metrics)
    if clash:
        raise RuntimeError(f"model type metrics override computed metrics: {sorted(clash)}")
    metrics.update(output.metrics)
    config: dict[str, Any] = {
        "model_type": model_type,
        "format": model_format,
        "task": dataset.task,
        "target": dataset.meta.get("target"),
        "classes": list(dataset.target_names) if dataset.target_names is not None else None,
        **feature_spec.to_config(),
        "params": parsed.model_dump(mode="json"),
        "seed": seed,
        "quantization": None,
        "library_versions": _versions(),
    }
    clash = set(config) & set(output.config)
    if clash:
        raise RuntimeError(f"model type config overrides reserved keys: {sorted(clash)}")
    config.update(output.config)
    final: dict[str, Any] = {
        k: metrics[k] for k in ("accuracy", "f1", "roc_auc", "r2", "rmse") if k in metrics
    }
    report(1.0, {"stage": "done", **final})
    return TrainResult(model_bytes, model_format, config, metrics, list(output.history))
