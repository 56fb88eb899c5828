"""A site's local data, from a built-in source or a file, split the same way at every site.

Built-in sources (those marked ``federated`` in :data:`bastion.data.builtin.BUILTINS`, named
``builtin:<name>``: digits, breast_cancer, wine, mri) are split once, deterministically from ``split_seed``, into a training part that sites partition among
themselves (``--partition i/n``) and a holdout that only the coordinator's server-side evaluation uses.
Tabular built-ins are standardized with statistics of that training part, so every site and the server
transform features identically. File sources (a ``.csv`` or ``.npz`` file, or an image folder
``root/<class>/<image>``) are the site's own data: no holdout is cut, and features are used as given.
Nothing here unpickles: ``.npz`` is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.data.builtin import BUILTINS, FEDERATED_BUILTINS, MRI_PER_CLASS
from bastion.errors import Invalid

TABULAR_BUILTINS = tuple(n for n in FEDERATED_BUILTINS if BUILTINS[n].tabular)
MRI_BUILTIN = "mri"
LABEL_COLUMNS = ("target", "label", "y", "class")
MAX_CSV_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class SiteData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    source: str

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    @property
    def num_val(self) -> int:
        return len(self.y_val)


def parse_partition(text: str) -> tuple[int, int]:
    """``"i/n"`` (1-based: ``1/5`` is the first of five sites) -> ``(i, n)``."""
    try:
        left, right = text.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise Invalid(f"partition must look like i/n, e.g. 1/5; got {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise Invalid(f"partition {text!r} is out of range: i must be between 1 and n")
    return index, count


def check_source(source: str) -> None:
    """Refuse an unknown ``builtin:`` name early (the coordinator's server-side evaluation)."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in FEDERATED_BUILTINS:
            known = ", ".join(f"builtin:{n}" for n in FEDERATED_BUILTINS)
            raise Invalid(f"unknown built-in data source {source!r}; choose one of {known}")


def _split_index(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * fraction)
    return np.sort(order[cut:]), np.sort(order[:cut])


def _builtin(
    name: str, model: dict[str, Any], holdout_fraction: float, split_seed: int, part: str
) -> tuple[np.ndarray, np.ndarray]:
    if name == MRI_BUILTIN:
        from bastion.data.mri import synthetic_mri

        X, y = synthetic_mri(MRI_PER_CLASS, size=int(model.get("image_size", 128)), seed=split_seed)
        train, test = _split_index(len(y), holdout_fraction, split_seed)
        idx = train if part == "train" else test
        return X[idx], y[idx]
    X, y, _names, _classes, mean, std, (train, test) = _standardized(name, holdout_fraction, split_seed)
    X = (X - mean) / std
    idx = train if part == "train" else test
    return X[idx].astype(np.float32), np.asarray(y[idx], dtype=np.int64)


def _standardized(name: str, holdout_fraction: float, split_seed: int) -> Any:
    from bastion.data.builtin import sklearn_dataset

    ds = sklearn_dataset(name)
    X = np.asarray(ds.X, dtype=np.float64)
    train, test = _split_index(len(ds.y), holdout_fraction, split_seed)
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0)
    std[std == 0] = 1.0
    return X, ds.y, ds.feature_names, ds.target_names, mean, std, (train, test)


def builtin_preprocessing(source: str, evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """For a tabular built-in: feature names, classes and the standardisation every site applied,
    in the registry's config shape (so a global model predicts on raw rows); None for images."""
    name = source.split(":", 1)[1] if source.startswith("builtin:") else ""
    if name not in TABULAR_BUILTINS:
        return None
    _X, _y, names, classes, mean, std, _ = _standardized(
        name, float(evaluation.get("holdout_fraction", 0.2)), int(evaluation.get("split_seed", 0))
    )
    return {
        "feature_names": list(names),
        "categories": {},
        "task": "classification",
        "classes": [str(c) for c in classes],
        "preprocessing": {
            "fill": mean.tolist(),
            "onehot": {},
            "mean": mean.tolist(),
            "scale": std.tolist(),
        },
    }


def holdout(source: str, model: dict[str, Any], evaluation: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The coordinator's test set: the part of a built-in source no site trains on."""
    check_source(source)
    if not source.startswith("builtin:"):
        raise Invalid("server-side evaluation needs a built-in source")
    return _builtin(
        source.split(":", 1)[1],
        model,
        float(evaluation.get("holdout_fraction", 0.2)),
        int(evaluation.get("split_seed", 0)),
        "test",
    )


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.stat().st_size > MAX_CSV_BYTES:
        raise Invalid(f"{path.name} is larger than {MAX_CSV_BYTES} bytes")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise Invalid(f"{path.name} needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    label = next((header.index(c) for c in LABEL_COLUMNS if c in header), len(header) - 1)
    try:
        table = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError:
        raise Invalid(f"{path.name} must hold numbers only (encode categories before federating)") from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise Invalid(f"{path.name} has rows of different lengths")
    y = table[:, label]
    if not np.all(y == np.round(y)):
        raise Invalid(f"{path.name}: the label column {header[label]!r} must hold integer class codes")
    return np.delete(table, label, axis=1).astype(np.float32), y.astype(np.int64)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        xs = next((k for k in ("X", "x", "features") if k in data.files), None)
        ys = next((k for k in ("y", "labels", "target") if k in data.files), None)
        if xs is None or ys is None:
            raise Invalid(f"{path.name} must contain arrays named X and y")
        X, y = np.asarray(data[xs]), np.asarray(data[ys])
    if X.dtype.kind not in "uif" or y.dtype.kind not in "ui":
        raise Invalid(f"{path.name}: X must be numeric and y integer class codes")
    return X.astype(np.float32), y.astype(np.int64)


def _load_file(
    source: str, model: dict[str, Any], features: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    path = Path(source).expanduser()
    if path.is_dir():
        from bastion.data.mri import load_image_folder

        X, y, _names = load_image_folder(path, size=int(model.get("image_size", 128)))
        return X, y
    if not path.is_file():
        raise Invalid(f"data source {source!r} is neither a built-in name, a file nor a folder")
    suffix = path.suffix.lower()
    if suffix == ".csv" and features:
        from bastion.federation.features import FeatureDeclaration, read_declared_csv

        return read_declared_csv(path, FeatureDeclaration.model_validate(features), MAX_CSV_BYTES)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".npz":
        return _read_npz(path)
    raise Invalid(f"unsupported data file {path.name!r}: use .csv, .npz or an image folder")


def _check_fit(X: np.ndarray, y: np.ndarray, model: dict[str, Any]) -> None:
    if len(X) == 0:
        raise Invalid("the site has no samples")
    if model.get("type") == "tabular_mlp" and (X.ndim != 2 or X.shape[1] != model.get("in_features")):
        raise Invalid(
            f"the data has {X.shape[1:]} features per row; the federation's model expects {model.get('in_features')}"
        )
    classes = int(model.get("num_classes", 4))
    if y.min() < 0 or y.max() >= classes:
        raise Invalid(f"labels must be class codes 0..{classes - 1} for this federation's model")


def load_site_data(
    source: str,
    model: dict[str, Any],
    evaluation: dict[str, Any],
    *,
    partition: tuple[int, int] | None = None,
    alpha: float | None = None,
    features: dict[str, Any] | None = None,
) -> SiteData:
    """This site's training and validation arrays for the federation's model and evaluation config."""
    from bastion.data.partition import dirichlet, iid

    split_seed = int(evaluation.get("split_seed", 0))
    if source.startswith("builtin:"):
        check_source(source)
        X, y = _builtin(
            source.split(":", 1)[1],
            model,
            float(evaluation.get("holdout_fraction", 0.2)),
            split_seed,
            "train",
        )
    else:
        X, y = _load_file(source, model, features)
    if partition is not None:
        index, count = partition
        parts = dirichlet(y, count, alpha, seed=split_seed) if alpha else iid(len(y), count, seed=split_seed)
        X, y = X[parts[index - 1]], y[parts[index - 1]]
    _check_fit(X, y, model)
    fraction = float(evaluation.get("local_validation_fraction", 0.0))
    train, val = _split_index(len(y), fraction, split_seed + 1 + (partition[0] if partition else 0))
    if len(train) == 0:
        train, val = val, train
    return SiteData(X[train], y[train], X[val], y[val], source)
