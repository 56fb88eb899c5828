"""Shared set-up for secure-aggregation tests: identities, a config and per-client updates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.federation.secagg import SecAggConfig
from bastion.federation.secagg.local import LocalRound


@dataclass
class Setup:
    config: SecAggConfig
    identities: dict[int, Ed25519PrivateKey]
    updates: dict[int, np.ndarray]

    def local_round(self) -> LocalRound:
        return LocalRound(self.config, self.identities)

    def plain_sum(self, ids: tuple[int, ...] | list[int] | range) -> np.ndarray:
        return np.sum([self.updates[c] for c in ids], axis=0)


def make_setup(
    n: int = 10,
    threshold: int = 6,
    neighbours: int | None = None,
    d: int = 64,
    clip: float = 1.0,
    bits: int = 20,
    round_id: str = "fed-1.round-1",
    seed: int = 0,
) -> Setup:
    config = SecAggConfig(
        round_id=round_id,
        participants=tuple(range(1, n + 1)),
        threshold=threshold,
        neighbours=neighbours,
        vector_length=d,
        clip=clip,
        quant_bits=bits,
    )
    rng = np.random.default_rng(seed)
    identities = {c: Ed25519PrivateKey.generate() for c in config.participants}
    updates = {c: rng.uniform(-clip, clip, d) for c in config.participants}
    return Setup(config, identities, updates)
