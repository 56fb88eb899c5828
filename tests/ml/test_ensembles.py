"""Voting and stacking ensembles over the existing estimators, as model params."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.data.builtin import load_dataset
from bastion.errors import Invalid
from bastion.ml.serialize import load_model
from bastion.ml.train import train

QUICK = {"n_estimators": 20, "importance_repeats": 0}


@pytest.mark.parametrize(
    ("model_type", "dataset", "estimator", "metric", "floor"),
    [
        ("alzheimer_classifier", "breast_cancer", "voting", "accuracy", 0.9),
        ("alzheimer_classifier", "breast_cancer", "stacking", "accuracy", 0.9),
        ("tabular_regressor", "diabetes", "voting", "r2", 0.2),
        ("tabular_regressor", "diabetes", "stacking", "r2", 0.2),
    ],
)
def test_ensembles_train_serialize_and_reload(
    model_type: str, dataset: str, estimator: str, metric: str, floor: float
) -> None:
    data = load_dataset(dataset)
    result = train(model_type, data, {**QUICK, "estimator": estimator})
    assert result.metrics[metric] > floor
    assert result.model_config["params"]["estimator"] == estimator
    predictor = load_model(result.model_bytes, result.model_format, result.model_config)
    rows = data.X[:5]
    assert np.asarray(predictor.predict(rows)).shape[0] == 5


def test_soft_voting_averages_the_members() -> None:
    from bastion.ml.model_types.alzheimer_classifier import Params, make_estimator

    voter = make_estimator(
        Params(estimator="voting", ensemble_members=["logistic_regression", "random_forest"]), 0
    )
    assert voter.voting == "soft" and [name for name, _ in voter.estimators] == [
        "logistic_regression",
        "random_forest",
    ]


def test_ensemble_members_are_checked() -> None:
    with pytest.raises(Invalid):
        train(
            "alzheimer_classifier",
            load_dataset("wine"),
            {"estimator": "voting", "ensemble_members": ["svm", "ridge"]},
        )
    with pytest.raises(Invalid):
        train(
            "alzheimer_classifier",
            load_dataset("wine"),
            {"estimator": "stacking", "ensemble_members": ["random_forest"]},
        )


def test_ensemble_cost_estimates_add_up_their_members() -> None:
    from bastion.ml.model_types import estimate_seconds

    members = ["logistic_regression", "random_forest"]
    one = [estimate_seconds("alzheimer_classifier", 569, 30, {"estimator": m}) for m in members]
    voting = estimate_seconds(
        "alzheimer_classifier", 569, 30, {"estimator": "voting", "ensemble_members": members}
    )
    stacking = estimate_seconds(
        "alzheimer_classifier", 569, 30, {"estimator": "stacking", "ensemble_members": members}
    )
    assert max(one) < voting < stacking
