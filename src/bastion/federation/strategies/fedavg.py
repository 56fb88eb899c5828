"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the sites' parameters, streamed.

Each update is folded into one float64 running sum as it arrives, ``sum += n_i * x_i``, in cache-sized
chunks with a fixed scratch buffer, so nothing per client is kept or copied: memory is the float64
sum (8 bytes per parameter) plus 512 KiB of scratch, whatever the number of sites. float64 was chosen
by measurement (bench/aggregation.py): it is as fast as Kahan-compensated float32 summation and more
accurate (error at float32 rounding level). ``accumulator="float32"`` is about twice as fast, with
roughly ten times the rounding error (the same arithmetic as Flower's in-place float32 average).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from bastion.federation.strategies.base import F32, Params, Strategy, StrategyOptions, prefixed, unprefixed

CHUNK = 1 << 16


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
        self._scratch = np.empty(CHUNK, self.dtype)

    def add(self, update: Mapping[str, np.ndarray], weight: float) -> None:
        scale = self.dtype.type(weight)
        for name, acc in self.sums.items():
            flat_acc = acc.reshape(-1)
            flat_x = np.asarray(update[name]).reshape(-1)
            for i in range(0, flat_acc.size, CHUNK):
                j = min(i + CHUNK, flat_acc.size)
                tmp = self._scratch[: j - i]
                np.multiply(flat_x[i:j], scale, out=tmp, dtype=self.dtype)
                np.add(flat_acc[i:j], tmp, out=flat_acc[i:j])
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
