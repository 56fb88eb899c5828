"""A real trained model, built once per session (small and fast)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def trained() -> Any:
    from bastion.data.builtin import load_dataset
    from bastion.ml.train import train

    dataset = load_dataset("breast_cancer")
    return dataset, train("alzheimer_classifier", dataset, {"estimator": "logistic_regression"})
