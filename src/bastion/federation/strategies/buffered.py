"""Common ground of the robust aggregators, which must see every update of a round at once.

Robust statistics (median, trimmed mean, Krum) are not decomposable into running sums, so these
strategies keep one float32 copy of each update: memory is O(clients x model), e.g. 100 sites x 1M
parameters = 400 MB. The copy is flat and private, so the caller's (possibly read-only) decoded buffer
can be freed at once. ``finalize`` works column block by column block, so its scratch space is a
bounded (clients x block) slab rather than a second full copy of everything.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from bastion.federation.strategies.base import F32, Params, Strategy

SLAB_BYTES = 8 * 1024 * 1024


class BufferedStrategy(Strategy):
    needs_all_updates = True

    def _start_round(self) -> None:
        self._updates: list[dict[str, np.ndarray]] = []
        self._samples: list[int] = []

    def _fold(self, update: Mapping[str, np.ndarray], num_samples: int) -> None:
        self._updates.append(
            {name: np.array(update[name], dtype=F32, copy=True).reshape(-1) for name in self._global}
        )
        self._samples.append(num_samples)

    def column_blocks(self, name: str) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(columns, stack)`` with ``stack[k]`` = client k's values of tensor ``name`` there."""
        size = self._global[name].size
        count = len(self._updates)
        block = max(1024, SLAB_BYTES // (4 * max(count, 1)))
        slab = np.empty((count, min(block, size)), F32)
        for start in range(0, size, block):
            cols = slice(start, min(start + block, size))
            stack = slab[:, : cols.stop - cols.start]
            for k, upd in enumerate(self._updates):
                stack[k] = upd[name][cols]
            yield cols, stack

    def _reduce(self, reducer: Any) -> Params:
        out: Params = {}
        for name, ref in self._global.items():
            flat = np.empty(ref.size, F32)
            for cols, stack in self.column_blocks(name):
                flat[cols] = reducer(stack)
            out[name] = flat.reshape(ref.shape)
        return out

    def _extra_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        tensors: dict[str, np.ndarray] = {}
        for k, upd in enumerate(self._updates):
            tensors.update({f"update/{k}/{name}": arr for name, arr in upd.items()})
        return {"samples": list(self._samples)}, tensors

    def _load_extra_state(self, meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
        self._samples = [int(n) for n in meta.get("samples", [])]
        self._updates = [
            {name: np.array(tensors[f"update/{k}/{name}"], dtype=F32).reshape(-1) for name in self._global}
            for k in range(len(self._samples))
        ]
