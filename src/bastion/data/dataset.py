"""The in-memory dataset every loader returns and every trainer accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")


@dataclass
class Dataset:
    """Features as a float matrix, so trainers never have to guess types.

    ``X`` is float64 with NaN for missing values. Categorical columns hold integer codes into
    ``categories[name]`` (the original labels, as strings). For classification ``y`` holds integer codes
    into ``target_names``; for regression ``y`` is float64 and ``target_names`` is None. ``groups``
    (optional) identifies rows that belong together (one subject's visits) so that held-out splits
    never put the same subject on both sides. ``meta`` is JSON-able and ends up in job results.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_names: list[str] | None
    task: Task
    meta: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.X.ndim != 2:
            raise ValueError("X must be a 2-D matrix")
        if self.y.shape != (self.X.shape[0],):
            raise ValueError("y must have one value per row of X")
        if len(self.feature_names) != self.X.shape[1]:
            raise ValueError("feature_names must name every column of X")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}")
        if (self.task == "classification") != (self.target_names is not None):
            raise ValueError("target_names is required for classification and absent for regression")
        unknown = set(self.categories) - set(self.feature_names)
        if unknown:
            raise ValueError(f"categories name unknown features: {sorted(unknown)}")
        if self.groups is not None and self.groups.shape != (self.X.shape[0],):
            raise ValueError("groups must have one value per row of X")

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.target_names) if self.target_names is not None else 0
