"""Shared scikit-learn plumbing: the preprocessing pipeline, staged fitting with progress, the wrapper.

Ensembles are grown in stages with ``warm_start`` so progress reflects real work done (and a cancel
between stages loses little); the result is an ordinary fitted Pipeline, predicting exactly as one
fitted in a single call would.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bastion.data.dataset import Task
from bastion.errors import Invalid
from bastion.ml.base import Progress
from bastion.ml.features import FeatureSpec

STAGES = 10
# Process start, imports (scikit-learn, skops, torch) and data loading, before any fitting.
STARTUP_SECONDS = 3.0


def build_pipeline(spec: FeatureSpec, estimator: Any) -> Any:
    """Impute + scale numbers, impute + one-hot categories, then ``estimator``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers: list[tuple[str, Any, list[int]]] = []
    if spec.numeric_indices:
        numeric = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        transformers.append(("numeric", numeric, spec.numeric_indices))
    if spec.categorical_indices:
        levels = [
            np.arange(len(spec.categories[spec.feature_names[i]]), dtype=np.float64)
            for i in spec.categorical_indices
        ]
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(categories=levels, handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, spec.categorical_indices))
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def balanced_weights(y: np.ndarray) -> np.ndarray:
    from sklearn.utils.class_weight import compute_sample_weight

    return np.asarray(compute_sample_weight("balanced", y), dtype=np.float64)


def fit_staged(
    pipeline: Any,
    X: np.ndarray,
    y: np.ndarray,
    progress: Progress,
    *,
    sample_weight: np.ndarray | None = None,
) -> Any:
    """Fit ``pipeline``; ensembles grow in ``STAGES`` steps, each reported as a progress event."""
    estimator = pipeline.named_steps["model"]
    name = type(estimator).__name__
    total = int(getattr(estimator, "n_estimators", 0) or 0)
    if total < 2 or not hasattr(estimator, "warm_start"):
        progress(0.0, {"stage": "fit", "estimator": name})
        fit_params = {} if sample_weight is None else {"model__sample_weight": sample_weight}
        pipeline.fit(X, y, **fit_params)
        progress(1.0, {"stage": "fitted", "estimator": name})
        return pipeline
    # Preprocessing is fitted once; only the ensemble grows stage by stage on the transformed rows.
    Xt = pipeline[:-1].fit_transform(X, y)
    progress(0.0, {"stage": "fit", "estimator": name, "estimators": 0, "of": total})
    estimator.set_params(warm_start=True)
    steps = sorted({max(1, math.ceil(total * k / STAGES)) for k in range(1, STAGES + 1)})
    for count in steps:
        estimator.set_params(n_estimators=count)
        estimator.fit(Xt, y, sample_weight=sample_weight)
        progress(count / total, {"stage": "fit", "estimator": name, "estimators": count, "of": total})
    estimator.set_params(warm_start=False)
    return pipeline


class SklearnModel:
    """A fitted scikit-learn Pipeline seen through the :class:`FittedModel` interface."""

    def __init__(self, pipeline: Any, task: Task, n_classes: int = 0) -> None:
        self.pipeline = pipeline
        self.task = task
        self.n_classes = n_classes

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.asarray(self.pipeline.predict(X))
        return out.astype(np.int64) if self.task == "classification" else out.astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.task != "classification":
            raise Invalid("this model is a regressor: it predicts values, not class probabilities")
        proba = np.asarray(self.pipeline.predict_proba(X), dtype=np.float64)
        seen = np.asarray(self.pipeline.classes_, dtype=np.int64)
        if proba.shape[1] == self.n_classes and np.array_equal(seen, np.arange(self.n_classes)):
            return proba
        full = np.zeros((proba.shape[0], self.n_classes))
        full[:, seen] = proba
        return full


def tree_cost(n_samples: int, n_features: int) -> float:
    """Work of one CART tree, in units of ``n * log2(n) * features``."""
    return n_samples * max(1.0, math.log2(max(n_samples, 2))) * n_features


def tree_ensemble(params: Any, seed: int, forest: type, boosting: type) -> Any:
    """The random-forest or gradient-boosting estimator both scikit-learn model types offer, built from
    the shared tree parameters (classifier or regressor depending on the classes passed)."""
    if params.estimator == "random_forest":
        return forest(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            random_state=seed,
            n_jobs=1,
        )
    return boosting(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth or 3,
        min_samples_leaf=params.min_samples_leaf,
        learning_rate=params.learning_rate,
        random_state=seed,
    )


def combine(params: Any, seed: int, member: Any, voting: Any, stacking: type, final: Any, folds: type) -> Any:
    """A voting or stacking ensemble of ``params.ensemble_members``, each built by ``member`` from the
    same params; stacking fits ``final`` on the members' out-of-fold predictions (5 seeded folds)."""
    members: list[tuple[str, Any]] = [
        (name, member(params.model_copy(update={"estimator": name}), seed))
        for name in params.ensemble_members
    ]
    if params.estimator == "voting":
        return voting(members)
    return stacking(members, final_estimator=final, cv=folds(5, shuffle=True, random_state=seed))


def ensemble_seconds(estimate: Any, n_samples: int, n_features: int, params: Any) -> float:
    """Each member once; stacking also fits every member on 5 folds for the meta-features."""
    rounds = 1 if params.estimator == "voting" else 6
    members = [
        estimate(n_samples, n_features, params.model_copy(update={"estimator": m})) - STARTUP_SECONDS
        for m in params.ensemble_members
    ]
    result: float = STARTUP_SECONDS + rounds * sum(members)
    return result
