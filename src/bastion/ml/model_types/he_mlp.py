"""``he_mlp``: a small MLP with polynomial activations, trained so it can be evaluated under CKKS.

Same training loop as ``adaptive_neural_net`` (adaptive learning rate, early stopping, optional
DP-SGD), but the activation is a degree-2 polynomial and the shape is bounded so the encrypted
circuit stays shallow: each hidden layer costs two rescaling levels (affine + square), the output
layer one, so 1 hidden layer = depth 3 (N = 16384), 2 hidden layers = depth 5 (N = 16384).
Dropout defaults to 0: squares amplify the noise dropout injects.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from bastion.ml.base import FitContext, FitOutput, Progress
from bastion.ml.model_types import adaptive_neural_net

DESCRIPTION = (
    "PyTorch MLP with polynomial (square or 0.125x^2+0.5x+0.25) activations for encrypted (CKKS) "
    "inference; at most 2 hidden layers of width <= 64"
)
TASKS = ("classification", "regression")


class Params(adaptive_neural_net.Params):
    hidden_layers: list[int] = Field(
        default_factory=lambda: [16], min_length=1, max_length=2, description="Hidden layer widths"
    )
    activation: Literal["square", "poly"] = "poly"  # type: ignore[assignment]
    dropout: float = Field(0.0, ge=0.0, le=0.5)
    learning_rate: float = Field(5e-3, gt=0.0, le=1.0, description="Initial learning rate")

    @field_validator("hidden_layers")
    @classmethod
    def _narrow(cls, v: list[int]) -> list[int]:
        if any(w < 1 or w > 64 for w in v):
            raise ValueError("each hidden layer width must be within 1..64 for encrypted inference")
        return v


def fit(
    X: np.ndarray, y: np.ndarray, ctx: FitContext, params: Params, progress: Progress, seed: int
) -> FitOutput:
    return adaptive_neural_net.fit(X, y, ctx, params, progress, seed)


def estimate_seconds(n_samples: int, n_features: int, params: Params) -> float:
    return adaptive_neural_net.estimate_seconds(n_samples, n_features, params)
