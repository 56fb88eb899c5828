"""DP-FedAvg and secure aggregation as a wrapper around a streaming strategy (Flower's DP-as-a-wrapper).

Sites' contributions are *deltas* from the round's global model, averaged without sample weights:
weighting by a site's sample count would let one site's influence grow with its data, and with
secure aggregation the server only ever gets the deltas' sum. Contributions arrive either one update
at a time (each delta is clipped here to ``clip_norm`` when DP is on) or as one pre-summed vector from
a secure-aggregation session (:meth:`add_sum`; the sites clipped their own). At ``finalize`` central
noise N(0, noise_std^2) is added to the sum once, the sum is divided by the fixed ``denominator`` (DP:
the expected number of sites) or by the number of contributions, and the inner strategy (FedAvg,
FedAdam, ...) applies ``global + mean delta`` as if it were a single update, so server optimizers keep
working. Memory is one float64 vector of the model's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from bastion.errors import Conflict, Invalid
from bastion.federation.secagg.vector import flatten, layout_of, unflatten
from bastion.federation.strategies.base import (
    Params,
    Strategy,
    StrategyOptions,
    StrategyState,
    prefixed,
    unprefixed,
)
from bastion.privacy import dp_mean, privatize_sum, privatize_update


class PrivateOptions(StrategyOptions):
    clip_norm: float | None = Field(None, gt=0, description="L2 clip of each individual delta (DP)")
    noise_std: float = Field(0.0, ge=0, description="central noise added to the sum of deltas")
    denominator: int | None = Field(None, ge=1, description="fixed denominator of the mean (DP)")


class PrivateAggregate(Strategy):
    """Unweighted mean of (clipped) deltas, optionally noised, handed to ``inner`` as one update."""

    name = "private"
    options_model = PrivateOptions
    options: PrivateOptions

    def __init__(self, inner: Strategy, options: Mapping[str, Any] | None = None) -> None:
        if inner.needs_all_updates:
            raise Invalid(f"{inner.name} needs every individual update; it cannot run under privacy")
        self.inner = inner
        super().__init__(options)

    def client_config(self) -> dict[str, Any]:
        return self.inner.client_config()

    def begin_round(self, global_params: Mapping[str, np.ndarray], round: int) -> None:
        super().begin_round(global_params, round)
        self.inner.begin_round(global_params, round)

    @property
    def contributions(self) -> int:
        return self._contributions

    def add_sum(self, total: np.ndarray, count: int) -> None:
        """Fold a secure-aggregation session's unmasked sum of ``count`` deltas (layout: sorted names)."""
        if self._round is None or self._sum is None:
            raise Conflict("no round is open: call begin_round first")
        vector = np.asarray(total, dtype=np.float64)
        if vector.shape != self._sum.shape or count < 1:
            raise Invalid("the aggregated sum does not match the model")
        if not np.all(np.isfinite(vector)):
            raise Invalid("the aggregated sum contains NaN or infinite values")
        self._sum += vector
        self._contributions += count
        self._count += count

    # -- Strategy hooks -------------------------------------------------------------------------
    def _start_round(self) -> None:
        self._contributions = 0
        self._base: np.ndarray | None = flatten(self._global)[0] if self._global else None
        self._sum: np.ndarray | None = np.zeros_like(self._base) if self._base is not None else None

    def _fold(self, update: Mapping[str, np.ndarray], num_samples: int) -> None:
        assert self._sum is not None and self._base is not None
        delta = flatten(update)[0] - self._base
        if self.options.clip_norm is not None:
            delta = privatize_update(delta, self.options.clip_norm)
        self._sum += delta
        self._contributions += 1

    def _aggregate(self) -> Params:
        assert self._sum is not None
        total = privatize_sum(self._sum, self.options.noise_std)
        mean = dp_mean(total, self.options.denominator or self._contributions)
        assert self._base is not None
        params = {
            k: v.astype(np.float32) for k, v in unflatten(self._base + mean, layout_of(self._global)).items()
        }
        self.inner.accumulate(params, 1)
        return self.inner.finalize()

    def _extra_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        inner = self.inner.state_dict()
        tensors = prefixed("inner", inner.tensors)
        if self._sum is not None:
            tensors["delta_sum"] = self._sum
        return {"contributions": self._contributions, "inner": inner.meta}, tensors

    def _load_extra_state(self, meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
        self.inner.load_state_dict(StrategyState(dict(meta.get("inner", {})), unprefixed("inner", tensors)))
        if self._sum is not None and "delta_sum" in tensors:
            self._sum[...] = tensors["delta_sum"]
        self._contributions = int(meta.get("contributions", 0))
