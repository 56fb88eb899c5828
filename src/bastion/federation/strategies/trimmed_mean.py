"""Coordinate-wise trimmed mean (Yin et al. 2018).

For each parameter, the ``floor(beta * K)`` largest and smallest of the K site values are dropped and
the rest averaged (unweighted). ``beta`` must leave at least one value. Memory: O(clients x model).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from bastion.errors import Conflict
from bastion.federation.strategies.base import Params, StrategyOptions
from bastion.federation.strategies.buffered import BufferedStrategy


class TrimmedMeanOptions(StrategyOptions):
    beta: float = Field(default=0.1, ge=0.0, lt=0.5, description="fraction trimmed from each end")


class TrimmedMean(BufferedStrategy):
    name = "trimmed_mean"
    options_model = TrimmedMeanOptions
    options: TrimmedMeanOptions

    def trim_count(self, num_updates: int) -> int:
        return math.floor(self.options.beta * num_updates)

    def _aggregate(self) -> Params:
        k = self.trim_count(len(self._updates))
        n = len(self._updates)
        if n - 2 * k < 1:  # pragma: no cover - beta < 0.5 always leaves one value
            raise Conflict("trimmed mean has no values left after trimming", code="not_enough_updates")

        def reduce(stack: np.ndarray) -> np.ndarray:
            kept = stack if k == 0 else np.sort(stack, axis=0)[k : n - k]
            result: np.ndarray = kept.mean(axis=0, dtype=np.float64)
            return result

        return self._reduce(reduce)
