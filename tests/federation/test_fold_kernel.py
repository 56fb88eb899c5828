"""The compiled FedAvg fold must give the NumPy loop's sums, for both accumulators and any layout."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.federation.strategies import kernels


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fold_matches_the_numpy_loop(dtype: type) -> None:
    rng = np.random.default_rng(7)
    size = 3 * kernels.CHUNK + 11  # several chunks and a ragged tail
    fast, slow = np.zeros(size, dtype), np.zeros(size, dtype)
    for _ in range(5):
        x = rng.standard_normal(size, dtype=np.float32)
        w = float(rng.integers(1, 5000))
        kernels.fold_into(fast, x, w)
        kernels.numpy_fold_into(slow, x, w)
    np.testing.assert_array_equal(fast, slow)


def test_fold_takes_read_only_and_shaped_updates() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    read_only = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(3, 4)
    acc = np.zeros((3, 4))
    kernels.fold_into(acc, read_only, 2.0)
    kernels.fold_into(acc, x.T.copy().T, 0.5)  # Fortran-ordered view of the same values
    np.testing.assert_array_equal(acc, 2.5 * x.astype(np.float64))


def test_backend_names_what_runs() -> None:
    assert kernels.backend() in {"numba", "numpy"}
