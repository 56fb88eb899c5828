"""Models trained once per session for the encrypted-inference tests (small and quick)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def cancer() -> Any:
    from bastion.data.builtin import load_dataset

    return load_dataset("breast_cancer")


@pytest.fixture(scope="session")
def logistic(cancer: Any) -> Any:
    from bastion.ml.train import train

    return train(
        "alzheimer_classifier", cancer, {"estimator": "logistic_regression", "importance_repeats": 0}
    )


@pytest.fixture(scope="session")
def poly_mlp(cancer: Any) -> Any:
    from bastion.ml.train import train

    return train("he_mlp", cancer, {"hidden_layers": [8], "epochs": 25, "importance_repeats": 0})


def loaded(result: Any) -> Any:
    from bastion.ml.serialize import load_model

    return load_model(result.model_bytes, result.model_format, result.model_config)
