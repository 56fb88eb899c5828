"""The held-out split every metric is measured on; deterministic in ``(dataset, test_size, seed)``.

Classification splits are stratified; when the dataset has groups (one subject's several visits)
no group straddles the split, so a model is never scored on a subject it saw during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bastion.data.dataset import Dataset
from bastion.errors import Invalid

MIN_SAMPLES = 10


@dataclass(frozen=True)
class Split:
    train_idx: np.ndarray
    test_idx: np.ndarray
    grouped: bool

    def train(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        return dataset.X[self.train_idx], dataset.y[self.train_idx]

    def test(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        return dataset.X[self.test_idx], dataset.y[self.test_idx]


def _group_split(dataset: Dataset, test_size: float, seed: int) -> Split | None:
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    assert dataset.groups is not None
    n_splits = max(2, round(1.0 / test_size))
    n_groups = len(np.unique(dataset.groups))
    if n_groups < n_splits or n_groups == dataset.n_samples:
        return None  # too few groups, or one row per group: a plain split is the same and faster
    if dataset.task == "classification":
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, test_idx = next(splitter.split(dataset.X, dataset.y, dataset.groups))
    else:
        shuffle = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train_idx, test_idx = next(shuffle.split(dataset.X, dataset.y, dataset.groups))
    if dataset.task == "classification" and len(np.unique(dataset.y[train_idx])) < dataset.n_classes:
        return None
    return Split(np.sort(train_idx), np.sort(test_idx), grouped=True)


def held_out_split(dataset: Dataset, test_size: float = 0.2, seed: int = 0) -> Split:
    """Indices of the training and held-out rows; Invalid when the data cannot support a fair split."""
    from sklearn.model_selection import train_test_split

    n = dataset.n_samples
    if n < MIN_SAMPLES:
        raise Invalid(f"the dataset has {n} rows; at least {MIN_SAMPLES} are needed to train and evaluate")
    if not 0.0 < test_size < 1.0:
        raise Invalid("test_size must be between 0 and 1")
    stratify = None
    if dataset.task == "classification":
        assert dataset.target_names is not None
        counts = np.bincount(dataset.y, minlength=dataset.n_classes)
        rare = [dataset.target_names[i] for i, c in enumerate(counts) if c < 2]
        if rare:
            raise Invalid(
                f"classes with fewer than 2 rows cannot be split for evaluation: {', '.join(rare[:10])}"
            )
        if round(n * test_size) < dataset.n_classes or n - round(n * test_size) < dataset.n_classes:
            raise Invalid(
                f"{n} rows are too few to hold out every one of {dataset.n_classes} classes; "
                "add rows or raise test_size"
            )
        stratify = dataset.y
    if dataset.groups is not None:
        grouped = _group_split(dataset, test_size, seed)
        if grouped is not None:
            return grouped
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=test_size, random_state=seed, stratify=stratify
    )
    return Split(np.sort(train_idx), np.sort(test_idx), grouped=False)
