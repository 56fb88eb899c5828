"""What a model type's ``fit`` receives and returns, so ``train`` can drive every type alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bastion.data.dataset import Task
from bastion.ml.features import FeatureSpec

Progress = Callable[[float, dict[str, Any]], None]


def no_progress(fraction: float, event: dict[str, Any]) -> None:
    """Progress sink used when the caller does not watch."""


@dataclass(frozen=True)
class FitContext:
    spec: FeatureSpec
    task: Task
    classes: list[str] | None

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0


class FittedModel(Protocol):
    """A trained model working on encoded float matrices (categorical columns as codes)."""

    task: Task

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class codes for classifiers, values for regressors."""
        ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, one column per class code; regressors raise Invalid."""
        ...


@dataclass
class FitOutput:
    """``metrics`` are added to the job's metrics as they are (e.g. the ``dp`` block of a DP-SGD run)."""

    model: FittedModel
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
