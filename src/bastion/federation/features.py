"""A federation's declared features: how every site turns its CSV into model inputs, and what the
registry needs to predict with the global model on raw rows.

The coordinator declares each column once (``numeric``, ``categorical`` with its levels, or ``drop``
for free text and identifiers, which never become features), the label column and the class names.
Numeric columns are standardised with a mean and scale *pooled from aggregate statistics* the sites
computed locally (``bastion fl feature-stats``: per column the count, sum and sum of squares; never a
row). The pooled statistics are fixed at creation and signed into every global model's config, so all
sites and the registry encode a row identically. Categorical columns are one-hot encoded in the
declared order; an unknown level encodes as all zeros at a site (prediction refuses it by name).

The encoding is exactly the job models' (``bastion.ml.model_types.mlp_net.Preprocessing`` over
``bastion.ml.features.FeatureSpec``), so a global model's registry version predicts, quantizes and
downloads like any job's model.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.errors import Invalid

MIN_ROWS_PER_SITE = 5  # statistics over fewer rows come too close to disclosing a row


class ColumnDecl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["numeric", "categorical", "drop"] = "numeric"
    categories: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _levels(self) -> ColumnDecl:
        if self.kind == "categorical" and len(set(self.categories)) != len(self.categories or [0]):
            raise ValueError(f"categorical column {self.name!r} needs distinct, non-empty categories")
        if self.kind != "categorical" and self.categories:
            raise ValueError(f"only categorical columns take categories ({self.name!r})")
        return self


class ColumnStats(BaseModel):
    """One site's aggregate over one numeric column: what it may share, instead of rows."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=MIN_ROWS_PER_SITE)
    sum: float = Field(allow_inf_nan=False)
    sumsq: float = Field(ge=0, allow_inf_nan=False)


class FeatureDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnDecl] = Field(min_length=1, max_length=10_000)
    label: str = Field(min_length=1, max_length=200)
    classes: list[str] = Field(min_length=2, max_length=1000)
    site_statistics: list[dict[str, ColumnStats]] = Field(
        default_factory=list,
        max_length=10_000,
        description="per site, per numeric column: {n, sum, sumsq} from `bastion fl feature-stats`",
    )
    # Filled at validation from site_statistics: the pooled mean and scale per numeric column.
    mean: dict[str, float] = Field(default_factory=dict)
    scale: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _pool(self) -> FeatureDeclaration:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or self.label in names:
            raise ValueError("feature columns must be distinct and must not include the label")
        numeric = [c.name for c in self.columns if c.kind == "numeric"]
        for site in self.site_statistics:
            unknown = set(site) - set(numeric)
            if unknown:
                raise ValueError(f"statistics for columns that are not numeric features: {sorted(unknown)}")
        if self.site_statistics:
            for name in numeric:
                parts = [s[name] for s in self.site_statistics if name in s]
                n = sum(p.n for p in parts)
                if n == 0:
                    raise ValueError(f"no site sent statistics for numeric column {name!r}")
                mean = sum(p.sum for p in parts) / n
                var = max(0.0, sum(p.sumsq for p in parts) / n - mean * mean)
                self.mean[name] = mean
                self.scale[name] = math.sqrt(var) if var > 1e-24 else 1.0
        missing = [n for n in numeric if n not in self.mean or n not in self.scale]
        if missing:
            raise ValueError(
                f"numeric columns need a pooled mean and scale: send site_statistics (missing {missing[:5]})"
            )
        if any(s <= 0 or not math.isfinite(s) for s in self.scale.values()):
            raise ValueError("scales must be positive")
        return self

    @property
    def features(self) -> list[ColumnDecl]:
        return [c for c in self.columns if c.kind != "drop"]

    @property
    def encoded_width(self) -> int:
        return sum(len(c.categories) if c.kind == "categorical" else 1 for c in self.features)

    def model_config_part(self) -> dict[str, Any]:
        """FeatureSpec + Preprocessing, as the registry's loader reads them (bastion.ml.serialize)."""
        fill: list[float] = []
        onehot: dict[int, int] = {}
        mean: list[float] = []
        scale: list[float] = []
        for j, col in enumerate(self.features):
            if col.kind == "categorical":
                fill.append(-1.0)  # a missing level encodes as all zeros
                onehot[j] = len(col.categories)
                mean += [0.0] * len(col.categories)
                scale += [1.0] * len(col.categories)
            else:
                fill.append(self.mean[col.name])  # missing numbers impute to the pooled mean
                mean.append(self.mean[col.name])
                scale.append(self.scale[col.name])
        return {
            "feature_names": [c.name for c in self.features],
            "categories": {c.name: list(c.categories) for c in self.features if c.kind == "categorical"},
            "dropped_columns": [c.name for c in self.columns if c.kind == "drop"],
            "task": "classification",
            "classes": list(self.classes),
            "preprocessing": {"fill": fill, "onehot": onehot, "mean": mean, "scale": scale},
        }

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw rows (by column name, strings allowed) to standardised model inputs (float32)."""
        from bastion.ml.features import FeatureSpec
        from bastion.ml.model_types.mlp_net import Preprocessing

        part = self.model_config_part()
        spec = FeatureSpec.from_config(part)
        levels = spec.categories
        cleaned = [
            {c.name: _clean(row.get(c.name), levels.get(c.name)) for c in self.features} for row in rows
        ]
        return Preprocessing.model_validate(part["preprocessing"]).transform(spec.matrix(cleaned))

    def labels(self, values: Sequence[Any]) -> np.ndarray:
        out = []
        for v in values:
            text = str(v).strip()
            if text in self.classes:
                out.append(self.classes.index(text))
            else:
                raise Invalid(f"label {text!r} is not one of the declared classes {self.classes[:10]}")
        return np.asarray(out, dtype=np.int64)


def _clean(value: Any, levels: list[str] | None) -> Any:
    """Empty cells are missing; at a site an unknown level is missing too (all zeros)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if levels is not None:
        text = str(value).strip()
        return text if text in levels else None
    return value


def read_declared_csv(path: Path, decl: FeatureDeclaration, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A site CSV read by column name under the declaration (extra columns are ignored)."""
    rows = _csv_rows(path, max_bytes)
    header = set(rows[0]) if rows else set()
    needed = [c.name for c in decl.features] + [decl.label]
    missing = [n for n in needed if n not in header]
    if missing:
        raise Invalid(f"{path.name} lacks the declared columns {missing[:10]}")
    return decl.encode_rows(rows), decl.labels([r[decl.label] for r in rows])


def site_statistics(path: Path, numeric: Sequence[str], max_bytes: int) -> dict[str, dict[str, float]]:
    """What a site shares before a federation is created: per numeric column n, sum, sum of squares."""
    rows = _csv_rows(path, max_bytes)
    out: dict[str, dict[str, float]] = {}
    for name in numeric:
        values = []
        for r in rows:
            try:
                x = float(r.get(name) or "nan")
            except ValueError:
                raise Invalid(f"column {name!r} must hold numbers") from None
            if math.isfinite(x):
                values.append(x)
        if len(values) < MIN_ROWS_PER_SITE:
            raise Invalid(f"column {name!r} has fewer than {MIN_ROWS_PER_SITE} values: too few to share")
        arr = np.asarray(values)
        out[name] = {"n": int(arr.size), "sum": float(arr.sum()), "sumsq": float((arr * arr).sum())}
    return out


def _csv_rows(path: Path, max_bytes: int) -> list[dict[str, str]]:
    if path.stat().st_size > max_bytes:
        raise Invalid(f"{path.name} is larger than {max_bytes} bytes")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in csv.DictReader(fh)]
    if not rows:
        raise Invalid(f"{path.name} needs a header row and at least one data row")
    return rows
