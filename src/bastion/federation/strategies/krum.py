"""Krum and Multi-Krum (Blanchard et al. 2017; El Mhamdi et al. 2018).

With ``f`` = ``num_byzantine`` possibly malicious sites out of K, each update is scored by the sum of
squared distances to its ``K - f - 2`` nearest other updates; outliers score high. Krum returns the
single best update; Multi-Krum averages the ``m`` best (weighted by sample counts, as Flower does),
``m`` defaulting to ``K - f``. Krum's guarantee needs ``K >= 2f + 3``, which ``finalize`` enforces.

Memory: every update of the round (O(clients x model)) plus a K x K distance matrix. Distances are
accumulated block by block from a Gram matrix of the updates' offsets from the global model, in
float64, so no (K x K x model) or second (K x model) array is ever built.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from bastion.errors import Conflict
from bastion.federation.strategies.base import F32, Params, StrategyOptions
from bastion.federation.strategies.buffered import BufferedStrategy


class KrumOptions(StrategyOptions):
    num_byzantine: int = Field(default=1, ge=0, le=10_000, description="f, sites that may be malicious")
    num_selected: int | None = Field(default=1, ge=1, description="m; None means K - f (Multi-Krum)")


class MultiKrumOptions(KrumOptions):
    num_selected: int | None = Field(default=None, ge=1, description="m; None means K - f")


class Krum(BufferedStrategy):
    name = "krum"
    options_model = KrumOptions
    options: KrumOptions

    last_selected: list[int]

    def distances(self) -> np.ndarray:
        """K x K matrix of squared Euclidean distances between this round's updates."""
        count = len(self._updates)
        dist = np.zeros((count, count), np.float64)
        for name, ref in self._global.items():
            origin = ref.reshape(-1)
            for cols, stack in self.column_blocks(name):
                delta = stack.astype(np.float64)
                delta -= origin[cols]
                gram = delta @ delta.T
                sq = np.diag(gram).copy()
                dist += sq[:, None] + sq[None, :] - 2.0 * gram
        np.maximum(dist, 0.0, out=dist)
        np.fill_diagonal(dist, 0.0)
        return dist

    def scores(self) -> np.ndarray:
        count, f = len(self._updates), self.options.num_byzantine
        if count < 2 * f + 3:
            raise Conflict(
                f"Krum with num_byzantine={f} needs at least {2 * f + 3} updates, got {count}",
                code="not_enough_updates",
            )
        dist = self.distances()
        neighbours = count - f - 2
        others = np.sort(dist + np.diag(np.full(count, np.inf)), axis=1)[:, :neighbours]
        result: np.ndarray = others.sum(axis=1)
        return result

    def _aggregate(self) -> Params:
        scores = self.scores()
        count, f = len(self._updates), self.options.num_byzantine
        wanted = self.options.num_selected or count - f
        if wanted > count - f:
            raise Conflict(
                f"cannot select {wanted} updates when up to {f} of {count} may be malicious",
                code="not_enough_updates",
            )
        chosen = [int(i) for i in np.argsort(scores, kind="stable")[:wanted]]
        self.last_selected = chosen
        weights = np.array([self._samples[i] for i in chosen], np.float64)
        weights /= weights.sum()
        out: Params = {}
        for name, ref in self._global.items():
            acc = np.zeros(ref.size, np.float64)
            for w, i in zip(weights, chosen, strict=True):
                acc += w * self._updates[i][name]
            out[name] = acc.astype(F32).reshape(ref.shape)
        return out


class MultiKrum(Krum):
    name = "multikrum"
    options_model = MultiKrumOptions
