"""What every party of one secure-aggregation round agrees on before it starts.

The coordinator builds a :class:`SecAggConfig` and sends it (as JSON) to each site; both sides derive
the neighbour graph, the quantizer and the word size from it, so nothing else needs negotiating.
"""

from __future__ import annotations

import math
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.errors import Invalid
from bastion.federation.secagg.graph import neighbourhoods
from bastion.federation.secagg.quantize import Quantizer

MAX_CLIENT_ID = 2**31 - 1
MAX_VECTOR_LENGTH = 2**28


class SecAggConfig(BaseModel):
    """One round: who takes part, the threshold t, the neighbourhood size k and the encoding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    round_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    participants: tuple[int, ...] = Field(min_length=2)
    threshold: int = Field(ge=2)
    neighbours: int | None = Field(default=None, ge=3)
    vector_length: int = Field(ge=1, le=MAX_VECTOR_LENGTH)
    clip: float = Field(gt=0, allow_inf_nan=False)
    quant_bits: int = Field(default=24, ge=2, le=48)

    @model_validator(mode="after")
    def _check(self) -> SecAggConfig:
        ids = self.participants
        if len(set(ids)) != len(ids):
            raise ValueError("participants must be distinct")
        if any(not 1 <= i <= MAX_CLIENT_ID for i in ids):
            raise ValueError("client ids must be between 1 and 2**31 - 1")
        k = self.k
        if k < len(ids) and (k % 2 == 0 or k < 3):
            raise ValueError("neighbourhood size k must be odd when smaller than the number of clients")
        if self.threshold > k:
            raise ValueError(f"threshold {self.threshold} exceeds the neighbourhood size {k}")
        if 2 * self.threshold <= k:
            # Otherwise a server could ask one half of u's neighbours for u's self-mask seed and the
            # other half for u's mask key, and unmask u's individual input.
            raise ValueError(f"threshold must be more than half the neighbourhood size ({k})")
        try:
            self.quantizer  # noqa: B018 - validates the word size for n clients
        except Invalid as exc:
            raise ValueError(exc.message) from None
        return self

    @property
    def n(self) -> int:
        return len(self.participants)

    @property
    def k(self) -> int:
        """Effective neighbourhood size, the client itself included."""
        return self.n if self.neighbours is None else min(self.neighbours, self.n)

    @cached_property
    def quantizer(self) -> Quantizer:
        return Quantizer.for_clients(self.clip, self.quant_bits, self.n)

    @cached_property
    def graph(self) -> dict[int, frozenset[int]]:
        return neighbourhoods(self.round_id, self.participants, self.k)

    def max_dropouts(self) -> int:
        """Dropouts a complete graph survives; with k < n it also depends on where they fall."""
        return self.n - self.threshold

    @staticmethod
    def default_threshold(k: int) -> int:
        """Smallest threshold above k/2: the most dropouts tolerated with the honest-majority rule."""
        return math.floor(k / 2) + 1
