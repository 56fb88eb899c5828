"""The columns a trained model expects, and the mapping from request rows onto them.

A model is trained on a float matrix whose categorical columns hold codes; callers predict with
rows keyed by feature name and labels as text. This module is the single translation between the two,
and the place where a request naming the wrong columns is refused with a message that says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bastion.errors import Invalid

MAX_NAMES_IN_MESSAGE = 10


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:MAX_NAMES_IN_MESSAGE])
    return shown + (
        f" (+{len(names) - MAX_NAMES_IN_MESSAGE} more)" if len(names) > MAX_NAMES_IN_MESSAGE else ""
    )


@dataclass(frozen=True)
class FeatureSpec:
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, n in enumerate(self.feature_names) if n in self.categories]

    @property
    def numeric_indices(self) -> list[int]:
        return [i for i, n in enumerate(self.feature_names) if n not in self.categories]

    def to_config(self) -> dict[str, Any]:
        return {"feature_names": list(self.feature_names), "categories": dict(self.categories)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FeatureSpec:
        names = config.get("feature_names")
        cats = config.get("categories") or {}
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise Invalid("model config lacks a list of feature names")
        if len(set(names)) != len(names):
            raise Invalid("model config repeats a feature name")
        if not isinstance(cats, dict) or not all(
            k in names and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in cats.items()
        ):
            raise Invalid("model config has malformed categories")
        return cls(list(names), {k: list(v) for k, v in cats.items()})

    def matrix(self, rows: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
        """Rows (dicts keyed by feature name, or an already-encoded matrix) as a float64 matrix."""
        if isinstance(rows, np.ndarray):
            return self._check_matrix(rows)
        if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
            raise Invalid("rows must be a list of objects keyed by feature name, or a 2-D array")
        if not rows:
            raise Invalid("no rows to predict")
        expected = set(self.feature_names)
        out = np.full((len(rows), len(self.feature_names)), np.nan)
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise Invalid(f"row {r} is not an object keyed by feature name")
            keys = {str(k) for k in row}
            missing = [n for n in self.feature_names if n not in keys]
            extra = sorted(keys - expected)
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing columns: {_names(missing)}")
                if extra:
                    parts.append(f"unexpected columns: {_names(extra)}")
                raise Invalid(f"row {r}: " + "; ".join(parts), missing=missing, unexpected=extra)
            for c, name in enumerate(self.feature_names):
                out[r, c] = self._encode(name, row[name], r)
        return out

    def _encode(self, name: str, value: Any, r: int) -> float:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan
        levels = self.categories.get(name)
        if levels is not None:
            label = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
            if label not in levels:
                raise Invalid(
                    f"row {r}: column {name!r} has unknown value {label!r}; known: {_names(levels)}"
                )
            return float(levels.index(label))
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, int | float | np.integer | np.floating):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise Invalid(f"row {r}: column {name!r} must be a number") from None
        else:
            raise Invalid(f"row {r}: column {name!r} must be a number")
        return number if math.isfinite(number) else math.nan

    def _check_matrix(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise Invalid(f"expected a 2-D array with {len(self.feature_names)} columns, got shape {X.shape}")
        if X.shape[0] == 0:
            raise Invalid("no rows to predict")
        try:
            out = np.array(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise Invalid("array rows must be numeric; use objects keyed by feature name for text") from None
        out[~np.isfinite(out)] = np.nan
        for i in self.categorical_indices:
            col = out[:, i]
            present = col[~np.isnan(col)]
            n_levels = len(self.categories[self.feature_names[i]])
            if np.any((present != np.round(present)) | (present < 0) | (present >= n_levels)):
                raise Invalid(f"column {self.feature_names[i]!r} holds codes outside 0..{n_levels - 1}")
        return out
