"""Admitting updates keeps server memory O(model): nothing per site is retained while a round is open."""

from __future__ import annotations

import gc
import tracemalloc

from tests.federation.server.support import World

WIDE = {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [512, 512]}  # ~300k params


def _peak_growth(world: World, fid: str, sites: int, offset: int) -> int:
    members = [world.enroll(fid, f"s{offset + i}") for i in range(sites)]
    messages = [world.seal(site, fid, 1) for site in members]
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for site, message in zip(members, messages, strict=True):
            world.submit(site, message)
        gc.collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def test_open_round_memory_does_not_grow_with_the_number_of_sites(world: World) -> None:
    update_bytes = 4 * 301_066
    few = world.create(name="few", model=WIDE, min_clients=1, target_clients=100)["id"]
    many = world.create(name="many", model=WIDE, min_clients=1, target_clients=100)["id"]
    _peak_growth(world, few, 1, 0)  # warm-up: builds the running aggregate once
    _peak_growth(world, many, 1, 100)
    small = _peak_growth(world, few, 3, 10)
    large = _peak_growth(world, many, 12, 200)
    assert world.status(many)["pending_updates"] == 13
    assert large < small + 2 * update_bytes, (small, large)
