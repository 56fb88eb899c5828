"""Split one dataset across simulated sites: IID, or label-skewed with a Dirichlet prior.

Real hospitals never see the same label mix, so federated methods must be tested on non-IID splits.
``dirichlet`` follows Hsu et al. 2019 / Yurochkin et al. 2019: for each class, site shares are drawn
from Dir(alpha) (small alpha = strong skew, large alpha -> IID), sites already holding their fair
share get no more, and the draw is repeated until every site has ``min_size`` samples. Both functions
return index arrays, are deterministic for a given seed, and assign every sample exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from bastion.errors import Invalid


def _check_clients(num_samples: int, num_clients: int, min_size: int) -> None:
    if num_clients < 1:
        raise Invalid("num_clients must be at least 1")
    if num_samples < num_clients * min_size:
        raise Invalid(f"{num_samples} samples cannot give {num_clients} sites {min_size} sample(s) each")


def iid(num_samples: int, num_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffle and deal out as evenly as possible (sizes differ by at most one)."""
    _check_clients(num_samples, num_clients, 1)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int = 0,
    *,
    min_size: int = 1,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Label-skewed split: per class, site shares ~ Dir(alpha); retried until each site has ``min_size``."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise Invalid("labels must be one-dimensional")
    if not alpha > 0:
        raise Invalid("alpha must be positive")
    _check_clients(len(y), num_clients, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    fair_share = len(y) / num_clients
    for _ in range(max_tries):
        buckets: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        sizes = np.zeros(num_clients, np.int64)
        for cls in classes:
            idx = rng.permutation(np.flatnonzero(y == cls))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            shares = shares * (sizes < fair_share)
            if shares.sum() == 0:
                shares = np.full(num_clients, 1.0 / num_clients)
            shares = shares / shares.sum()
            cuts = (np.cumsum(shares) * len(idx)).astype(np.int64)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                buckets[k].append(chunk)
                sizes[k] += len(chunk)
        if sizes.min() >= min_size:
            return [np.sort(np.concatenate(b)) if b else np.empty(0, np.int64) for b in buckets]
    raise Invalid(
        f"could not give every site {min_size} samples with alpha={alpha}; use fewer sites or a larger alpha"
    )


def partition(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    scheme: Literal["iid", "dirichlet"] = "iid",
    *,
    alpha: float = 0.5,
    seed: int = 0,
    min_size: int = 1,
) -> list[np.ndarray]:
    """One entry point for both schemes, as named in a federation's simulation config."""
    if scheme == "iid":
        return iid(len(labels), num_clients, seed)
    if scheme == "dirichlet":
        return dirichlet(labels, num_clients, alpha, seed, min_size=min_size)
    raise Invalid(f"unknown partition scheme {scheme!r}; use 'iid' or 'dirichlet'")


def split_arrays(
    X: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Apply index arrays to features and labels: one ``(X, y)`` per site."""
    if len(X) != len(y):
        raise Invalid("features and labels differ in length")
    return [(X[p], y[p]) for p in parts]


def label_counts(
    labels: Sequence[int] | np.ndarray, parts: Sequence[np.ndarray], num_classes: int
) -> np.ndarray:
    """(sites x classes) count matrix, to report or test how skewed a split is."""
    y = np.asarray(labels)
    return np.stack([np.bincount(y[p], minlength=num_classes) for p in parts])
