"""k-fold cross-validation of any model type, on the training rows only (the test rows stay unseen).

Stratified folds for classification, shuffled plain folds for regression, both seeded. The score
is accuracy (classification) or R² (regression), measured on each held-out fold. ``on_fold`` sees
every fold's score as it is measured (a search reports it to its pruner, and may stop early by
raising).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bastion.data.dataset import Dataset
from bastion.ml.base import FitContext, no_progress
from bastion.ml.features import FeatureSpec

MAX_FOLDS = 20


def cross_validate(
    model_type: str,
    dataset: Dataset,
    params: dict[str, Any] | Any,
    k: int,
    *,
    seed: int = 0,
    on_fold: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    from bastion.ml import model_types
    from bastion.ml.split import held_out_split

    spec = model_types.get_model_type(model_type)
    parsed = model_types.validate_params(model_type, params)
    split = held_out_split(dataset, float(getattr(parsed, "test_size", 0.2)), seed)
    X, y = split.train(dataset)
    classification = dataset.task == "classification"
    folds = (StratifiedKFold if classification else KFold)(n_splits=k, shuffle=True, random_state=seed)
    ctx = FitContext(
        FeatureSpec(list(dataset.feature_names), dict(dataset.categories)), dataset.task, dataset.target_names
    )
    scores: list[float] = []
    for i, (train_rows, val_rows) in enumerate(folds.split(X, y)):
        output = spec.module.fit(X[train_rows], y[train_rows], ctx, parsed, no_progress, seed)
        predicted = output.model.predict(X[val_rows])
        if classification:
            score = float(np.mean(predicted == y[val_rows]))
        else:
            truth = y[val_rows]
            total = float(np.sum((truth - truth.mean()) ** 2)) or 1.0
            score = 1.0 - float(np.sum((truth - predicted) ** 2)) / total
        scores.append(round(score, 6))
        if on_fold is not None:
            on_fold(i, score)
    return {
        "k": k,
        "metric": "accuracy" if classification else "r2",
        "folds": scores,
        "mean": round(statistics.fmean(scores), 6),
        "std": round(statistics.pstdev(scores), 6),
        "rows": len(y),
    }
