"""L2 clipping of a site's update: what bounds one site's influence (the sensitivity S) in DP-FedAvg.

The norm is taken over the whole update (every tensor together), as DP-FedAvg requires; clipping each
tensor separately would leave the total sensitivity at sqrt(#tensors) * S.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from bastion.errors import Invalid


def l2_norm(arrays: Iterable[np.ndarray]) -> float:
    """Global L2 norm of several arrays taken as one vector."""
    total = 0.0
    for a in arrays:
        flat = np.asarray(a, dtype=np.float64).ravel()
        total += float(np.dot(flat, flat))
    return math.sqrt(total)


def clip_factor(norm: float, max_norm: float) -> float:
    """min(1, S / norm): the scale that brings the update inside the ball of radius S."""
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise Invalid("clip norm must be a positive number")
    if not math.isfinite(norm):
        raise Invalid("update contains NaN or infinite values")
    return 1.0 if norm <= max_norm else max_norm / norm


def clip_l2(update: np.ndarray, max_norm: float) -> np.ndarray:
    """``update`` scaled so its L2 norm is at most ``max_norm`` (a new float64 array)."""
    vec = np.asarray(update, dtype=np.float64)
    return vec * clip_factor(l2_norm([vec]), max_norm)


def clip_arrays(arrays: Mapping[str, np.ndarray], max_norm: float) -> dict[str, np.ndarray]:
    """Named tensors (a model delta) scaled together so their global L2 norm is at most ``max_norm``."""
    factor = clip_factor(l2_norm(arrays.values()), max_norm)
    return {name: np.asarray(a, dtype=np.float64) * factor for name, a in arrays.items()}
