"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the sites' parameters, streamed.

Each update is folded into one float64 running sum as it arrives, ``sum += n_i * x_i``, by
:func:`kernels.fold_into` (one compiled pass per update, at memory speed, when numba is installed;
a chunked NumPy loop otherwise), so nothing per client is kept or copied: memory is the float64 sum
(8 bytes per parameter), whatever the number of sites. float64 was chosen by measurement
(bench/aggregation.py): it is as fast as Kahan-compensated float32 summation and more accurate (error
at float32 rounding level). ``accumulator="float32"`` has roughly ten times the rounding error (the
same arithmetic as Flower's in-place float32 average).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from bastion.federation.strategies.base import F32, Params, Strategy, StrategyOptions, prefixed, unprefixed
from bastion.federation.strategies.kernels import CHUNK, fold_into

__all__ = ["CHUNK", "FedAvg", "FedAvgOptions", "WeightedSum"]


class FedAvgOptions(StrategyOptions):
    accumulator: Literal["float64", "float32"] = "float64"


class WeightedSum:
    """Running ``sum_i w_i * x_i`` and ``sum_i w_i`` over named tensors, folded in place."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dtype: str = "float64") -> None:
        self.dtype = np.dtype(dtype)
        self.sums: dict[str, np.ndarray] = {
            name: np.zeros(shape, self.dtype) for name, shape in shapes.items()
        }
        self.weight = 0.0

    def add(self, update: Mapping[str, np.ndarray], weight: float) -> None:
        for name, acc in self.sums.items():
            fold_into(acc, update[name], weight)
        self.weight += weight

    def mean(self) -> Params:
        """``sum / weight`` as float32, computed straight into the output arrays."""
        out: Params = {}
        for name, acc in self.sums.items():
            out[name] = np.empty(acc.shape, F32)
            np.divide(acc, self.weight, out=out[name], dtype=self.dtype, casting="same_kind")
        return out


class FedAvg(Strategy):
    """Sample-weighted average; streaming, O(model) memory."""

    name = "fedavg"
    options_model = FedAvgOptions
    options: FedAvgOptions

    def _start_round(self) -> None:
        self._sum: WeightedSum | None = (
            WeightedSum({k: v.shape for k, v in self._global.items()}, self.options.accumulator)
            if self._global
            else None
        )

    def _fold(self, update: Mapping[str, np.ndarray], num_samples: int) -> None:
        assert self._sum is not None
        self._sum.add(update, float(num_samples))

    def _average(self) -> Params:
        assert self._sum is not None
        return self._sum.mean()

    def _aggregate(self) -> Params:
        return self._average()

    def _extra_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self._sum is None:
            return {}, {}
        return {"weight": self._sum.weight}, prefixed("sum", self._sum.sums)

    def _load_extra_state(self, meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
        if self._sum is not None:
            for name, arr in unprefixed("sum", tensors).items():
                self._sum.sums[name][...] = arr
            self._sum.weight = float(meta.get("weight", 0.0))
