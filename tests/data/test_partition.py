"""IID and Dirichlet partitions: complete, disjoint, deterministic, and skewed as alpha says."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from bastion.data.partition import dirichlet, iid, label_counts, partition, split_arrays
from bastion.errors import Invalid


def _is_exact_cover(parts: list[np.ndarray], n: int) -> bool:
    joined = np.concatenate(parts)
    return len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


def test_iid_is_a_balanced_exact_cover() -> None:
    parts = iid(1797, 10, seed=0)
    assert _is_exact_cover(parts, 1797)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_iid_keeps_label_mix_close_to_global() -> None:
    _, y = load_digits(return_X_y=True)
    counts = label_counts(y, iid(len(y), 5, seed=2), 10)
    share = counts / counts.sum(axis=1, keepdims=True)
    assert np.abs(share - np.bincount(y) / len(y)).max() < 0.06


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partitions_are_deterministic_per_seed(scheme: Literal["iid", "dirichlet"]) -> None:
    _, y = load_digits(return_X_y=True)
    a = partition(y, 8, scheme, alpha=0.3, seed=11)
    b = partition(y, 8, scheme, alpha=0.3, seed=11)
    c = partition(y, 8, scheme, alpha=0.3, seed=12)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize("alpha", [0.05, 0.5, 100.0])
def test_dirichlet_is_an_exact_cover_with_min_size(alpha: float) -> None:
    _, y = load_digits(return_X_y=True)
    parts = dirichlet(y, 10, alpha, seed=0, min_size=10)
    assert _is_exact_cover(parts, len(y))
    assert min(len(p) for p in parts) >= 10


def _mean_tv_from_global(y: np.ndarray, parts: list[np.ndarray]) -> float:
    counts = label_counts(y, parts, int(y.max()) + 1).astype(float)
    share = counts / counts.sum(axis=1, keepdims=True)
    glob = np.bincount(y) / len(y)
    return float(0.5 * np.abs(share - glob).sum(axis=1).mean())


def test_small_alpha_skews_labels_and_large_alpha_does_not() -> None:
    _, y = load_digits(return_X_y=True)
    skewed = _mean_tv_from_global(y, dirichlet(y, 10, 0.1, seed=0))
    mild = _mean_tv_from_global(y, dirichlet(y, 10, 1000.0, seed=0))
    assert skewed > 0.5 > 0.1 > mild


def test_binary_dataset_and_split_arrays() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    parts = partition(y, 4, "dirichlet", alpha=0.5, seed=3)
    sites = split_arrays(X, y, parts)
    assert sum(len(sy) for _, sy in sites) == len(y)
    for (sx, sy), p in zip(sites, parts, strict=True):
        assert np.array_equal(sx, X[p]) and np.array_equal(sy, y[p])


def test_bad_arguments() -> None:
    y = np.array([0, 1, 0, 1])
    with pytest.raises(Invalid):
        iid(3, 4)
    with pytest.raises(Invalid):
        iid(10, 0)
    with pytest.raises(Invalid):
        dirichlet(y, 2, 0.0)
    with pytest.raises(Invalid):
        dirichlet(y.reshape(2, 2), 2, 1.0)
    with pytest.raises(Invalid):
        partition(y, 2, "shards")  # type: ignore[arg-type]
    with pytest.raises(Invalid, match="could not give"):
        dirichlet(np.zeros(20, int), 4, 0.01, min_size=5, max_tries=3)
    with pytest.raises(Invalid):
        split_arrays(np.zeros((3, 2)), np.zeros(4), [])
