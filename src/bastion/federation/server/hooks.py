"""Extension points around aggregation, for secure aggregation and differential privacy.

The coordinator calls :meth:`RoundHooks.on_update` on each admitted update before it is folded (a
place to clip, or to check a secure-aggregation mask's shape) and :meth:`RoundHooks.on_aggregate` on
the new global parameters before they are stored (a place to add central DP noise and charge the
privacy budget). The defaults change nothing. Hooks run under the federation's lock, so they may keep
per-federation state without locking of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class RoundHooks:
    def on_update(
        self, federation_id: str, round: int, tensors: Mapping[str, np.ndarray], num_samples: int
    ) -> Mapping[str, np.ndarray]:
        return tensors

    def on_aggregate(
        self, federation_id: str, round: int, params: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return params
