"""The SecAgg+ neighbour graph (Bell et al. 2020): a random k-regular ring (Harary graph).

Each client masks and shares only with its k neighbourhood (itself included), so per-client work and
traffic grow with k instead of n. With k >= n every client neighbours every other: classic SecAgg.

The ring order comes from SHA-256 of the round id and each client id, so every party rebuilds the same
graph from the round configuration alone and no PRNG state is involved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from bastion.errors import Invalid


def ring_order(round_id: str, participants: Sequence[int]) -> list[int]:
    """Participants in a pseudo-random order fixed by the round id."""
    prefix = b"bastion-secagg-v1/graph/" + round_id.encode() + b"/"
    return sorted(participants, key=lambda i: hashlib.sha256(prefix + i.to_bytes(4, "big")).digest())


def neighbourhoods(round_id: str, participants: Sequence[int], k: int) -> dict[int, frozenset[int]]:
    """Each client's neighbourhood, itself included: k members, or everyone when k >= n."""
    n = len(participants)
    if k >= n:
        everyone = frozenset(participants)
        return {i: everyone for i in participants}
    if k < 3 or k % 2 == 0:
        raise Invalid(
            "neighbourhood size k must be odd and at least 3 when smaller than the number of clients"
        )
    half = (k - 1) // 2
    order = ring_order(round_id, participants)
    return {
        order[pos]: frozenset(order[(pos + off) % n] for off in range(-half, half + 1)) for pos in range(n)
    }
