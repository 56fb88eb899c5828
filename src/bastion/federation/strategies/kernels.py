"""The inner loop of streaming aggregation: ``acc += w * x`` with float32 ``x``, in one pass.

NumPy cannot fuse a float32 -> float64 widening, a multiply and an add: the chunked loop it needs
makes two ufunc passes (one with a casting multiply) per chunk and took 84-100 ms for 100 x 1M
float32 against 22-35 ms to read those updates once. With numba (a dependency; optional at run
time) the fold is one compiled loop that reads each update once, near memory speed; without it,
the NumPy chunked loop gives identical sums, only slower. The compiled functions are built on
first use by a tensor larger than one chunk (about 0.4 s, cached on disk when the package
directory is writable), never at import; smaller tensors always take the NumPy path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

CHUNK = 1 << 16
Fold = Callable[[np.ndarray, np.ndarray, float], None]

_lock = threading.Lock()
_compiled: dict[str, Fold] = {}


def _numpy_fold(dtype: np.dtype[Any]) -> Fold:
    def fold(acc: np.ndarray, x: np.ndarray, weight: float) -> None:
        scratch = np.empty(min(CHUNK, acc.size), dtype)
        scale = dtype.type(weight)
        for i in range(0, acc.size, CHUNK):
            j = min(i + CHUNK, acc.size)
            tmp = scratch[: j - i]
            np.multiply(x[i:j], scale, out=tmp, dtype=dtype)
            np.add(acc[i:j], tmp, out=acc[i:j])

    return fold


def _numba_fold(dtype: np.dtype[Any]) -> Fold | None:
    try:
        import numba
    except ImportError:
        return None
    acc_t = numba.float64 if dtype == np.float64 else numba.float32
    widen = np.float64 if dtype == np.float64 else np.float32
    readonly_x = numba.types.Array(numba.float32, 1, "C", readonly=True)
    signature = numba.void(acc_t[::1], readonly_x, acc_t)

    def loop(acc: np.ndarray, x: np.ndarray, weight: float) -> None:  # pragma: no cover - compiled
        for i in range(acc.shape[0]):
            acc[i] += weight * widen(x[i])

    try:
        compiled = numba.njit(signature, nogil=True, cache=True, boundscheck=False)(loop)
    except Exception:  # any compiler failure falls back to NumPy, never fails a round
        return None

    def fold(acc: np.ndarray, x: np.ndarray, weight: float) -> None:
        compiled(acc, x, weight)

    return fold


def fold_into(acc: np.ndarray, x: np.ndarray, weight: float) -> None:
    """``acc += weight * x`` over flat C-contiguous arrays (``acc`` float64 or float32, ``x`` float32)."""
    if not acc.flags.c_contiguous:
        raise ValueError("the accumulator must be C-contiguous (a reshaped copy would lose the sum)")
    if acc.size <= CHUNK:  # one chunk: NumPy is as fast, and small models never load the compiler
        numpy_fold_into(acc, x, weight)
        return
    key = acc.dtype.str
    fold = _compiled.get(key)
    if fold is None:
        with _lock:
            if key not in _compiled:
                _compiled[key] = _numba_fold(acc.dtype) or _numpy_fold(acc.dtype)
        fold = _compiled[key]
    xs = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    fold(acc.reshape(-1), xs, weight)


def numpy_fold_into(acc: np.ndarray, x: np.ndarray, weight: float) -> None:
    """The NumPy path of :func:`fold_into`, for benchmarks and tests that compare the two."""
    _numpy_fold(acc.dtype)(acc.reshape(-1), np.asarray(x, dtype=np.float32).reshape(-1), weight)


def backend() -> str:
    """``numba`` when the compiled fold is available, else ``numpy``."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numpy"
    return "numba"
