"""``tabular_regressor``: imputer + scaler (+ one-hot for categories) + a selectable regressor."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from bastion.ml.base import FitContext, FitOutput, Progress
from bastion.ml.params import CommonParams

DESCRIPTION = (
    "Tabular regressor (scikit-learn): median imputation, scaling, one-hot categories, then "
    "ridge, random forest or gradient boosting"
)
TASKS = ("regression",)
ESTIMATORS = ("ridge", "random_forest", "gradient_boosting")

Member = Literal["ridge", "random_forest", "gradient_boosting"]
MEMBERS: tuple[Member, ...] = ("ridge", "random_forest", "gradient_boosting")


class Params(CommonParams):
    estimator: Literal["ridge", "random_forest", "gradient_boosting", "voting", "stacking"] = Field(
        "gradient_boosting",
        description="Which regressor follows the preprocessing; voting and stacking combine ensemble_members",
    )
    ensemble_members: list[Member] = Field(
        default_factory=lambda: list(MEMBERS),
        min_length=2,
        max_length=3,
        description="Estimators a voting (mean) or stacking (ridge on top) ensemble combines",
    )
    alpha: float = Field(1.0, ge=0.0, le=1e4, description="L2 penalty (ridge)")
    n_estimators: int = Field(100, ge=1, le=2000, description="Trees (random_forest, gradient_boosting)")
    max_depth: int | None = Field(
        None, ge=1, le=64, description="Tree depth limit; None = unlimited for forests, 3 for boosting"
    )
    min_samples_leaf: int = Field(1, ge=1, le=1000, description="Smallest leaf (tree models)")
    learning_rate: float = Field(
        0.05, gt=0.0, le=1.0, description="Shrinkage (gradient_boosting); small data overfits at 0.1"
    )


def make_estimator(params: Params, seed: int) -> Any:
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        RandomForestRegressor,
        StackingRegressor,
        VotingRegressor,
    )
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    from bastion.ml.model_types.sk_common import combine, tree_ensemble

    if params.estimator in ("voting", "stacking"):
        return combine(
            params, seed, make_estimator, VotingRegressor, StackingRegressor, Ridge(alpha=1.0), KFold
        )
    if params.estimator == "ridge":
        return Ridge(alpha=params.alpha)
    return tree_ensemble(params, seed, RandomForestRegressor, GradientBoostingRegressor)


def fit(
    X: np.ndarray, y: np.ndarray, ctx: FitContext, params: Params, progress: Progress, seed: int
) -> FitOutput:
    from bastion.ml.model_types.sk_common import SklearnModel, build_pipeline, fit_staged

    pipeline = build_pipeline(ctx.spec, make_estimator(params, seed))
    fit_staged(pipeline, X, y, progress)
    return FitOutput(model=SklearnModel(pipeline, "regression"), config={"estimator": params.estimator})


def estimate_seconds(n_samples: int, n_features: int, params: Params) -> float:
    """Rough seconds on one busy CPU core (constants fitted to runs on a shared 2-core VM).

    Includes process start-up and imports, evaluation, permutation importance and serialization.
    """
    from bastion.ml.model_types.sk_common import STARTUP_SECONDS, ensemble_seconds, tree_cost

    n = n_samples * (1.0 - params.test_size)
    if params.estimator in ("voting", "stacking"):
        return ensemble_seconds(estimate_seconds, n_samples, n_features, params)
    if params.estimator == "ridge":
        return STARTUP_SECONDS + 1e-8 * n * n_features * n_features
    if params.estimator == "random_forest":
        # Regression forests consider every feature at each split.
        fit = params.n_estimators * 1.5e-7 * tree_cost(int(n), n_features)
        return STARTUP_SECONDS + 2.0 * fit
    fit = params.n_estimators * 2.2e-7 * n * n_features * (params.max_depth or 3)
    return STARTUP_SECONDS + 1.6 * fit
