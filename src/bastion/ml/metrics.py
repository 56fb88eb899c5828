"""Held-out metrics and permutation importance, computed from predictions, never made up."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

TOP_FEATURES = 10
MAX_IMPORTANCE_ROWS = 1000


def _finite(value: float) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    return round(float(value), 6) if math.isfinite(value) else None


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = list(range(len(class_names)))
    out: dict[str, Any] = {
        "accuracy": _finite(accuracy_score(y_true, y_pred)),
        "f1": _finite(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "precision": _finite(
            precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "recall": _finite(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(class_names),
    }
    present = np.unique(y_true)
    if len(present) < len(class_names):
        out["roc_auc"] = None
        out["roc_auc_note"] = "not every class occurs in the held-out rows"
    elif len(class_names) == 2:
        out["roc_auc"] = _finite(roc_auc_score(y_true, proba[:, 1]))
    else:
        out["roc_auc"] = _finite(
            roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
        )
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "mae": _finite(mean_absolute_error(y_true, y_pred)),
        "rmse": _finite(math.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": _finite(r2_score(y_true, y_pred)),
    }


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The figure importance is measured against: accuracy, or R^2 for regressors."""
    if task == "classification":
        return float(np.mean(y_true == y_pred))
    from sklearn.metrics import r2_score

    return float(r2_score(y_true, y_pred))


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    feature_names: list[str],
    task: str,
    *,
    repeats: int = 5,
    seed: int = 0,
    top: int = TOP_FEATURES,
) -> list[dict[str, Any]]:
    """Drop in held-out score when one column is shuffled, averaged over ``repeats`` shuffles.

    Model-agnostic (works on the encoded matrix for sklearn and torch alike), so categorical columns
    are scored as one feature under their original name rather than per one-hot column.
    """
    if repeats < 1:
        return []
    rng = np.random.default_rng(seed)
    if len(y) > MAX_IMPORTANCE_ROWS:
        keep = rng.choice(len(y), MAX_IMPORTANCE_ROWS, replace=False)
        X, y = X[keep], y[keep]
    n = len(y)
    baseline = score(task, y, predict(X))
    results: list[dict[str, Any]] = []
    for j, name in enumerate(feature_names):
        # One predict call per feature over all shuffles stacked: far cheaper for tree ensembles.
        stacked = np.tile(X, (repeats, 1))
        for r in range(repeats):
            stacked[r * n : (r + 1) * n, j] = X[rng.permutation(n), j]
        predicted = predict(stacked)
        drops = [baseline - score(task, y, predicted[r * n : (r + 1) * n]) for r in range(repeats)]
        results.append(
            {
                "feature": name,
                "importance": _finite(float(np.mean(drops))),
                "std": _finite(float(np.std(drops))),
            }
        )
    results.sort(key=lambda r: -(r["importance"] or 0.0))
    return results[:top]
