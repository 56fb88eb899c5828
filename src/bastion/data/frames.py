"""Turn a pandas DataFrame (uploaded, Kaggle or synthetic) into a :class:`Dataset`.

One place decides what is a category, what is a number and what the task is, so every source is
treated alike and the trained model can map request rows back onto the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.data.dataset import TASKS, Dataset, Task
from bastion.errors import Invalid

if TYPE_CHECKING:
    import pandas as pd

MAX_CATEGORY_LEVELS = 50
MAX_CLASSES = 100
# An integer target with at most this many distinct values is read as class labels.
MAX_INTEGER_CLASSES = 20


def _levels(values: Iterable[Any]) -> list[str]:
    """Distinct labels as strings, numbers in numeric order before other labels in text order."""
    numeric: list[tuple[float, str]] = []
    text: list[str] = []
    for v in set(values):
        s = _label(v)
        try:
            numeric.append((float(s), s))
        except ValueError:
            text.append(s)
    return [s for _, s in sorted(numeric)] + sorted(text)


def _label(value: Any) -> str:
    """A label's canonical text: 1.0 and 1 are the same class."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_numeric(col: pd.Series) -> pd.Series | None:
    """The column as float64 if every present value is a number, else None."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    if pd.api.types.is_numeric_dtype(col):
        return pd.to_numeric(col, errors="coerce").astype("float64")
    converted = pd.to_numeric(col, errors="coerce")
    if int(converted.notna().sum()) == int(col.notna().sum()):
        return converted.astype("float64")
    return None


def _holds_names(levels: list[str]) -> bool:
    """Defence in depth behind de-identification: category levels that are mostly person names."""
    import pandas as pd

    from bastion.data.freetext import NAME_COLUMN_SHARE, name_share

    return name_share(pd.Series(levels, dtype=object)) >= NAME_COLUMN_SHARE


def infer_task(y: pd.Series) -> Task:
    numeric = _as_numeric(y)
    if numeric is None:
        return "classification"
    values = numeric.to_numpy()
    if np.all(np.mod(values, 1.0) == 0) and len(np.unique(values)) <= MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


def _encode_target(y_col: pd.Series, target: str, task: Task) -> tuple[np.ndarray, list[str] | None]:
    """The target as class indices (with the class names) or as finite float64 values."""
    if task == "classification":
        labels = [_label(v) for v in y_col.tolist()]
        target_names = _levels(labels)
        if len(target_names) < 2:
            raise Invalid(f"target column {target!r} has a single class; classification needs two or more")
        if len(target_names) > MAX_CLASSES:
            raise Invalid(f"target column {target!r} has {len(target_names)} classes (max {MAX_CLASSES})")
        index = {name: i for i, name in enumerate(target_names)}
        return np.array([index[s] for s in labels], dtype=np.int64), target_names
    numeric_y = _as_numeric(y_col)
    if numeric_y is None or not np.all(np.isfinite(numeric_y.to_numpy())):
        raise Invalid(f"target column {target!r} must hold finite numbers for regression")
    return numeric_y.to_numpy(dtype=np.float64), None


def frame_to_dataset(
    frame: pd.DataFrame,
    target: str,
    *,
    task: str | None = None,
    drop: Iterable[str] = (),
    group_column: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Dataset:
    """Encode ``frame`` for training: numbers stay numbers, text becomes categorical codes.

    Rows without a target are dropped; text columns with more than ``MAX_CATEGORY_LEVELS`` distinct
    values (identifiers, free text) and empty columns are dropped and reported in ``meta``.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise Invalid("user_provided data must be a pandas DataFrame")
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise Invalid("column names must be unique")
    frame = frame.set_axis(columns, axis=1)
    if target not in columns:
        shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
        raise Invalid(f"target column {target!r} not found; columns: {shown}")
    if task is not None and task not in TASKS:
        raise Invalid(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")

    present = frame[frame[target].notna()]
    dropped_rows = len(frame) - len(present)
    if len(present) == 0:
        raise Invalid(f"target column {target!r} has no values")
    y_col = present[target]
    resolved: Task = infer_task(y_col) if task is None else task

    y, target_names = _encode_target(y_col, target, resolved)

    excluded = {target, *drop}
    if group_column is not None:
        excluded.add(group_column)
    feature_names, matrix, categories, dropped_columns = _encode_features(present, columns, excluded)
    if not feature_names:
        raise Invalid("no usable feature columns besides the target")

    groups = None
    if group_column is not None and group_column in columns:
        groups = np.array([str(g) for g in present[group_column].tolist()], dtype=object)

    info = dict(meta or {})
    info.update(
        {
            "target": target,
            "n_samples": len(present),
            "n_features": len(feature_names),
            "dropped_rows_missing_target": dropped_rows,
        }
    )
    if dropped_columns:
        info["dropped_columns"] = dropped_columns
    return Dataset(
        X=np.column_stack(matrix).astype(np.float64),
        y=y,
        feature_names=feature_names,
        target_names=target_names,
        task=resolved,
        meta=info,
        categories=categories,
        groups=groups,
    )


def _encode_features(
    present: pd.DataFrame, columns: list[str], excluded: set[str]
) -> tuple[list[str], list[np.ndarray], dict[str, list[str]], dict[str, str]]:
    """Each usable column as float values (text as category codes); the columns dropped, and why."""
    feature_names: list[str] = []
    matrix: list[np.ndarray] = []
    categories: dict[str, list[str]] = {}
    dropped_columns: dict[str, str] = {}
    for name in columns:
        if name in excluded:
            continue
        col = present[name]
        if int(col.notna().sum()) == 0:
            dropped_columns[name] = "no values"
            continue
        numeric = _as_numeric(col)
        if numeric is not None:
            values = numeric.to_numpy(dtype=np.float64, copy=True)
            values[~np.isfinite(values)] = np.nan
        else:
            mask = col.notna().to_numpy()
            labels = [_label(v) for v in col[mask].tolist()]
            levels = _levels(labels)
            if len(levels) > MAX_CATEGORY_LEVELS:
                dropped_columns[name] = f"more than {MAX_CATEGORY_LEVELS} distinct text values"
                continue
            if _holds_names(levels):  # its levels would be written into the model's config
                dropped_columns[name] = "holds person names: never a feature"
                continue
            codes = {lv: float(i) for i, lv in enumerate(levels)}
            values = np.full(len(col), np.nan)
            values[mask] = [codes[s] for s in labels]
            categories[name] = levels
        feature_names.append(name)
        matrix.append(values)
    return feature_names, matrix, categories, dropped_columns
