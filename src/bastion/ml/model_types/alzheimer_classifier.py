"""``alzheimer_classifier``: imputer + scaler (+ one-hot for categories) + a selectable classifier.

Named after the seeds' Alzheimer model but works on any tabular classification dataset.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from bastion.ml.base import FitContext, FitOutput, Progress
from bastion.ml.params import CommonParams

DESCRIPTION = (
    "Tabular classifier (scikit-learn): median imputation, scaling, one-hot categories, then "
    "logistic regression, random forest or gradient boosting"
)
TASKS = ("classification",)
ESTIMATORS = ("logistic_regression", "random_forest", "gradient_boosting")

Member = Literal["logistic_regression", "random_forest", "gradient_boosting"]
MEMBERS: tuple[Member, ...] = ("logistic_regression", "random_forest", "gradient_boosting")


class Params(CommonParams):
    estimator: Literal["logistic_regression", "random_forest", "gradient_boosting", "voting", "stacking"] = (
        Field(
            "random_forest",
            description="Which classifier follows the preprocessing; voting and stacking combine ensemble_members",
        )
    )
    ensemble_members: list[Member] = Field(
        default_factory=lambda: list(MEMBERS),
        min_length=2,
        max_length=3,
        description="Estimators a voting or stacking ensemble combines (each with the params above)",
    )
    voting: Literal["soft", "hard"] = Field(
        "soft", description="Voting ensemble: average probabilities or votes"
    )
    n_estimators: int = Field(200, ge=1, le=2000, description="Trees (random_forest, gradient_boosting)")
    max_depth: int | None = Field(
        None, ge=1, le=64, description="Tree depth limit; None = unlimited for forests, 3 for boosting"
    )
    min_samples_leaf: int = Field(1, ge=1, le=1000, description="Smallest leaf (tree models)")
    learning_rate: float = Field(0.1, gt=0.0, le=1.0, description="Shrinkage (gradient_boosting)")
    C: float = Field(1.0, gt=0.0, le=1e4, description="Inverse regularisation (logistic_regression)")
    max_iter: int = Field(1000, ge=10, le=10000, description="Solver iterations (logistic_regression)")
    class_weight: Literal["balanced"] | None = Field(
        None, description="'balanced' re-weights rows inversely to class frequency"
    )


def make_estimator(params: Params, seed: int) -> Any:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        RandomForestClassifier,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from bastion.ml.model_types.sk_common import combine, tree_ensemble

    if params.estimator in ("voting", "stacking"):
        final = LogisticRegression(max_iter=params.max_iter)
        voter = functools.partial(VotingClassifier, voting=params.voting)
        return combine(params, seed, make_estimator, voter, StackingClassifier, final, StratifiedKFold)
    if params.estimator == "logistic_regression":
        return LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=seed)
    return tree_ensemble(params, seed, RandomForestClassifier, GradientBoostingClassifier)


def fit(
    X: np.ndarray, y: np.ndarray, ctx: FitContext, params: Params, progress: Progress, seed: int
) -> FitOutput:
    from bastion.ml.model_types.sk_common import SklearnModel, balanced_weights, build_pipeline, fit_staged

    pipeline = build_pipeline(ctx.spec, make_estimator(params, seed))
    weights = balanced_weights(y) if params.class_weight == "balanced" else None
    fit_staged(pipeline, X, y, progress, sample_weight=weights)
    return FitOutput(
        model=SklearnModel(pipeline, "classification", ctx.n_classes),
        config={"estimator": params.estimator},
    )


def estimate_seconds(n_samples: int, n_features: int, params: Params) -> float:
    """Rough seconds on one busy CPU core (constants fitted to runs on a shared 2-core VM).

    Includes process start-up and imports, evaluation, permutation importance and serialization.
    Boosting assumes three classes (one tree per class per stage), as in the Alzheimer data.
    """
    from bastion.ml.model_types.sk_common import STARTUP_SECONDS, ensemble_seconds, tree_cost

    n = n_samples * (1.0 - params.test_size)
    if params.estimator in ("voting", "stacking"):
        return ensemble_seconds(estimate_seconds, n_samples, n_features, params)
    if params.estimator == "logistic_regression":
        fit = 2.5e-8 * n * n_features * min(params.max_iter, 200)
        return STARTUP_SECONDS + 2.0 * fit
    if params.estimator == "random_forest":
        fit = params.n_estimators * 2.6e-7 * tree_cost(int(n), max(1, int(math.sqrt(n_features))))
        return STARTUP_SECONDS + 2.5 * fit
    fit = params.n_estimators * 3 * 2.2e-7 * n * n_features * (params.max_depth or 3)
    return STARTUP_SECONDS + 1.3 * fit
