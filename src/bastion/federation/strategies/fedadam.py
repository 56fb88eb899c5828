"""FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2): Adam on the server.

The round's sample-weighted average ``avg`` (streamed exactly like FedAvg) gives the pseudo-gradient
``delta = avg - x``; the server then keeps first and second moments across rounds::

    m = beta1 * m + (1 - beta1) * delta
    v = beta2 * v + (1 - beta2) * delta**2          (FedYogi changes only this line)
    x = x + eta * m / (sqrt(v) + tau)

with ``m`` starting at 0 and ``v`` at ``tau**2`` as in the paper (no bias correction). The moments are
float64 and part of ``state_dict``, so a restarted server continues the same optimizer trajectory.
Memory: the float64 sum and two float64 moments (24 bytes per parameter) plus the float32 global copy
and two float64 temporaries of one tensor during ``finalize``; independent of the number of sites.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from bastion.federation.strategies.base import F32, Params, prefixed, unprefixed
from bastion.federation.strategies.fedavg import FedAvg, FedAvgOptions


class ServerOptOptions(FedAvgOptions):
    eta: float = Field(default=0.01, gt=0.0, le=10.0, description="server learning rate")
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.99, ge=0.0, lt=1.0)
    tau: float = Field(default=1e-3, gt=0.0, le=1.0, description="adaptivity (epsilon)")


class FedAdam(FedAvg):
    name = "fedadam"
    options_model = ServerOptOptions
    options: ServerOptOptions

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._m: dict[str, np.ndarray] = {}
        self._v: dict[str, np.ndarray] = {}
        self._steps = 0

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray, scratch: np.ndarray) -> None:
        """Adam: exponential moving average of the squared pseudo-gradient, in place."""
        v *= self.options.beta2
        np.multiply(delta_sq, 1.0 - self.options.beta2, out=scratch)
        v += scratch

    def _aggregate(self) -> Params:
        opts = self.options
        assert self._sum is not None
        acc, weight = self._sum.sums, self._sum.weight
        out: Params = {}
        for name, x in self._global.items():
            if name not in self._m:
                self._m[name] = np.zeros(x.shape, np.float64)
                self._v[name] = np.full(x.shape, opts.tau**2, np.float64)
            m, v = self._m[name], self._v[name]
            delta = np.divide(acc[name], weight, dtype=np.float64)  # the round's weighted average
            delta -= x
            scratch = np.multiply(delta, 1.0 - opts.beta1)
            m *= opts.beta1
            m += scratch
            self._second_moment(v, np.square(delta, out=delta), scratch)
            del delta
            np.sqrt(v, out=scratch)
            scratch += opts.tau
            np.divide(m, scratch, out=scratch)
            scratch *= opts.eta
            scratch += x
            out[name] = scratch.astype(F32)
        self._steps += 1
        return out

    def _extra_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, tensors = super()._extra_state()
        meta = {**meta, "steps": self._steps}
        tensors = {**tensors, **prefixed("m", self._m), **prefixed("v", self._v)}
        return meta, tensors

    def _load_extra_state(self, meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
        super()._load_extra_state(meta, tensors)
        self._steps = int(meta.get("steps", 0))
        self._m = {k: np.array(a, dtype=np.float64) for k, a in unprefixed("m", tensors).items()}
        self._v = {k: np.array(a, dtype=np.float64) for k, a in unprefixed("v", tensors).items()}
